import { loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { join } from 'node:path';
import type { ProtoGrpcType } from '../generated/csi.js';
import { PACKAGE_ROOT } from '../package-root.js';

export const CSI_PROTO = join(PACKAGE_ROOT, 'proto', 'csi.proto');

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
