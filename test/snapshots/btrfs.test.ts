import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { lstat, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { join } from 'node:path';
import { rpc } from '../../src/cli/csi-client.js';
import { canMakeBtrfs, makeBtrfsImage, qgroupLimit, type BtrfsImage } from '../helpers/btrfs.js';
import { mountCapability, rejectsWith } from '../helpers/csi.js';
import { callWithDeadline } from '../helpers/deadline.js';
import { startDriver, type RunningDriver } from '../helpers/driver.js';
import { ProgramGate } from '../helpers/program-gate.js';
import { buildTree, describeTree } from '../helpers/tree.js';

const MiB = 1024 * 1024;

describe('snapshots of a local backend on btrfs', function () {
  let image: BtrfsImage | undefined;
  let gate: ProgramGate | undefined;
  let driver: RunningDriver | undefined;
  let root: string;
  let sourceId: string;

  const data = () => join(root, '.sharedvolume', 'snapshots', 'data');
  const tmp = () => join(root, '.sharedvolume', 'snapshots', 'tmp');

  before(async function () {
    if (!(await canMakeBtrfs())) return this.skip();
    image = await makeBtrfsImage({ sizeMiB: 768 });
    root = join(image.mountPoint, 'volumes');
    gate = await ProgramGate.create(['tar']);
    driver = await startDriver({ args: ['--local-root', root], env: gate.env() });
    const { volume } = await rpc(driver.controller, 'CreateVolume', {
      name: 'btrfs-source',
      capacity_range: { required_bytes: 32 * MiB },
      volume_capabilities: [mountCapability()],
    });
    sourceId = volume!.volume_id;
    await buildTree(join(root, 'btrfs-source', 'tree'), { files: 200, maxFileBytes: 32 * 1024, seed: 3 });
  });

  after(async () => {
    await gate?.release('tar');
    await driver?.stop();
    await gate?.remove();
    await image?.remove();
  });

  const snapshot = (name: string, parameters: Record<string, string>, source = sourceId) =>
    rpc(driver!.controller, 'CreateSnapshot', { name, source_volume_id: source, parameters }).then(
      (r) => r.snapshot!,
    );

  const restore = (name: string, snapshotId: string, requiredBytes = 0) =>
    rpc(driver!.controller, 'CreateVolume', {
      name,
      capacity_range: { required_bytes: requiredBytes },
      volume_capabilities: [mountCapability()],
      volume_content_source: { snapshot: { snapshot_id: snapshotId } },
    }).then((r) => r.volume!);

  it('takes a native snapshot: ready at once, read-only, and frozen at that instant', async () => {
    const before = await describeTree(join(root, 'btrfs-source'));
    const snap = await snapshot('native-a', { snapshotType: 'native' });
    assert.match(snap.snapshot_id, /^local\/btrfs\/[0-9a-f]{24}$/);
    assert.equal(snap.ready_to_use, true);
    const dir = join(data(), snap.snapshot_id.split('/')[2]!);
    assert.equal((await lstat(dir)).ino, 256, 'a subvolume');
    await assert.rejects(
      writeFile(join(dir, 'nope'), 'x'),
      (err: NodeJS.ErrnoException) => err.code === 'EROFS',
    );
    await writeFile(join(root, 'btrfs-source', 'after-snapshot'), 'later');
    assert.deepEqual(await describeTree(dir), before);
  });

  it('restores a native snapshot as a new subvolume with its own limit', async () => {
    const snap = await snapshot('native-b', { snapshotType: 'native' });
    const frozen = await describeTree(join(data(), snap.snapshot_id.split('/')[2]!));
    const volume = await restore('from-native', snap.snapshot_id, 48 * MiB);
    const dir = join(root, 'from-native');
    assert.equal(volume.capacity_bytes, String(48 * MiB));
    assert.equal((await lstat(dir)).ino, 256);
    assert.equal(await qgroupLimit(dir), 48 * MiB);
    assert.deepEqual(await describeTree(dir), frozen);
    await writeFile(join(dir, 'restored-only'), 'x');
    assert.ok(!(await readdir(join(data(), snap.snapshot_id.split('/')[2]!))).includes('restored-only'));
  });

  it('deletes a native snapshot without touching the source, and keeps it usable after the source is gone', async () => {
    const { volume } = await rpc(driver!.controller, 'CreateVolume', {
      name: 'btrfs-short',
      capacity_range: { required_bytes: 8 * MiB },
      volume_capabilities: [mountCapability()],
    });
    await writeFile(join(root, 'btrfs-short', 'keep'), 'kept');
    const keep = await snapshot('native-keep', { snapshotType: 'native' }, volume!.volume_id);
    const drop = await snapshot('native-drop', { snapshotType: 'native' }, volume!.volume_id);
    await rpc(driver!.controller, 'DeleteSnapshot', { snapshot_id: drop.snapshot_id });
    assert.ok(!(await readdir(data())).includes(drop.snapshot_id.split('/')[2]!));
    assert.equal(await readFile(join(root, 'btrfs-short', 'keep'), 'utf8'), 'kept', 'source untouched');
    await rpc(driver!.controller, 'DeleteVolume', { volume_id: volume!.volume_id });
    await restore('from-deleted-native', keep.snapshot_id);
    assert.equal(await readFile(join(root, 'from-deleted-native', 'keep'), 'utf8'), 'kept');
  });

  it('archives from a point-in-time cut: writes after CreateSnapshot returns are not in the archive', async () => {
    const before = await describeTree(join(root, 'btrfs-source'));
    await gate!.hold('tar');
    const request = { name: 'cut-archive', source_volume_id: sourceId, parameters: {} };
    const first = await callWithDeadline(driver!.controller, 'CreateSnapshot', request, 1500);
    assert.equal(first.snapshot!.ready_to_use, false);
    await gate!.waiting('tar');
    // tar has not read a byte yet, and the volume changes under it.
    await writeFile(join(root, 'btrfs-source', 'written-during-snapshot'), 'new');
    await rm(join(root, 'btrfs-source', 'tree', 'f3'), { force: true });
    await gate!.release('tar');
    const done = await callWithDeadline(driver!.controller, 'CreateSnapshot', request, 30_000);
    assert.equal(done.snapshot!.ready_to_use, true);
    assert.deepEqual(
      await readdir(tmp()).then((t) => t.filter((f) => f.startsWith('cut-'))),
      [],
      'cut removed',
    );
    await restore('from-cut', done.snapshot!.snapshot_id);
    assert.deepEqual(await describeTree(join(root, 'from-cut')), before);
  });

  it('refuses snapshotType native with compression', async () => {
    await rejectsWith(
      snapshot('native-bad', { snapshotType: 'native', compression: 'zstd' }),
      status.INVALID_ARGUMENT,
    );
  });

  it('restores an archive into a subvolume limited to the new capacity', async () => {
    const snap = await snapshot('archive-on-btrfs', { compression: 'zstd' });
    await restore('from-archive-btrfs', snap.snapshot_id, 40 * MiB);
    const dir = join(root, 'from-archive-btrfs');
    assert.equal((await lstat(dir)).ino, 256);
    assert.equal(await qgroupLimit(dir), 40 * MiB);
    const errno = await writeFile(join(dir, 'too-big'), Buffer.alloc(60 * MiB, 1)).then(
      () => 0,
      (err: NodeJS.ErrnoException) => err.errno,
    );
    assert.equal(errno, -constants.errno.EDQUOT);
  });
});
