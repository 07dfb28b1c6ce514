import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { statfs } from 'node:fs/promises';
import { z } from 'zod';
import type { Backend, Capacity, ShareParams, VolumeRecord } from '../backend.js';
import { DirectoryShares, directoryBackendMethods } from '../directory-shares.js';
import { commonParamsShape, mountOptionsShape, parseWith, toShareParams } from '../params.js';
import { ControllerRoot, controllerAccessSchema } from '../shared/controller-root.js';
import type { RuntimeOptions } from '../registry.js';
import { execProgram } from '../../mount/exec.js';
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
  cliRemoteHost: z.string().optional().meta({
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

/** glusterd runs one transaction per volume at a time and refuses a concurrent one with these words. */
const BUSY = /Another transaction is in progress|Locking failed/i;
/** What `quota remove` answers when there is no limit to remove (none set, directory gone, quota off). */
const NO_LIMIT = /No quota is configured|not set|No such file|No data available|Quota is disabled/i;
const BUSY_RETRIES = 10;

/**
 * Runs the gluster CLI in script mode; quota paths are absolute inside the volume. Calls are queued,
 * because parallel CreateVolumes would otherwise collide on glusterd's volume lock; a collision with
 * another client (an admin, a second controller) is retried.
 */
export class GlusterCli {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly config: GlusterConfig) {}

  run(args: string[]): Promise<string> {
    const result = this.queue.then(() => this.runRetryingBusy(args));
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async runRetryingBusy(args: string[]): Promise<string> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.runOnce(args);
      } catch (err) {
        if (attempt >= BUSY_RETRIES || !BUSY.test(String(err))) throw err;
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      }
    }
  }

  private async runOnce(args: string[]): Promise<string> {
    const remote = this.config.cliRemoteHost ? [`--remote-host=${this.config.cliRemoteHost}`] : [];
    const result = await execProgram('gluster', ['--mode=script', ...remote, ...args], 60_000);
    if (result.exitCode !== 0) {
      const detail = (result.stderr || result.stdout).trim() || this.silentFailure();
      throw new Error(`gluster ${args.join(' ')} failed: ${detail}`);
    }
    return result.stdout;
  }

  /** glusterd refuses every write from a remote CLI, and the CLI then exits 1 without a word. */
  private silentFailure(): string {
    if (!this.config.cliRemoteHost) return 'no message';
    return (
      `no message; glusterd on ${this.config.cliRemoteHost} runs only read-only commands from a remote CLI ` +
      '(--remote-host), so it cannot set quotas: run the gluster CLI against a local glusterd, or set quota: false'
    );
  }

  setQuota(path: string, bytes: number) {
    return this.run(['volume', 'quota', this.config.volume, 'limit-usage', `/${path}`, String(bytes)]);
  }

  async removeQuota(path: string) {
    try {
      await this.run(['volume', 'quota', this.config.volume, 'remove', `/${path}`]);
    } catch (err) {
      if (!NO_LIMIT.test(String(err))) throw err;
    }
  }

  /** Fails unless the volume exists and has quota enabled (else every sized CreateVolume would fail). */
  async probeQuota(): Promise<void> {
    const info = await this.run(['volume', 'info', this.config.volume, '--xml']);
    if (!/<name>features\.quota<\/name>\s*<value>on<\/value>/.test(info)) {
      throw new Error(
        `glusterfs volume ${this.config.volume}: quota is not enabled (gluster volume quota ${this.config.volume} enable)`,
      );
    }
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
    // limit-usage on a directory that has a limit replaces it.
    expand: async (path: string, record: VolumeRecord) => {
      await cli.setQuota(path, record.capacityBytes);
    },
    // An archived directory is no longer a volume: its limit goes too. A retained one keeps it.
    beforeDelete: async (path: string, record: VolumeRecord) => {
      if (record.capacityBytes > 0 && record.onDelete !== 'retain') await cli.removeQuota(path);
    },
    // Each volume is capped by its own quota, so the sum of capacities may exceed the volume's size.
    capacity: async (rootDir: string): Promise<Capacity> => {
      const stats = await statfs(rootDir);
      return {
        totalBytes: stats.blocks * stats.bsize,
        availableBytes: stats.bavail * stats.bsize,
        enforced: true,
      };
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
      if (config.quota) await cli.probeQuota();
    },
    ...directoryBackendMethods(shares),
    nodeMount: (path, context) => {
      // The FUSE client tells why it failed only in its log, so each mount gets a log we can read.
      const logFile = join(
        runtime.stateDir,
        'glusterfs-logs',
        `${config.name}-${createHash('sha256').update(path).digest('hex').slice(0, 16)}.log`,
      );
      const options = [
        ...(context[MOUNT_OPTIONS_CONTEXT] ?? '').split(',').filter(Boolean),
        `log-file=${logFile}`,
      ];
      return { ...glusterMountSpec(config, path, options), logFile };
    },
    close: async () => {
      await shares.close();
      await root.close();
    },
  };
}
