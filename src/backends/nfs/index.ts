import { z } from 'zod';
import type { Backend, ShareParams } from '../backend.js';
import { DirectoryShares, directoryBackendMethods } from '../directory-shares.js';
import { commonParamsShape, mountOptionsShape, parseWith, toShareParams } from '../params.js';
import { ControllerRoot, controllerAccessSchema } from '../shared/controller-root.js';
import type { RuntimeOptions } from '../registry.js';
import type { MountSpec } from '../../mount/mounter.js';

export const nfsConfigSchema = z.strictObject({
  kind: z.literal('nfs'),
  name: z.string(),
  server: z.string().min(1).meta({ description: 'NFS server host name or address.' }),
  share: z
    .string()
    .startsWith('/')
    .meta({ description: 'Exported path on the server; volumes are its subdirectories.' }),
  mountOptions: z
    .array(z.string())
    .default([])
    .meta({ description: 'Options for every mount of this share.' }),
  controller: controllerAccessSchema,
});
export type NfsConfig = z.infer<typeof nfsConfigSchema>;

export const nfsParamsSchema = z.strictObject({ ...commonParamsShape, ...mountOptionsShape });

/** The context key that carries class-level mount options from CreateVolume to the node. */
export const MOUNT_OPTIONS_CONTEXT = 'mountOptions';

/** mount.nfs reads an IPv6 server address only in brackets. */
function serverPart(server: string): string {
  return server.includes(':') && !server.startsWith('[') ? `[${server}]` : server;
}

export function nfsMountSpec(config: NfsConfig, path: string, extraOptions: string[]): MountSpec {
  const share = config.share.replace(/\/+$/, '');
  const remote = path ? `${share}/${path}` : share || '/';
  return {
    source: `${serverPart(config.server)}:${remote}`,
    fsType: 'nfs',
    options: [...new Set([...config.mountOptions, ...extraOptions])],
  };
}

/** An existing NFS export, one subdirectory per volume. */
export function createNfsBackend(config: NfsConfig, runtime: RuntimeOptions): Backend {
  const root = new ControllerRoot(config.name, config.controller, runtime.stateDir, (options) =>
    nfsMountSpec(config, '', options),
  );
  const shares = new DirectoryShares(root.provider);
  return {
    instance: config.name,
    kind: 'nfs',
    paramsSchema: nfsParamsSchema,
    parseParameters: (raw): ShareParams => toShareParams(parseWith(nfsParamsSchema, raw)),
    probe: async () => void (await root.provider([])),
    ...directoryBackendMethods(shares),
    nodeMount: (path, context) =>
      nfsMountSpec(config, path, (context[MOUNT_OPTIONS_CONTEXT] ?? '').split(',').filter(Boolean)),
    close: async () => {
      await shares.close();
      await root.close();
    },
  };
}
