import { runProgram } from './exec.js';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, relative } from 'node:path';
import { alreadyExists, failedPrecondition, internal, notFound } from '../rpc/errors.js';
import { checkPath, type PathHealth } from './health.js';
import { mountAt, isReadOnly, readMountTable, type MountEntry } from './mountinfo.js';
import {
  ensureDir,
  isMountPoint,
  mountWithFlags,
  removeMountPoint,
  unmountAll,
  vfsFlags,
  type MountSpec,
} from './mounter.js';

export interface StageRequest {
  spec: MountSpec;
  stagingPath: string;
  mountFlags: string[];
  /** fsGroup: the group that must be able to write to the volume root. */
  group: number | undefined;
}

export interface PublishRequest {
  stage: StageRequest;
  targetPath: string;
  readonly: boolean;
}

/** The (device, path within that device) a path resolves to, which is what a bind mount shows as root. */
function origin(table: MountEntry[], path: string): { device: string; root: string } | undefined {
  let best: MountEntry | undefined;
  for (const entry of table) {
    const inside =
      path === entry.mountPoint || path.startsWith(entry.mountPoint === '/' ? '/' : `${entry.mountPoint}/`);
    if (inside && (!best || entry.mountPoint.length >= best.mountPoint.length)) best = entry;
  }
  if (!best) return undefined;
  const rest = relative(best.mountPoint, path);
  return { device: best.device, root: rest ? `${best.root.replace(/\/$/, '')}/${rest}` : best.root };
}

function mountedFrom(table: MountEntry[], entry: MountEntry, spec: MountSpec): boolean {
  if (spec.fsType !== 'bind') return entry.source === spec.source;
  const want = origin(
    table.filter((e) => e !== entry),
    spec.source,
  );
  return want !== undefined && want.device === entry.device && want.root === entry.root;
}

/**
 * Node-side mount lifecycle. Every call is idempotent, repairs stale mounts (dead FUSE daemon,
 * restarted NFS server) by unmounting and mounting again, and never leaves a mount behind on failure.
 */
export class VolumeMounts {
  async stage(req: StageRequest): Promise<void> {
    const table = await readMountTable();
    const entry = mountAt(table, req.stagingPath);
    if (entry) {
      const state = await checkPath(req.stagingPath);
      if (state.state === 'ok') {
        if (!mountedFrom(table, entry, req.spec)) {
          throw alreadyExists(
            `${req.stagingPath} is already staged from ${entry.source}, not ${req.spec.source}`,
          );
        }
        await applyGroup(req.stagingPath, req.group);
        return;
      }
      await unmountAll(req.stagingPath);
    }
    if (req.spec.fsType === 'bind') await requireDirectory(req.spec.source);
    await ensureDir(req.stagingPath);
    const spec =
      req.spec.fsType === 'bind'
        ? req.spec
        : { ...req.spec, options: [...req.spec.options, ...req.mountFlags] };
    const remountFlags = req.spec.fsType === 'bind' ? vfsFlags(req.mountFlags) : [];
    await startLog(req.spec);
    await mountWithFlags(spec, req.stagingPath, remountFlags).catch(async (err: unknown) => {
      throw await explainMountFailure(err, req.spec);
    });
    try {
      const state = await checkPath(req.stagingPath);
      if (state.state !== 'ok')
        throw internal(`mounted ${req.spec.source} but it does not answer: ${state.message}`);
      // mount.glusterfs can report success before the server refuses the client, which then unmounts itself.
      if (!(await isMountPoint(req.stagingPath))) {
        throw await explainMountFailure(
          internal(
            `mount of ${req.spec.source} reported success, but nothing is mounted at ${req.stagingPath}`,
          ),
          req.spec,
        );
      }
      await applyGroup(req.stagingPath, req.group);
    } catch (err) {
      await unmountAll(req.stagingPath);
      throw err;
    }
  }

  async unstage(stagingPath: string): Promise<void> {
    await unmountAll(stagingPath);
  }

  async publish(req: PublishRequest): Promise<void> {
    await this.ensureStaged(req.stage);
    const table = await readMountTable();
    const entry = mountAt(table, req.targetPath);
    if (entry) {
      const state = await checkPath(req.targetPath);
      if (state.state === 'ok') {
        const staged = mountAt(table, req.stage.stagingPath)!;
        const same = entry.device === staged.device && entry.root === staged.root;
        if (same && isReadOnly(entry) === req.readonly) return;
        throw alreadyExists(
          `${req.targetPath} is already published ${same ? `with readonly=${isReadOnly(entry)}` : 'from another volume'}`,
        );
      }
      await unmountAll(req.targetPath);
    }
    await ensureDir(req.targetPath);
    const flags = vfsFlags(req.stage.mountFlags).filter((f) => f !== 'ro' && f !== 'rw');
    try {
      await mountWithFlags(
        { source: req.stage.stagingPath, fsType: 'bind', options: [] },
        req.targetPath,
        req.readonly ? ['ro', ...flags] : flags,
      );
    } catch (err) {
      await removeMountPoint(req.targetPath).catch(() => undefined);
      throw err;
    }
  }

  /** Publishing needs a healthy staging mount; a stale one is remounted here rather than failing the pod. */
  private async ensureStaged(stage: StageRequest): Promise<void> {
    const entry = mountAt(await readMountTable(), stage.stagingPath);
    if (!entry)
      throw failedPrecondition(`volume is not staged at ${stage.stagingPath}; call NodeStageVolume first`);
    if ((await checkPath(stage.stagingPath)).state !== 'ok') await this.stage(stage);
  }

  async unpublish(targetPath: string): Promise<void> {
    await unmountAll(targetPath);
    await removeMountPoint(targetPath);
  }

  async stats(path: string): Promise<{ health: PathHealth; mounted: boolean }> {
    const state = await checkPath(path);
    if (state.state === 'missing') throw notFound(`volume path ${path} does not exist`);
    return { health: state, mounted: mountAt(await readMountTable(), path) !== undefined };
  }
}

/** Empties the mount helper's log, so that what it holds afterwards is about this attempt only. */
async function startLog(spec: MountSpec): Promise<void> {
  if (!spec.logFile) return;
  await mkdir(dirname(spec.logFile), { recursive: true });
  await writeFile(spec.logFile, '');
}

const MISSING_SOURCE = /No such file or directory|subdirectory .* not found|not found/i;

/**
 * The helper's own words for why a mount failed: mount.nfs says it on stderr, mount.glusterfs only in
 * its log file. A directory missing on the server means the volume does not exist: NOT_FOUND.
 */
async function explainMountFailure(err: unknown, spec: MountSpec): Promise<unknown> {
  const message = err instanceof Error ? err.message : String(err);
  const logged = spec.logFile ? await logErrors(spec.logFile) : '';
  const detail = logged ? `${message}; ${logged}` : message;
  if (MISSING_SOURCE.test(message) || MISSING_SOURCE.test(logged)) {
    return notFound(`volume ${spec.source} does not exist: ${detail}`);
  }
  return err instanceof Error && logged ? Object.assign(err, { message: detail }) : err;
}

/** The error lines (" E " or " C " severity) a helper wrote to its log, last three at most. */
async function logErrors(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => / [EC] \[/.test(line))
    .slice(-3)
    .map((line) => line.replace(/^\[[^\]]*\]\s*/, '').trim())
    .join(' | ');
}

async function requireDirectory(path: string): Promise<void> {
  try {
    if ((await stat(path)).isDirectory()) return;
  } catch {
    // reported below
  }
  throw notFound(`volume directory ${path} does not exist`);
}

/** Makes the volume root group-writable for fsGroup, recursively only when the root's group differs. */
async function applyGroup(path: string, group: number | undefined): Promise<void> {
  if (group === undefined) return;
  if ((await stat(path)).gid === group) return;
  await runProgram('chgrp', ['-R', String(group), path]);
  await runProgram('chmod', ['-R', 'g+rwX', path]);
  await runProgram('chmod', ['g+s', path]);
}
