import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, statfs, unlink, writeFile } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { rpc } from '../../../src/cli/csi-client.js';
import { canMakeBtrfs, makeBtrfsImage, qgroupLimit, type BtrfsImage } from '../../helpers/btrfs.js';
import { mountCapability, rejectsWith } from '../../helpers/csi.js';
import { startDriver, type RunningDriver } from '../../helpers/driver.js';
import { unmountUnder } from '../../helpers/mount-cleanup.js';

const MiB = 1024 * 1024;
const run = promisify(execFile);

/** The errno of a failed write of `bytes` zero bytes to `file`, or undefined when it succeeded. */
async function writeErrno(file: string, bytes: number): Promise<number | undefined> {
  try {
    await writeFile(file, Buffer.alloc(bytes, 1));
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).errno;
  } finally {
    await unlink(file).catch(() => undefined);
  }
}

const EDQUOT = -constants.errno.EDQUOT;

describe('local backend on btrfs with quota: enforced capacity and online expansion', function () {
  let image: BtrfsImage | undefined;
  let driver: RunningDriver | undefined;
  let root: string;
  let scratch: string;

  before(async function () {
    if (!(await canMakeBtrfs())) return this.skip();
    image = await makeBtrfsImage({ sizeMiB: 512 });
    root = join(image.mountPoint, 'volumes');
    scratch = await mkdtemp(join(tmpdir(), 'sv-btrfs-node-'));
    driver = await startDriver({ args: ['--local-root', root] });
  });

  after(async () => {
    await driver?.stop();
    if (scratch) {
      await unmountUnder(scratch);
      await rm(scratch, { recursive: true, force: true });
    }
    await image?.remove();
  });

  async function createVolume(name: string, bytes: number) {
    const { volume } = await rpc(driver!.controller, 'CreateVolume', {
      name,
      capacity_range: { required_bytes: bytes },
      volume_capabilities: [mountCapability()],
    });
    return volume!;
  }

  const expand = (volume_id: string, required_bytes: number, limit_bytes = 0) =>
    rpc(driver!.controller, 'ControllerExpandVolume', {
      volume_id,
      capacity_range: { required_bytes, limit_bytes },
      volume_capability: mountCapability(),
    });

  it('advertises EXPAND_VOLUME and online expansion, and no node expansion', async () => {
    const controller = await rpc(driver!.controller, 'ControllerGetCapabilities', {});
    assert.ok(controller.capabilities.some((c) => c.rpc?.type === 'EXPAND_VOLUME'));
    const plugin = await rpc(driver!.identity, 'GetPluginCapabilities', {});
    assert.ok(plugin.capabilities.some((c) => c.volume_expansion?.type === 'ONLINE'));
    const node = await rpc(driver!.node, 'NodeGetCapabilities', {});
    assert.ok(!node.capabilities.some((c) => c.rpc?.type === 'EXPAND_VOLUME'));
  });

  it('makes each volume a subvolume limited to its capacity: writing past it fails with EDQUOT', async () => {
    const volume = await createVolume('quota-a', 10 * MiB);
    const dir = join(root, 'quota-a');
    assert.equal((await lstat(dir)).ino, 256, 'the volume directory is the root of a subvolume');
    assert.equal(await qgroupLimit(dir), 10 * MiB);
    assert.equal(await writeErrno(join(dir, 'big'), 20 * MiB), EDQUOT);
    assert.equal(await writeErrno(join(dir, 'small'), 2 * MiB), undefined, 'a write within the limit works');
    assert.equal(volume.capacity_bytes, String(10 * MiB));
  });

  it('raises the limit live with ControllerExpandVolume, so that the larger write then succeeds', async () => {
    const volume = await createVolume('quota-b', 10 * MiB);
    const dir = join(root, 'quota-b');
    assert.equal(await writeErrno(join(dir, 'big'), 20 * MiB), EDQUOT);

    const expanded = await expand(volume.volume_id, 40 * MiB);
    assert.equal(expanded.capacity_bytes, String(40 * MiB));
    assert.equal(expanded.node_expansion_required, false);
    assert.equal(await qgroupLimit(dir), 40 * MiB);
    assert.equal(await writeErrno(join(dir, 'big'), 20 * MiB), undefined);

    const { volume: got } = await rpc(driver!.controller, 'ControllerGetVolume', {
      volume_id: volume.volume_id,
    });
    assert.equal(got!.capacity_bytes, String(40 * MiB), 'the record carries the new capacity');
  });

  it('answers a request at or below the current capacity with that capacity, and never shrinks', async () => {
    const volume = await createVolume('quota-c', 30 * MiB);
    const dir = join(root, 'quota-c');
    const same = await expand(volume.volume_id, 10 * MiB);
    assert.equal(same.capacity_bytes, String(30 * MiB));
    assert.equal(await qgroupLimit(dir), 30 * MiB);
    await rejectsWith(expand(volume.volume_id, 10 * MiB, 20 * MiB), status.OUT_OF_RANGE, /cannot shrink/);
    await rejectsWith(expand(volume.volume_id, 50 * MiB, 40 * MiB), status.OUT_OF_RANGE);
    assert.equal(await qgroupLimit(dir), 30 * MiB);
  });

  it('refuses a missing volume with NOT_FOUND and a missing capacity_range with INVALID_ARGUMENT', async () => {
    await rejectsWith(expand('local/no-such-volume', 10 * MiB), status.NOT_FOUND);
    const volume = await createVolume('quota-d', 10 * MiB);
    await rejectsWith(
      rpc(driver!.controller, 'ControllerExpandVolume', { volume_id: volume.volume_id }),
      status.INVALID_ARGUMENT,
      /capacity_range/,
    );
  });

  it('reports the limit as the total in NodeGetVolumeStats, before and after expansion', async () => {
    const volume = await createVolume('quota-stats', 16 * MiB);
    const staging = join(scratch, 'staging');
    const target = join(scratch, 'target');
    await mkdir(staging, { recursive: true });
    const request = { volume_id: volume.volume_id, volume_capability: mountCapability() };
    await rpc(driver!.node, 'NodeStageVolume', { ...request, staging_target_path: staging });
    await rpc(driver!.node, 'NodePublishVolume', {
      ...request,
      staging_target_path: staging,
      target_path: target,
    });
    await writeFile(join(target, 'data'), Buffer.alloc(4 * MiB, 1));
    // btrfs accounts qgroups when it commits a transaction: syncfs commits.
    await run('sync', ['-f', target]);
    const bytes = async () => {
      const stats = await rpc(driver!.node, 'NodeGetVolumeStats', {
        volume_id: volume.volume_id,
        volume_path: target,
      });
      return stats.usage.find((u) => u.unit === 'BYTES')!;
    };
    const before = await bytes();
    assert.equal(before.total, String(16 * MiB));
    assert.ok(Number(before.used) >= 4 * MiB, `used ${before.used}`);
    assert.equal(Number(before.available), 16 * MiB - Number(before.used));

    await expand(volume.volume_id, 64 * MiB);
    assert.equal((await bytes()).total, String(64 * MiB));

    await rpc(driver!.node, 'NodeUnpublishVolume', { volume_id: volume.volume_id, target_path: target });
    await rpc(driver!.node, 'NodeUnstageVolume', {
      volume_id: volume.volume_id,
      staging_target_path: staging,
    });
  });

  it('reports the file system free space in GetCapacity, with volumes allowed beyond it', async () => {
    const { available_capacity } = await rpc(driver!.controller, 'GetCapacity', {});
    const fs = await statfs(root);
    const free = fs.bavail * fs.bsize;
    assert.ok(Math.abs(Number(available_capacity) - free) < 0.05 * free, `${available_capacity} vs ${free}`);
    // Limits are per volume: one larger than the whole (512 MiB) file system is a valid promise.
    const big = await createVolume('quota-big', 1024 * MiB);
    assert.equal(await qgroupLimit(join(root, 'quota-big')), 1024 * MiB);
    assert.equal(big.capacity_bytes, String(1024 * MiB));
  });

  it('deletes the subvolume with DeleteVolume', async () => {
    const volume = await createVolume('quota-gone', 10 * MiB);
    await rpc(driver!.controller, 'DeleteVolume', { volume_id: volume.volume_id });
    assert.ok(!(await readdir(root)).includes('quota-gone'));
    // The trash is purged in the background: wait for it to empty.
    const trash = join(root, '.sharedvolume', 'trash');
    while ((await readdir(trash)).length > 0) await new Promise((r) => setTimeout(r, 50));
  });

  it("clones a volume as a subvolume with the clone's own limit, independent of the source", async () => {
    const source = await createVolume('quota-src', 10 * MiB);
    await writeFile(join(root, 'quota-src', 'data'), Buffer.alloc(3 * MiB, 7));
    const { volume } = await rpc(driver!.controller, 'CreateVolume', {
      name: 'quota-clone',
      capacity_range: { required_bytes: 20 * MiB },
      volume_capabilities: [mountCapability()],
      volume_content_source: { volume: { volume_id: source.volume_id } },
    });
    const dir = join(root, 'quota-clone');
    assert.equal(volume!.capacity_bytes, String(20 * MiB));
    assert.equal((await lstat(dir)).ino, 256);
    assert.equal(await qgroupLimit(dir), 20 * MiB);
    assert.equal(await qgroupLimit(join(root, 'quota-src')), 10 * MiB, 'the source keeps its limit');
    assert.deepEqual(await readFile(join(dir, 'data')), Buffer.alloc(3 * MiB, 7));
    await writeFile(join(dir, 'more'), Buffer.alloc(MiB, 1));
    assert.ok(!(await readdir(join(root, 'quota-src'))).includes('more'));
    assert.equal(await writeErrno(join(dir, 'big'), 30 * MiB), EDQUOT);
  });

  it('keeps the expanded capacity across a driver restart', async () => {
    const volume = await createVolume('quota-restart', 10 * MiB);
    await expand(volume.volume_id, 20 * MiB);
    await driver!.stop();
    driver = await startDriver({ args: ['--local-root', root] });
    const { volume: got } = await rpc(driver.controller, 'ControllerGetVolume', {
      volume_id: volume.volume_id,
    });
    assert.equal(got!.capacity_bytes, String(20 * MiB));
    assert.equal(await qgroupLimit(join(root, 'quota-restart')), 20 * MiB);
  });
});

describe('local backend on other file systems: capacity recorded, not enforced', () => {
  let dir: string;
  let driver: RunningDriver | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-plain-'));
    driver = await startDriver({ args: ['--local-root', dir] });
  });

  after(async () => {
    await driver?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('expands by updating the record: the new capacity is reported, nothing enforces it', async () => {
    const { volume } = await rpc(driver!.controller, 'CreateVolume', {
      name: 'plain-a',
      capacity_range: { required_bytes: MiB },
      volume_capabilities: [mountCapability()],
    });
    const expanded = await rpc(driver!.controller, 'ControllerExpandVolume', {
      volume_id: volume!.volume_id,
      capacity_range: { required_bytes: 2 * MiB },
    });
    assert.equal(expanded.capacity_bytes, String(2 * MiB));
    assert.equal(expanded.node_expansion_required, false);
    const { volume: got } = await rpc(driver!.controller, 'ControllerGetVolume', {
      volume_id: volume!.volume_id,
    });
    assert.equal(got!.capacity_bytes, String(2 * MiB));
    // Not enforced: a write larger than the capacity succeeds.
    await writeFile(join(dir, 'plain-a', 'big'), Buffer.alloc(4 * MiB, 1));
    assert.notEqual((await lstat(join(dir, 'plain-a'))).ino, 256);
  });

  it('refuses an expansion beyond the whole file system with OUT_OF_RANGE, since nothing could hold it', async () => {
    const { volume } = await rpc(driver!.controller, 'CreateVolume', {
      name: 'plain-b',
      capacity_range: { required_bytes: MiB },
      volume_capabilities: [mountCapability()],
    });
    const fs = await statfs(dir);
    await rejectsWith(
      rpc(driver!.controller, 'ControllerExpandVolume', {
        volume_id: volume!.volume_id,
        capacity_range: { required_bytes: fs.blocks * fs.bsize * 2 },
      }),
      status.OUT_OF_RANGE,
    );
  });
});
