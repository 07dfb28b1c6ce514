import * as fs from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { z } from 'zod';
import type { Backend, Capacity, NativeSnapshots, ShareParams, VolumeRecord } from '../backend.js';
import { DirectoryShares, directoryBackendMethods, type ShareHooks } from '../directory-shares.js';
import { commonParamsShape, parseWith, toShareParams } from '../params.js';
import { copyTree, removeTree } from '../shared/tree.js';
import { btrfs, hasBtrfsQuota, isBtrfs, isSubvolume } from './btrfs.js';

const lstat = promisify(fs.lstat);
const statfs = promisify(fs.statfs);

export const localConfigSchema = z.strictObject({
  kind: z.literal('local'),
  name: z.string(),
  root: z.string().startsWith('/').meta({ description: 'Directory holding one subdirectory per volume.' }),
});
export type LocalConfig = z.infer<typeof localConfigSchema>;

export const localParamsSchema = z.strictObject({ ...commonParamsShape });

async function pathExists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

function exists(path: string): Error {
  return Object.assign(new Error(`EEXIST: ${path} already exists`), { code: 'EEXIST' });
}

/**
 * Volume lifecycle steps for a root on btrfs with quota enabled: each volume is a subvolume whose
 * qgroup limit is its capacity, so writing past it fails with EDQUOT. Detected once; on any other
 * file system (or btrfs without quota) the steps fall back to plain directories, capacity recorded only.
 */
class BtrfsVolumes implements ShareHooks {
  private detected: Promise<boolean> | undefined;

  constructor(private readonly root: string) {}

  active(): Promise<boolean> {
    if (!this.detected) {
      const detection = hasBtrfsQuota(this.root);
      this.detected = detection;
      detection.catch(() => (this.detected = undefined));
    }
    return this.detected;
  }

  async makeDirectory(dir: string): Promise<void> {
    if (!(await this.active())) return void (await mkdir(dir));
    if (await pathExists(dir)) throw exists(dir);
    await btrfs.createSubvolume(dir);
  }

  /**
   * A subvolume source (a volume, a native snapshot) becomes a writable snapshot: instant, extents
   * shared. Anything else, or a source on another file system, is copied into a new subvolume.
   */
  async copyTree(source: string, target: string): Promise<void> {
    if (!(await this.active())) return copyTree(source, target);
    if (await isSubvolume(source)) {
      try {
        return await btrfs.snapshot(source, target, false);
      } catch {
        // another btrfs file system: copy below
      }
    }
    await btrfs.createSubvolume(target);
    await copyTree(source, target);
  }

  async afterCreate(path: string, record: VolumeRecord): Promise<void> {
    await this.applyLimit(join(this.root, path), record.capacityBytes);
  }

  async expand(path: string, record: VolumeRecord): Promise<void> {
    await this.applyLimit(join(this.root, path), record.capacityBytes);
  }

  /** A volume made before quota was enabled is a plain directory: limiting it would limit the root. */
  private async applyLimit(dir: string, bytes: number): Promise<void> {
    if (!(await this.active()) || !(await isSubvolume(dir))) return;
    await btrfs.setLimit(dir, bytes);
  }

  async purge(dir: string): Promise<void> {
    if (!(await this.active())) return removeTree(dir);
    if (!(await pathExists(dir))) return;
    if (await isSubvolume(dir)) {
      try {
        await btrfs.deleteSubvolume(dir);
        await btrfs.clearStaleQgroups(this.root);
        return;
      } catch {
        // e.g. a nested subvolume inside: remove file by file below
      }
    }
    await removeTree(dir);
  }

  /** Each volume has its own limit, so volumes may together promise more than the file system holds. */
  async capacity(root: string): Promise<Capacity | undefined> {
    if (!(await this.active())) return undefined;
    const stats = await statfs(root);
    return {
      totalBytes: stats.blocks * stats.bsize,
      availableBytes: stats.bavail * stats.bsize,
      enforced: true,
    };
  }
}

function nativeSnapshots(volumes: BtrfsVolumes): NativeSnapshots {
  return {
    kind: 'btrfs',
    supports: async (dir) => (await volumes.active()) && (await isSubvolume(dir)),
    create: (dir, target) => btrfs.snapshot(dir, target, true),
    remove: (target) => volumes.purge(target),
  };
}

/**
 * Usage of a volume mounted at `path` when it is a btrfs subvolume with a limit: statfs there shows
 * the whole file system, the qgroup shows what the volume may use.
 */
async function btrfsUsage(path: string) {
  if (!(await isBtrfs(path)) || !(await isSubvolume(path))) return undefined;
  const usage = await btrfs.usage(path);
  if (!usage?.limitBytes) return undefined;
  const stats = await statfs(path);
  const free = stats.bavail * stats.bsize;
  const left = Math.max(0, usage.limitBytes - usage.referencedBytes);
  return {
    totalBytes: usage.limitBytes,
    usedBytes: usage.referencedBytes,
    availableBytes: Math.min(left, free),
  };
}

/** A directory tree on the host: the embedded default, bind-mounted into pods. */
export function createLocalBackend(config: LocalConfig) {
  const volumes = new BtrfsVolumes(config.root);
  const shares = new DirectoryShares(async () => config.root, volumes);
  const backend: Backend = {
    instance: config.name,
    kind: 'local',
    paramsSchema: localParamsSchema,
    parseParameters: (raw): ShareParams => toShareParams(parseWith(localParamsSchema, raw)),
    init: async () => {
      await mkdir(config.root, { recursive: true });
      await volumes.active();
    },
    probe: () => access(config.root),
    ...directoryBackendMethods(shares),
    nativeSnapshots: nativeSnapshots(volumes),
    volumeUsage: btrfsUsage,
    nodeMount: (path) => ({ source: join(config.root, path), fsType: 'bind', options: [] }),
    close: () => shares.close(),
  };
  return backend;
}
