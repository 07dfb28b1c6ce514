import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { z } from 'zod';
import { describeZodError } from '../rpc/errors.js';
import { isValidInstanceName } from '../volumes/volume-id.js';
import type { Backend } from './backend.js';
import { createGlusterBackend, glusterConfigSchema } from './glusterfs/index.js';
import { createLocalBackend, localConfigSchema } from './local/index.js';
import { createNfsBackend, nfsConfigSchema } from './nfs/index.js';

const instanceName = z
  .string()
  .refine(
    isValidInstanceName,
    'must be 1-32 lowercase letters, digits or "-", starting and ending alphanumeric',
  );

export const backendConfigSchema = z.discriminatedUnion('kind', [
  localConfigSchema.extend({ name: instanceName }),
  nfsConfigSchema.extend({ name: instanceName }),
  glusterConfigSchema.extend({ name: instanceName }),
]);
export type BackendConfig = z.infer<typeof backendConfigSchema>;

export const backendsFileSchema = z.strictObject({
  backends: z.array(backendConfigSchema).min(1),
});

// Only --backends FILE needs a YAML parser: loaded on first use, so a driver without one does not keep it.
const requireModule = createRequire(import.meta.url);
const parseYaml = (text: string): unknown => (requireModule('yaml') as typeof import('yaml')).parse(text);

export interface RuntimeOptions {
  /** Where the driver keeps its own mounts and scratch state on this host. */
  stateDir: string;
}

export class BackendRegistry {
  private readonly byName = new Map<string, Backend>();

  constructor(backends: Backend[]) {
    for (const backend of backends) {
      if (this.byName.has(backend.instance))
        throw new Error(`backend instance "${backend.instance}" is defined twice`);
      this.byName.set(backend.instance, backend);
    }
  }

  get(instance: string): Backend | undefined {
    return this.byName.get(instance);
  }

  /** The instance a StorageClass asks for with `backend`, else the first one configured. */
  select(instance: string | undefined): Backend | undefined {
    return instance === undefined ? this.byName.values().next().value : this.byName.get(instance);
  }

  all(): Backend[] {
    return [...this.byName.values()];
  }

  async close(): Promise<void> {
    await Promise.all(this.all().map((b) => b.close()));
  }
}

export function createBackend(config: BackendConfig, runtime: RuntimeOptions): Backend {
  switch (config.kind) {
    case 'local':
      return createLocalBackend(config);
    case 'nfs':
      return createNfsBackend(config, runtime);
    case 'glusterfs':
      return createGlusterBackend(config, runtime);
  }
}

export function parseBackendsFile(text: string, source: string): BackendConfig[] {
  const result = backendsFileSchema.safeParse(parseYaml(text));
  if (!result.success) throw new Error(`${source}: ${describeZodError(result.error)}`);
  return result.data.backends;
}

export async function loadBackendConfigs(
  file: string | undefined,
  localRoot: string | undefined,
): Promise<BackendConfig[]> {
  const configs: BackendConfig[] = file ? parseBackendsFile(await readFile(file, 'utf8'), file) : [];
  if (localRoot && !configs.some((c) => c.name === 'local')) {
    configs.unshift({ kind: 'local', name: 'local', root: localRoot });
  }
  if (configs.length === 0) throw new Error('no backends: pass --local-root DIR or --backends FILE');
  return configs;
}
