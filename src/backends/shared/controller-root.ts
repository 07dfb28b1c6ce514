import { createHash } from 'node:crypto';
import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
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

/**
 * A RootProvider for network shares. In mount mode each distinct option set gets its own mount under
 * the state directory, made once and reused; close() unmounts exactly those.
 */
export class ControllerRoot {
  private readonly mounts = new Map<string, Promise<string>>();

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
    let mounted = this.mounts.get(id);
    if (!mounted) {
      mounted = this.mount(spec, join(this.stateDir, 'controller-mounts', `${this.instance}-${id}`));
      this.mounts.set(id, mounted);
      mounted.catch(() => this.mounts.delete(id));
    }
    return mounted;
  };

  private async mount(spec: MountSpec, target: string): Promise<string> {
    await mkdir(target, { recursive: true });
    if (!mountAt(await readMountTable(), target)) await mountWithFlags(spec, target, []);
    return target;
  }

  async close(): Promise<void> {
    const targets = await Promise.allSettled(this.mounts.values());
    this.mounts.clear();
    for (const t of targets) if (t.status === 'fulfilled') await unmountAll(t.value);
  }
}
