import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** What the conformance suite needs from a backend: a running server (if any) and how to point the driver at it. */
export interface StartedBackend {
  /** Flags for the driver, e.g. ['--local-root', dir] or ['--backends', file]. */
  driverArgs: string[];
  /** Environment for the driver process (a PATH with a mount shim, for example). */
  env?: Record<string, string>;
  /** StorageClass parameters for CreateVolume on this backend. */
  parameters: Record<string, string>;
  /** Entries directly under the share root as the backend itself sees them (for leftover checks). */
  listRoot(): Promise<string[]>;
}

export interface BackendFixture {
  name: string;
  /** Whether the fixture can run here (e.g. a server binary is installed); the suite skips it otherwise. */
  available(): Promise<boolean>;
  start(): Promise<StartedBackend>;
  /** Stops exactly what start() started and removes its files. */
  stop(): Promise<void>;
}

export function localFixture(): BackendFixture {
  let dir: string | undefined;
  return {
    name: 'local',
    available: async () => true,
    start: async () => {
      dir = await mkdtemp(join(tmpdir(), 'sv-local-'));
      const root = dir;
      return {
        driverArgs: ['--local-root', root],
        parameters: {},
        listRoot: async () => (await readdir(root)).filter((e) => e !== '.sharedvolume'),
      };
    },
    stop: async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  };
}
