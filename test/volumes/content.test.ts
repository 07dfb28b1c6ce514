import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rpc } from '../../src/cli/csi-client.js';
import type { CreateVolumeRequest } from '../../src/generated/csi/v1/CreateVolumeRequest.js';
import { mountCapability, rejectsWith } from '../helpers/csi.js';
import { callWithDeadline } from '../helpers/deadline.js';
import { startDriver, type RunningDriver } from '../helpers/driver.js';
import { ProgramGate, waitForExit } from '../helpers/program-gate.js';
import { buildTree, describeTree } from '../helpers/tree.js';

const MiB = 1024 * 1024;

/** CreateVolume with a deadline, as external-provisioner sends it. */
function createWithDeadline(driver: RunningDriver, request: CreateVolumeRequest, timeoutMs: number) {
  return callWithDeadline(
    driver.controller,
    'CreateVolume',
    { volume_capabilities: [mountCapability()], ...request },
    timeoutMs,
  );
}

/** Everything on the backend that is not a committed volume's own data: records, names, staging. */
async function backendState(root: string) {
  const meta = join(root, '.sharedvolume');
  return {
    entries: (await readdir(root)).filter((e) => e !== '.sharedvolume').sort(),
    records: (await readdir(join(meta, 'records'))).length,
    names: (await readdir(join(meta, 'names'))).length,
    staging: await readdir(join(meta, 'staging')),
  };
}

describe('CreateVolume from a volume (clone)', function () {
  let dir: string;
  let root: string;
  let gate: ProgramGate;
  let driver: RunningDriver | undefined;
  let source: { volume_id: string };

  const start = async () => startDriver({ args: ['--local-root', root], env: gate.env() });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-clone-'));
    root = join(dir, 'root');
    gate = await ProgramGate.create(['cp']);
    driver = await start();
    const { volume } = await rpc(driver.controller, 'CreateVolume', {
      name: 'clone-source',
      capacity_range: { required_bytes: 8 * MiB },
      volume_capabilities: [mountCapability()],
    });
    source = volume!;
    await rm(join(root, 'clone-source'), { recursive: true });
    await buildTree(join(root, 'clone-source'), { files: 300, maxFileBytes: 32 * 1024 });
  });

  after(async () => {
    await gate?.release('cp');
    await driver?.stop();
    await gate?.remove();
    await rm(dir, { recursive: true, force: true });
  });

  const clone = (name: string, extra: Partial<CreateVolumeRequest> = {}) =>
    rpc(driver!.controller, 'CreateVolume', {
      name,
      volume_capabilities: [mountCapability()],
      volume_content_source: { volume: { volume_id: source.volume_id } },
      ...extra,
    });

  it('advertises CLONE_VOLUME', async () => {
    const { capabilities } = await rpc(driver!.controller, 'ControllerGetCapabilities', {});
    assert.ok(capabilities.some((c) => c.rpc?.type === 'CLONE_VOLUME'));
  });

  it('copies content, modes, owners, mtimes, symlinks, hard links and empty directories', async () => {
    const { volume } = await clone('clone-a', { capacity_range: { required_bytes: 8 * MiB } });
    assert.equal(volume!.content_source?.volume?.volume_id, source.volume_id, 'the answer names its source');
    assert.equal(volume!.capacity_bytes, String(8 * MiB));
    assert.deepEqual(
      await describeTree(join(root, 'clone-a')),
      await describeTree(join(root, 'clone-source')),
    );
  });

  it('takes the source capacity when none is asked for, and accepts a larger one', async () => {
    const { volume: same } = await clone('clone-b');
    assert.equal(same!.capacity_bytes, String(8 * MiB));
    const { volume: larger } = await clone('clone-c', { capacity_range: { required_bytes: 16 * MiB } });
    assert.equal(larger!.capacity_bytes, String(16 * MiB));
  });

  it('refuses a smaller capacity with OUT_OF_RANGE and leaves nothing behind', async () => {
    const before = await backendState(root);
    await rejectsWith(
      clone('clone-small', { capacity_range: { required_bytes: 4 * MiB } }),
      status.OUT_OF_RANGE,
    );
    assert.deepEqual(await backendState(root), before);
  });

  it('refuses a missing source with NOT_FOUND and leaves nothing behind: no directory, no record', async () => {
    const before = await backendState(root);
    await rejectsWith(
      rpc(driver!.controller, 'CreateVolume', {
        name: 'clone-orphan',
        volume_capabilities: [mountCapability()],
        volume_content_source: { volume: { volume_id: 'local/no-such-volume' } },
      }),
      status.NOT_FOUND,
    );
    assert.deepEqual(await backendState(root), before);
    const { entries } = await rpc(driver!.controller, 'ListVolumes', {});
    assert.ok(!entries.some((e) => e.volume!.volume_id.endsWith('clone-orphan')));
  });

  it('is idempotent by name and refuses the same name with another source or none', async () => {
    const first = await clone('clone-idem');
    const again = await clone('clone-idem');
    assert.equal(again.volume!.volume_id, first.volume!.volume_id);
    await rejectsWith(
      rpc(driver!.controller, 'CreateVolume', {
        name: 'clone-idem',
        volume_capabilities: [mountCapability()],
      }),
      status.ALREADY_EXISTS,
      /content source/,
    );
    const { volume: other } = await rpc(driver!.controller, 'CreateVolume', {
      name: 'clone-other-source',
      volume_capabilities: [mountCapability()],
    });
    await rejectsWith(
      clone('clone-idem', { volume_content_source: { volume: { volume_id: other!.volume_id } } }),
      status.ALREADY_EXISTS,
    );
  });

  it('answers ABORTED while a clone runs past the deadline, on every retry, then the volume', async () => {
    await gate.hold('cp');
    const request = {
      name: 'clone-slow',
      volume_content_source: { volume: { volume_id: source.volume_id } },
    };
    await rejectsWith(createWithDeadline(driver!, request, 1500), status.ABORTED, /still in progress/);
    await gate.waiting('cp');
    await rejectsWith(createWithDeadline(driver!, request, 1000), status.ABORTED, /still in progress/);
    // Not a volume yet: not listed, nothing under its path.
    const { entries } = await rpc(driver!.controller, 'ListVolumes', {});
    assert.ok(!entries.some((e) => e.volume!.volume_id === 'local/clone-slow'));
    assert.ok(!(await readdir(root)).includes('clone-slow'));
    await gate.release('cp');
    const done = await createWithDeadline(driver!, request, 30_000);
    assert.equal(done.volume!.volume_id, 'local/clone-slow');
    assert.deepEqual(
      await describeTree(join(root, 'clone-slow')),
      await describeTree(join(root, 'clone-source')),
    );
  });

  it('reports a failed copy once, leaves nothing behind, and the next call starts afresh', async () => {
    const before = await backendState(root);
    await gate.fail('cp');
    const request = {
      name: 'clone-fails',
      volume_content_source: { volume: { volume_id: source.volume_id } },
    };
    await rejectsWith(createWithDeadline(driver!, request, 20_000), status.INTERNAL, /failing on purpose/);
    assert.deepEqual(await backendState(root), before);
    await gate.pass('cp');
    const done = await createWithDeadline(driver!, request, 20_000);
    assert.equal(done.volume!.volume_id, 'local/clone-fails');
  });

  it('after kill -9 mid-clone and a restart: no volume, no directory, no staging; a retry completes it', async () => {
    await gate.hold('cp');
    const request = {
      name: 'clone-crash',
      volume_content_source: { volume: { volume_id: source.volume_id } },
    };
    await rejectsWith(createWithDeadline(driver!, request, 1500), status.ABORTED);
    const copier = await gate.waiting('cp');
    driver!.process.kill('SIGKILL');
    process.kill(copier, 'SIGKILL');
    await driver!.stop();
    await waitForExit(copier);
    await gate.release('cp');

    driver = await start();
    const { entries } = await rpc(driver.controller, 'ListVolumes', {});
    assert.ok(!entries.some((e) => e.volume!.volume_id === 'local/clone-crash'));
    assert.ok(!(await readdir(root)).includes('clone-crash'));
    // Staging leftovers are purged in the background at start.
    while ((await backendState(root)).staging.length > 0) await new Promise((r) => setTimeout(r, 20));

    const done = await createWithDeadline(driver, request, 30_000);
    assert.equal(done.volume!.volume_id, 'local/clone-crash');
    assert.deepEqual(
      await describeTree(join(root, 'clone-crash')),
      await describeTree(join(root, 'clone-source')),
    );
  });

  it('never copies into the source: the clone is independent of it', async () => {
    await clone('clone-independent');
    await writeFile(join(root, 'clone-independent', 'new-file'), 'only in the clone');
    assert.ok(!(await readdir(join(root, 'clone-source'))).includes('new-file'));
    assert.equal(await readFile(join(root, 'clone-independent', 'new-file'), 'utf8'), 'only in the clone');
  });
});
