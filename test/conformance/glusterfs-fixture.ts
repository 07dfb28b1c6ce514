import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { BackendFixture } from './fixtures.js';
import {
  glusterdInstalled,
  startGlusterd,
  writeGlusterBackends,
  type RunningGlusterd,
} from '../helpers/glusterd.js';

const VOLUME = 'svconformance';
/** Entries in the volume root that belong to GlusterFS or to the driver's records, not to any volume. */
const INTERNAL = new Set(['.glusterfs', '.trashcan', '.sharedvolume']);

/** A real single-node glusterd with one quota-enabled volume; the controller reaches it through a FUSE mount. */
export function glusterfsFixture(): BackendFixture {
  let gluster: RunningGlusterd | undefined;
  return {
    name: 'glusterfs',
    available: async () => glusterdInstalled(),
    start: async () => {
      gluster = await startGlusterd([{ name: VOLUME, quota: true }]);
      const brick = gluster.brick(VOLUME);
      const file = await writeGlusterBackends(join(gluster.dir, 'backends.yaml'), gluster.server, [
        // The suite mounts outside gluster.dir; without this each FUSE client would log into /var/log/glusterfs.
        {
          name: 'glusterfs',
          volume: VOLUME,
          mountOptions: [`log-file=${join(gluster.dir, 'fuse-clients.log')}`],
        },
      ]);
      return {
        driverArgs: ['--backends', file],
        parameters: {},
        // The brick is the server's own view of the volume root.
        listRoot: async () => (await readdir(brick)).filter((entry) => !INTERNAL.has(entry)),
      };
    },
    stop: async () => {
      const running = gluster;
      gluster = undefined;
      await running?.stop();
    },
  };
}
