import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NfsConfig } from '../../src/backends/nfs/index.js';
import { ganeshaInstalled, startGanesha, type Ganesha } from '../helpers/ganesha.js';
import { unmountUnder } from '../helpers/mount-cleanup.js';
import { mountShimEnv } from '../helpers/nfs-mount-shim.js';
import type { BackendFixture, StartedBackend } from './fixtures.js';

export type NfsInstance = Omit<NfsConfig, 'mountOptions' | 'controller'> &
  Partial<Pick<NfsConfig, 'mountOptions' | 'controller'>>;

/**
 * An NFS instance on the given ganesha with the controller in `access: path` mode: the export directory
 * stands where, in a cluster, the controller pod's `nfs:` volume would be mounted.
 */
export function nfsInstance(server: Ganesha, overrides: Partial<NfsInstance> = {}): NfsInstance {
  return {
    kind: 'nfs',
    name: 'nfs',
    server: '127.0.0.1',
    share: server.exportPath,
    mountOptions: ['nfsvers=3'],
    controller: { access: 'path', path: server.exportPath },
    ...overrides,
  };
}

/** Writes a backends file (JSON is YAML) and returns its path. */
export async function writeBackendsFile(dir: string, instances: NfsInstance[]): Promise<string> {
  const file = join(dir, 'backends.yaml');
  await writeFile(file, JSON.stringify({ backends: instances }, null, 2));
  return file;
}

export interface StartedNfsBackend extends StartedBackend {
  server: Ganesha;
  /** Where the mount shim logs each mount invocation of the driver. */
  mountLog: string;
}

export interface NfsFixture extends BackendFixture {
  start(): Promise<StartedNfsBackend>;
}

/**
 * NFS on a real nfs-ganesha (NFSv3 mounts). This kernel has no NFS client, so node mounts go through
 * the mount shim in test/fixtures/nfs-mount-shim, which only stands in for that client: it records the
 * exact mount invocation and mounts the export directory itself in place of the NFS mount.
 */
export function nfsFixture(): NfsFixture {
  let server: Ganesha | undefined;
  let dir: string | undefined;
  return {
    name: 'nfs',
    available: ganeshaInstalled,
    start: async () => {
      dir = await mkdtemp(join(tmpdir(), 'sv-nfs-fixture-'));
      server = await startGanesha();
      const running = server;
      const mountLog = join(dir, 'mount.log');
      return {
        server: running,
        mountLog,
        driverArgs: ['--backends', await writeBackendsFile(dir, [nfsInstance(running)])],
        env: await mountShimEnv(running, mountLog),
        parameters: {},
        listRoot: async () =>
          (await running.nfsLs('')).map((e) => e.name).filter((name) => name !== '.sharedvolume'),
      };
    },
    stop: async () => {
      await server?.stop();
      server = undefined;
      if (dir) {
        await unmountUnder(dir);
        await rm(dir, { recursive: true, force: true });
      }
      dir = undefined;
    },
  };
}
