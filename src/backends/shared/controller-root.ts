import { createHash } from 'node:crypto';
import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { checkPath } from '../../mount/health.js';
import { mountAt, readMountTable } from '../../mount/mountinfo.js';
import { mountWithFlags, unmountAll, type MountSpec } from '../../mount/mounter.js';
import { unavailable } from '../../rpc/errors.js';
import type { RootProvider } from '../directory-shares.js';

/** How the controller reaches a network share: by mounting it, or through a path already mounted for it. */
export const controllerAccessSchema = z
  .discriminatedUnion('access', [
    z.strictObject({ access: z.literal('mount') }),
    z.strictObject({
      access: z.literal('path'),
      path: z
        .string()
        .startsWith('/')
        .meta({ description: 'Where the share is already mounted in the controller container.' }),
    }),
  ])
  .default({ access: 'mount' });
export type ControllerAccess = z.infer<typeof controllerAccessSchema>;

const RECHECK_INTERVAL_MS = 5000;

/**
 * A RootProvider for network shares. In mount mode each distinct option set gets its own mount under
 * the state directory, made once and reused, and remade when it stops answering; close() unmounts
 * exactly those.
 */
export class ControllerRoot {
  private readonly mounts = new Map<string, Promise<string>>();
  private readonly checkedAt = new Map<string, number>();

  constructor(
    private readonly instance: string,
    private readonly access: ControllerAccess,
    private readonly stateDir: string,
    private readonly shareMount: (extraOptions: string[]) => MountSpec,
  ) {}

  readonly provider: RootProvider = async (options) => {
    if (this.access.access === 'path') {
      await access(this.access.path).catch(() => {
        throw unavailable(
          `backend ${this.instance}: controller path ${this.access.access === 'path' ? this.access.path : ''} is not reachable`,
        );
      });
      return this.access.path;
    }
    const spec = this.shareMount(options);
    const id = createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 12);
    const cached = this.mounts.get(id);
    if (cached && !this.dueForCheck(id)) return cached;
    this.checkedAt.set(id, Date.now());
    const target = join(this.stateDir, 'controller-mounts', `${this.instance}-${id}`);
    const mounted = (cached ?? Promise.resolve()).catch(() => undefined).then(() => this.mount(spec, target));
    this.mounts.set(id, mounted);
    mounted.catch(() => this.mounts.get(id) === mounted && this.mounts.delete(id));
    return mounted;
  };

  /** A reused mount is checked again at most once per interval (a check costs a child process). */
  private dueForCheck(id: string): boolean {
    return Date.now() - (this.checkedAt.get(id) ?? 0) >= RECHECK_INTERVAL_MS;
  }

  /** Mounts at `target` unless a working mount is there. A dead one (FUSE client gone, stale NFS) is replaced. */
  private async mount(spec: MountSpec, target: string): Promise<string> {
    if (mountAt(await readMountTable(), target)) {
      if ((await checkPath(target)).state === 'ok') return target;
      await unmountAll(target);
    }
    await mkdir(target, { recursive: true });
    await mountWithFlags(spec, target, []);
    return target;
  }

  async close(): Promise<void> {
    const targets = await Promise.allSettled(this.mounts.values());
    this.mounts.clear();
    for (const t of targets) if (t.status === 'fulfilled') await unmountAll(t.value);
  }
}
