import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { Backend, ShareParams } from '../backend.js';
import { DirectoryShares, directoryBackendMethods } from '../directory-shares.js';
import { commonParamsShape, parseWith, toShareParams } from '../params.js';

export const localConfigSchema = z.strictObject({
  kind: z.literal('local'),
  name: z.string(),
  root: z.string().startsWith('/').meta({ description: 'Directory holding one subdirectory per volume.' }),
});
export type LocalConfig = z.infer<typeof localConfigSchema>;

export const localParamsSchema = z.strictObject({ ...commonParamsShape });

/** A directory tree on the host: the embedded default, bind-mounted into pods. */
export function createLocalBackend(config: LocalConfig) {
  const shares = new DirectoryShares(async () => config.root);
  const backend: Backend = {
    instance: config.name,
    kind: 'local',
    paramsSchema: localParamsSchema,
    parseParameters: (raw): ShareParams => toShareParams(parseWith(localParamsSchema, raw)),
    init: async () => void (await mkdir(config.root, { recursive: true })),
    probe: () => access(config.root),
    ...directoryBackendMethods(shares),
    nodeMount: (path) => ({ source: join(config.root, path), fsType: 'bind', options: [] }),
    close: () => shares.close(),
  };
  return backend;
}
