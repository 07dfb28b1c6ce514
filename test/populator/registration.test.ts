import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import {
  readRegistration,
  scanRegistrations,
  syncStateDir,
  syncStateRoot,
  writeRegistration,
} from '../../src/populator/registration.js';
import { parseSourceSpec } from '../../src/populator/spec.js';

describe('populator registrations', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-reg-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const spec = parseSourceSpec({ type: 'git', git: { url: 'https://h/r.git' }, secretRef: { name: 's' } });

  it('lives beside the volume under <metadata>/sync/<key>, with a fixed-length key', () => {
    const meta = join(dir, 'root', '.sharedvolume');
    const state = syncStateDir(meta, 'local/team/a-very-long-volume-name');
    assert.equal(join(state, '..'), syncStateRoot(meta));
    assert.match(basename(state), /^[0-9a-f]{32}$/);
    assert.notEqual(syncStateDir(meta, 'local/a'), syncStateDir(meta, 'local/b'));
  });

  it('round-trips and keeps the volume path relative: the backend may be mounted elsewhere', async () => {
    const meta = join(dir, 'root', '.sharedvolume');
    const stateDir = syncStateDir(meta, 'local/pvc-1');
    await mkdir(stateDir, { recursive: true });
    await writeRegistration({
      id: 'local/pvc-1',
      volumeDir: join(dir, 'root', 'pvc-1'),
      stateDir,
      spec,
      secretRef: { namespace: 'team-a', name: 's' },
      pvc: { namespace: 'team-a', name: 'site', uid: 'u1' },
    });
    const file = JSON.parse(await readFile(join(stateDir, 'registration.json'), 'utf8'));
    assert.equal(file.volumeDir, '../../../pvc-1');
    // The whole backend moves (another mount point): the registration still finds the volume.
    await rename(join(dir, 'root'), join(dir, 'moved'));
    const moved = syncStateDir(join(dir, 'moved', '.sharedvolume'), 'local/pvc-1');
    const reg = await readRegistration(moved);
    assert.equal(reg?.volumeDir, join(dir, 'moved', 'pvc-1'));
    assert.deepEqual(reg?.secretRef, { namespace: 'team-a', name: 's' });
    assert.equal(reg?.spec.git?.url, 'https://h/r.git');
  });

  it('scans a root, skipping foreign files; a missing root is empty', async () => {
    const meta = join(dir, '.sharedvolume');
    assert.deepEqual(await scanRegistrations(syncStateRoot(meta)), []);
    for (const id of ['local/a', 'local/b']) {
      const stateDir = syncStateDir(meta, id);
      await mkdir(stateDir, { recursive: true });
      await writeRegistration({ id, volumeDir: join(dir, id), stateDir, spec });
    }
    await mkdir(join(syncStateRoot(meta), 'not-a-key'));
    const torn = syncStateDir(meta, 'local/torn');
    await mkdir(torn);
    await writeFile(join(torn, 'registration.json'), '{"version": 2');
    const found = await scanRegistrations(syncStateRoot(meta));
    assert.deepEqual(found.map((r) => r.id).sort(), ['local/a', 'local/b']);
  });
});
