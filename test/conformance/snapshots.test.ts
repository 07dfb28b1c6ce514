import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { rpc } from '../../src/cli/csi-client.js';
import type { Volume__Output } from '../../src/generated/csi/v1/Volume.js';
import { rejectsWith } from '../helpers/csi.js';
import { unmountUnder } from '../helpers/mount-cleanup.js';
import { describeEachFixture, mountCap, MiB, type FixtureSession } from './harness.js';

/**
 * Snapshots, restore, clone and expansion on every backend, with the data written and read through
 * the node plugin's real mounts (bind, the NFS client stand-in, GlusterFS FUSE).
 */

const TREE = {
  'README.md': 'hello\n',
  'nested/deeper/data.bin': 'x'.repeat(200_000),
  'nested/empty-after/.keep': '',
};

/** Stages and publishes a volume at a fresh target, runs `use` on it, and always unmounts. */
async function withPublished<T>(
  session: FixtureSession,
  volume: Volume__Output,
  use: (dir: string) => Promise<T>,
): Promise<T> {
  const work = await session.tempDir('snap');
  const staging = join(work, 'staging');
  const target = join(work, 'target');
  await mkdir(staging);
  const common = {
    volume_id: volume.volume_id,
    volume_capability: mountCap(),
    volume_context: volume.volume_context,
  };
  try {
    await rpc(session.driver.node, 'NodeStageVolume', { ...common, staging_target_path: staging });
    await rpc(session.driver.node, 'NodePublishVolume', {
      ...common,
      staging_target_path: staging,
      target_path: target,
    });
    return await use(target);
  } finally {
    await rpc(session.driver.node, 'NodeUnpublishVolume', {
      volume_id: volume.volume_id,
      target_path: target,
    });
    await rpc(session.driver.node, 'NodeUnstageVolume', {
      volume_id: volume.volume_id,
      staging_target_path: staging,
    });
    await unmountUnder(work);
  }
}

async function writeTree(dir: string): Promise<void> {
  for (const [name, content] of Object.entries(TREE)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), content);
  }
  await chmod(join(dir, 'README.md'), 0o640);
  await symlink('nested/deeper/data.bin', join(dir, 'link'));
}

async function assertTree(dir: string): Promise<void> {
  for (const [name, content] of Object.entries(TREE)) {
    assert.equal(await readFile(join(dir, name), 'utf8'), content, name);
  }
  assert.equal((await stat(join(dir, 'README.md'))).mode & 0o777, 0o640);
  assert.equal(await readlink(join(dir, 'link')), 'nested/deeper/data.bin');
}

describe('conformance: snapshots, restore, clone and expansion', function () {
  describeEachFixture((session) => {
    const controller = () => session.driver.controller;
    let source: Volume__Output;
    let snapshotId: string;

    before(async function () {
      this.timeout(60_000);
      source = await session.createVolume('snap-source', { capacity_range: { required_bytes: 8 * MiB } });
      await withPublished(session, source, writeTree);
    });

    it('CreateSnapshot is ready with the size of the data, idempotent by name, and listed by id and by source', async () => {
      const name = session.volumeName('snap');
      const { snapshot } = await rpc(controller(), 'CreateSnapshot', {
        name,
        source_volume_id: source.volume_id,
      });
      snapshotId = snapshot!.snapshot_id;
      assert.equal(snapshot!.ready_to_use, true);
      assert.equal(snapshot!.source_volume_id, source.volume_id);
      assert.ok(Number(snapshot!.size_bytes) > 0);
      const again = await rpc(controller(), 'CreateSnapshot', { name, source_volume_id: source.volume_id });
      assert.equal(again.snapshot!.snapshot_id, snapshotId);
      const other = await session.createVolume('snap-other');
      await rejectsWith(
        rpc(controller(), 'CreateSnapshot', { name, source_volume_id: other.volume_id }),
        status.ALREADY_EXISTS,
      );
      const byId = await rpc(controller(), 'ListSnapshots', { snapshot_id: snapshotId });
      assert.deepEqual(
        byId.entries.map((e) => e.snapshot!.snapshot_id),
        [snapshotId],
      );
      const bySource = await rpc(controller(), 'ListSnapshots', { source_volume_id: source.volume_id });
      assert.ok(bySource.entries.some((e) => e.snapshot!.snapshot_id === snapshotId));
    });

    it('restores a snapshot into a new volume with the same tree, and never into a smaller one', async function () {
      this.timeout(60_000);
      const restored = await session.createVolume('restored', {
        capacity_range: { required_bytes: 16 * MiB },
        volume_content_source: { snapshot: { snapshot_id: snapshotId } },
      });
      assert.equal(restored.content_source?.snapshot?.snapshot_id, snapshotId);
      await withPublished(session, restored, assertTree);
      await rejectsWith(
        session.createVolume('restored-small', {
          capacity_range: { required_bytes: 1024, limit_bytes: 1024 },
          volume_content_source: { snapshot: { snapshot_id: snapshotId } },
        }),
        status.OUT_OF_RANGE,
      );
    });

    it('clones a volume with the same tree', async function () {
      this.timeout(60_000);
      const clone = await session.createVolume('cloned', {
        volume_content_source: { volume: { volume_id: source.volume_id } },
      });
      await withPublished(session, clone, assertTree);
    });

    it('answers NOT_FOUND for a restore from a missing snapshot, leaving no directory behind', async () => {
      const rootBefore = (await session.backend.listRoot()).sort();
      await rejectsWith(
        session.createVolume('restored-missing', {
          volume_content_source: { snapshot: { snapshot_id: `${snapshotId}-missing` } },
        }),
        status.NOT_FOUND,
      );
      assert.deepEqual((await session.backend.listRoot()).sort(), rootBefore);
    });

    it('expands a volume online without node expansion', async () => {
      const expanded = await rpc(controller(), 'ControllerExpandVolume', {
        volume_id: source.volume_id,
        capacity_range: { required_bytes: 32 * MiB },
        volume_capability: mountCap(),
      });
      assert.ok(Number(expanded.capacity_bytes) >= 32 * MiB);
      assert.equal(expanded.node_expansion_required, false);
      const { volume } = await rpc(controller(), 'ControllerGetVolume', { volume_id: source.volume_id });
      assert.ok(Number(volume!.capacity_bytes) >= 32 * MiB);
    });

    it('DeleteSnapshot removes the snapshot and leaves its source volume whole', async function () {
      this.timeout(60_000);
      await rpc(controller(), 'DeleteSnapshot', { snapshot_id: snapshotId });
      await rpc(controller(), 'DeleteSnapshot', { snapshot_id: snapshotId });
      const listed = await rpc(controller(), 'ListSnapshots', { snapshot_id: snapshotId });
      assert.deepEqual(listed.entries, []);
      await withPublished(session, source, assertTree);
    });
  });
});
