import { loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import type { ProtoGrpcType } from '../generated/csi.js';

/** proto/ sits at the package root; this file runs from dist/src/rpc. */
export const CSI_PROTO = fileURLToPath(new URL('../../../proto/csi.proto', import.meta.url));

export const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
} as const;

let cached: ProtoGrpcType | undefined;

export function loadCsi(): ProtoGrpcType {
  cached ??= loadPackageDefinition(loadSync(CSI_PROTO, LOADER_OPTIONS)) as unknown as ProtoGrpcType;
  return cached;
}
