import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rpc } from '../../src/cli/csi-client.js';
import { mountCapability, rejectsWith } from '../helpers/csi.js';
import { callWithDeadline } from '../helpers/deadline.js';
import { startDriver, type RunningDriver } from '../helpers/driver.js';
import { ProgramGate, waitForExit } from '../helpers/program-gate.js';
import { describeTree } from '../helpers/tree.js';

const MiB = 1024 * 1024;

async function waitUntil(check: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function countFiles(dir: string): Promise<number> {
  let count = 0;
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    count += entry.isDirectory() ? await countFiles(join(dir, entry.name)) : 1;
  }
  return count;
}

describe('crashes (kill -9) in the middle of a snapshot and of a restore', function () {
  let dir: string;
  let root: string;
  let gate: ProgramGate;
  let driver: RunningDriver;
  let sourceId: string;
  let sourceTree: Awaited<ReturnType<typeof describeTree>>;

  const snapshots = () => join(root, '.sharedvolume', 'snapshots');
  const start = () => startDriver({ args: ['--local-root', root], env: gate.env() });

  /** SIGKILL the driver, then wait for every tool it had started (they die of the broken pipes). */
  async function crash(programs: string[]): Promise<void> {
    driver.process.kill('SIGKILL');
    await driver.stop();
    for (const program of programs) for (const pid of await gate.pids(program)) await waitForExit(pid);
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-crash-'));
    root = join(dir, 'root');
    gate = await ProgramGate.create(['tar', 'zstd']);
    driver = await start();
    const { volume } = await rpc(driver.controller, 'CreateVolume', {
      name: 'crash-source',
      capacity_range: { required_bytes: 64 * MiB },
      volume_capabilities: [mountCapability()],
    });
    sourceId = volume!.volume_id;
    // Incompressible data, so that the throttled streams below take a while.
    for (let i = 0; i < 24; i++) {
      const sub = join(root, 'crash-source', `d${i % 4}`);
      await mkdir(sub, { recursive: true });
      await writeFile(join(sub, `f${i}`), randomBytes(MiB));
    }
    sourceTree = await describeTree(join(root, 'crash-source'));
  });

  after(async () => {
    await gate?.unthrottle('zstd');
    await gate?.unthrottle('tar');
    await driver?.stop();
    await gate?.remove();
    await rm(dir, { recursive: true, force: true });
  });

  it('after kill -9 while the archive is half written, no snapshot is ready; the job resumes and completes it', async () => {
    await gate.throttle('zstd', 2 * MiB);
    const request = { name: 'crash-snap', source_volume_id: sourceId, parameters: {} };
    const first = await callWithDeadline(driver.controller, 'CreateSnapshot', request, 1500);
    assert.equal(first.snapshot!.ready_to_use, false);
    const id = first.snapshot!.snapshot_id;
    const token = id.split('/')[2]!;
    const partialSize = async () => {
      const tmp = join(snapshots(), 'tmp');
      const partial = (await readdir(tmp)).find((f) => f.startsWith(token) && f.endsWith('.partial'));
      return partial ? (await stat(join(tmp, partial))).size : 0;
    };
    await waitUntil(async () => (await partialSize()) > MiB, 'a partial archive');
    await crash(['tar', 'zstd']);

    assert.ok(
      !(await readdir(join(snapshots(), 'data'))).some((f) => f.startsWith(token)),
      'no archive was published',
    );
    await gate.unthrottle('zstd');
    driver = await start();
    const listed = await rpc(driver.controller, 'ListSnapshots', { snapshot_id: id });
    assert.equal(listed.entries.length, 1, 'the snapshot survives the crash as a record');
    assert.equal(listed.entries[0]!.snapshot!.ready_to_use, false, 'and is not reported ready');
    await rejectsWith(
      rpc(driver.controller, 'CreateVolume', {
        name: 'from-crashed',
        volume_capabilities: [mountCapability()],
        volume_content_source: { snapshot: { snapshot_id: id } },
      }),
      status.UNAVAILABLE,
    );
    // Listing it restarted its job: it becomes ready without another CreateSnapshot.
    await waitUntil(
      async () =>
        (await rpc(driver.controller, 'ListSnapshots', { snapshot_id: id })).entries[0]!.snapshot!
          .ready_to_use,
      'the resumed snapshot',
    );
    const again = await rpc(driver.controller, 'CreateSnapshot', request);
    assert.equal(again.snapshot!.snapshot_id, id);
    assert.equal(again.snapshot!.ready_to_use, true);
    assert.deepEqual(await readdir(join(snapshots(), 'tmp')), [], 'no partial archive left');
    await rpc(driver.controller, 'CreateVolume', {
      name: 'from-resumed',
      volume_capabilities: [mountCapability()],
      volume_content_source: { snapshot: { snapshot_id: id } },
    });
    assert.deepEqual(await describeTree(join(root, 'from-resumed')), sourceTree);
  });

  it('after kill -9 while a restore is half extracted, there is no volume; a retry restores it whole', async () => {
    const { snapshot } = await rpc(driver.controller, 'CreateSnapshot', {
      name: 'for-crash-restore',
      source_volume_id: sourceId,
      parameters: {},
    });
    assert.equal(snapshot!.ready_to_use, true);
    await gate.throttle('tar', 2 * MiB);
    const request = {
      name: 'crash-restore',
      volume_capabilities: [mountCapability()],
      volume_content_source: { snapshot: { snapshot_id: snapshot!.snapshot_id } },
    };
    await rejectsWith(callWithDeadline(driver.controller, 'CreateVolume', request, 1500), status.ABORTED);
    const staging = join(root, '.sharedvolume', 'staging');
    await waitUntil(async () => (await countFiles(staging)) >= 3, 'files in the staging directory');
    await crash(['tar', 'zstd']);

    await gate.unthrottle('tar');
    driver = await start();
    const { entries } = await rpc(driver.controller, 'ListVolumes', {});
    assert.ok(
      !entries.some((e) => e.volume!.volume_id === 'local/crash-restore'),
      'no half-restored volume is listed',
    );
    assert.ok(!(await readdir(root)).includes('crash-restore'), 'nothing under its path');
    await waitUntil(async () => (await readdir(staging)).length === 0, 'staging purged at start');

    const done = await callWithDeadline(driver.controller, 'CreateVolume', request, 60_000);
    assert.equal(done.volume!.volume_id, 'local/crash-restore');
    assert.deepEqual(await describeTree(join(root, 'crash-restore')), sourceTree);
  });
});
