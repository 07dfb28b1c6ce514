import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SyncError } from '../../src/populator/errors.js';
import {
  lockStateDir,
  readSyncStatus,
  writeJsonAtomic,
  writeSyncStatus,
  emptyStatus,
} from '../../src/populator/state.js';

describe('populator state', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-state-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('writes status atomically and reads it back', async () => {
    assert.equal(await readSyncStatus(dir), undefined);
    const status = { ...emptyStatus('git'), revision: 'abc', lastSuccess: '2024-01-01T00:00:00.000Z' };
    await writeSyncStatus(dir, status);
    assert.deepEqual(await readSyncStatus(dir), status);
    assert.deepEqual(await readdir(dir), ['status.json'], 'no temp file left');
  });

  it('replaces a file whole', async () => {
    const path = join(dir, 'x.json');
    await writeJsonAtomic(path, { v: 1 });
    await writeJsonAtomic(path, { v: 2, big: 'y'.repeat(100_000) });
    assert.equal(JSON.parse(await readFile(path, 'utf8')).v, 2);
    assert.deepEqual(await readdir(dir), ['x.json'], 'no temp file left');
  });

  it('lets one sync hold the lock; a second gets "busy"', async () => {
    const release = await lockStateDir(dir, 60_000);
    await assert.rejects(
      lockStateDir(dir, 60_000),
      (err: unknown) => err instanceof SyncError && err.reason === 'busy' && !err.permanent,
    );
    await release();
    const again = await lockStateDir(dir, 60_000);
    await again();
  });

  it('takes over the lock of a process that died', async () => {
    const child = spawn(process.execPath, ['-e', '0']);
    const pid = child.pid!;
    await new Promise((resolve) => child.on('exit', resolve));
    await writeFile(
      join(dir, 'lock'),
      JSON.stringify({ pid, host: hostname(), since: new Date().toISOString() }),
    );
    const release = await lockStateDir(dir, 60_000);
    await release();
  });
});
