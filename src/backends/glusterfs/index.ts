import { execa } from 'execa';
import { z } from 'zod';
import type { Backend, ShareParams, VolumeRecord } from '../backend.js';
import { DirectoryShares, directoryBackendMethods } from '../directory-shares.js';
import { commonParamsShape, mountOptionsShape, parseWith, toShareParams } from '../params.js';
import { ControllerRoot, controllerAccessSchema } from '../shared/controller-root.js';
import type { RuntimeOptions } from '../registry.js';
import type { MountSpec } from '../../mount/mounter.js';
import { MOUNT_OPTIONS_CONTEXT } from '../nfs/index.js';

export const glusterConfigSchema = z.strictObject({
  kind: z.literal('glusterfs'),
  name: z.string(),
  server: z.string().min(1).meta({ description: 'A GlusterFS server to fetch the volume file from.' }),
  volume: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/)
    .meta({ description: 'GlusterFS volume; PVCs are its subdirectories.' }),
  mountOptions: z.array(z.string()).default([]).meta({ description: 'FUSE client options for every mount.' }),
  quota: z
    .boolean()
    .default(true)
    .meta({ description: 'Set a hard directory quota equal to the requested capacity.' }),
  cliRemoteHost: z
    .string()
    .optional()
    .meta({
      description: 'Run the gluster CLI against this glusterd (--remote-host) instead of a local one.',
    }),
  controller: controllerAccessSchema,
});
export type GlusterConfig = z.infer<typeof glusterConfigSchema>;

export const glusterParamsSchema = z.strictObject({ ...commonParamsShape, ...mountOptionsShape });

export function glusterMountSpec(config: GlusterConfig, path: string, extraOptions: string[]): MountSpec {
  return {
    source: `${config.server}:/${config.volume}${path ? `/${path}` : ''}`,
    fsType: 'glusterfs',
    options: [...new Set([...config.mountOptions, ...extraOptions])],
  };
}

/** Runs the gluster CLI in script mode; quota paths are absolute inside the volume. */
export class GlusterCli {
  constructor(private readonly config: GlusterConfig) {}

  async run(args: string[]): Promise<string> {
    const remote = this.config.cliRemoteHost ? [`--remote-host=${this.config.cliRemoteHost}`] : [];
    const result = await execa('gluster', ['--mode=script', ...remote, ...args], {
      reject: false,
      stdin: 'ignore',
      timeout: 60_000,
    });
    if (result.exitCode !== 0) {
      throw new Error(`gluster ${args.join(' ')} failed: ${(result.stderr || result.stdout).trim()}`);
    }
    return result.stdout;
  }

  setQuota(path: string, bytes: number) {
    return this.run(['volume', 'quota', this.config.volume, 'limit-usage', `/${path}`, String(bytes)]);
  }

  async removeQuota(path: string) {
    try {
      await this.run(['volume', 'quota', this.config.volume, 'remove', `/${path}`]);
    } catch (err) {
      if (!/No quota is configured|not set|No such file/i.test(String(err))) throw err;
    }
  }

  probe() {
    return this.run(['volume', 'info', this.config.volume]);
  }
}

/** An existing GlusterFS volume, one directory per PVC with a hard quota, mounted by the FUSE client. */
export function createGlusterBackend(config: GlusterConfig, runtime: RuntimeOptions): Backend {
  const root = new ControllerRoot(config.name, config.controller, runtime.stateDir, (options) =>
    glusterMountSpec(config, '', options),
  );
  const cli = new GlusterCli(config);
  const quotaHooks = {
    afterCreate: async (path: string, record: VolumeRecord) => {
      if (record.capacityBytes > 0) await cli.setQuota(path, record.capacityBytes);
    },
    beforeDelete: async (path: string, record: VolumeRecord) => {
      if (record.capacityBytes > 0 && record.onDelete === 'delete') await cli.removeQuota(path);
    },
  };
  const shares = new DirectoryShares(root.provider, config.quota ? quotaHooks : {});
  return {
    instance: config.name,
    kind: 'glusterfs',
    paramsSchema: glusterParamsSchema,
    parseParameters: (raw): ShareParams => toShareParams(parseWith(glusterParamsSchema, raw)),
    probe: async () => {
      await root.provider([]);
      if (config.quota) await cli.probe();
    },
    ...directoryBackendMethods(shares),
    nodeMount: (path, context) =>
      glusterMountSpec(config, path, (context[MOUNT_OPTIONS_CONTEXT] ?? '').split(',').filter(Boolean)),
    close: async () => {
      await shares.close();
      await root.close();
    },
  };
}
