import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { rpc } from '../../src/cli/csi-client.js';
import type { VolumeCapability } from '../../src/generated/csi/v1/VolumeCapability.js';
import { rejectsWith } from '../helpers/csi.js';
import { callByName, codeOf, describeEachFixture, mountCap } from './harness.js';
import { mountOptionsAt, mountsAt, mountsUnder, unmountUnder } from './mounts.js';

const ADVERTISED = [
  'STAGE_UNSTAGE_VOLUME',
  'GET_VOLUME_STATS',
  'VOLUME_CONDITION',
  'SINGLE_NODE_MULTI_WRITER',
  'VOLUME_MOUNT_GROUP',
];
const RPCS_BY_CAPABILITY: Record<string, string[]> = {
  STAGE_UNSTAGE_VOLUME: ['NodeStageVolume', 'NodeUnstageVolume'],
  GET_VOLUME_STATS: ['NodeGetVolumeStats'],
  EXPAND_VOLUME: ['NodeExpandVolume'],
};
const ALWAYS_IMPLEMENTED = ['NodePublishVolume', 'NodeUnpublishVolume', 'NodeGetInfo', 'NodeGetCapabilities'];

const codeName = (code: status) => status[code];
const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

interface NodeVolume {
  id: string;
  context: Record<string, string>;
  staging: string;
  capability: VolumeCapability;
}

describe('conformance: Node service', function () {
  describeEachFixture((session) => {
    const node = () => session.driver.node;
    /** Per-test directory for staging and target paths; whatever stays mounted under it is removed in afterEach. */
    let work: string;

    beforeEach(async () => {
      work = await session.tempDir('node');
    });

    afterEach(async () => {
      await unmountUnder(work);
    });

    /** A new volume and an empty staging directory for it, as the CO prepares one. */
    async function newVolume(label: string, capability = mountCap()): Promise<NodeVolume> {
      const volume = await session.createVolume(label);
      const staging = join(work, `${label}-staging`);
      await mkdir(staging);
      return { id: volume.volume_id, context: volume.volume_context, staging, capability };
    }

    function stage(v: NodeVolume) {
      return rpc(node(), 'NodeStageVolume', {
        volume_id: v.id,
        staging_target_path: v.staging,
        volume_capability: v.capability,
        volume_context: v.context,
      });
    }

    async function stagedVolume(label: string, capability = mountCap()): Promise<NodeVolume> {
      const v = await newVolume(label, capability);
      await stage(v);
      return v;
    }

    function publish(v: NodeVolume, target: string, readonly = false) {
      return rpc(node(), 'NodePublishVolume', {
        volume_id: v.id,
        staging_target_path: v.staging,
        target_path: target,
        volume_capability: v.capability,
        volume_context: v.context,
        readonly,
      });
    }

    /** The call must fail with `code` and leave the mount table under the work dir exactly as it found it. */
    async function failsWithoutMounting(call: () => Promise<unknown>, code: status, message?: RegExp) {
      const before = await mountsUnder(work);
      // Leaked mounts are checked even when the code is wrong: they are the worse failure.
      const wrong = await rejectsWith(call(), code, message).then(
        () => undefined,
        (err: Error) => err,
      );
      const also = wrong ? ` (besides: ${wrong.message})` : '';
      assert.deepEqual(await mountsUnder(work), before, `the call changed the mounts${also}`);
      if (wrong) throw wrong;
    }

    describe('NodeGetCapabilities and NodeGetInfo', () => {
      it('advertises exactly the supported set and implements what it advertises', async () => {
        const { capabilities } = await rpc(node(), 'NodeGetCapabilities', {});
        const types = capabilities.map((c) => c.rpc!.type);
        assert.deepEqual([...types].sort(), [...ADVERTISED].sort());
        for (const method of [...ALWAYS_IMPLEMENTED, ...types.flatMap((t) => RPCS_BY_CAPABILITY[t] ?? [])]) {
          assert.notEqual(codeName(await codeOf(callByName(node(), method, {}))), 'UNIMPLEMENTED', method);
        }
      });

      it('answers UNIMPLEMENTED for NodeExpandVolume, as EXPAND_VOLUME is not advertised', async () => {
        const v = await newVolume('expand');
        const request = { volume_id: v.id, volume_path: v.staging, capacity_range: { required_bytes: 1 } };
        assert.equal(
          codeName(await codeOf(callByName(node(), 'NodeExpandVolume', request))),
          'UNIMPLEMENTED',
        );
      });

      it('NodeGetInfo returns the node id and no topology', async () => {
        const info = await rpc(node(), 'NodeGetInfo', {});
        assert.equal(info.node_id, 'test-node');
        assert.ok(Buffer.byteLength(info.node_id) <= 256);
        assert.ok(Number(info.max_volumes_per_node) >= 0);
        assert.equal(info.accessible_topology, null, 'topology needs VOLUME_ACCESSIBILITY_CONSTRAINTS');
      });
    });

    describe('NodeStageVolume and NodeUnstageVolume', () => {
      it('refuses a missing volume_id, staging path or capability with INVALID_ARGUMENT, mounting nothing', async () => {
        const v = await newVolume('stage-args');
        const base = {
          volume_id: v.id,
          staging_target_path: v.staging,
          volume_capability: v.capability,
          volume_context: v.context,
        };
        await failsWithoutMounting(
          () => rpc(node(), 'NodeStageVolume', { ...base, volume_id: '' }),
          status.INVALID_ARGUMENT,
        );
        await failsWithoutMounting(
          () => rpc(node(), 'NodeStageVolume', { ...base, staging_target_path: '' }),
          status.INVALID_ARGUMENT,
        );
        await failsWithoutMounting(
          () => rpc(node(), 'NodeStageVolume', { ...base, volume_capability: null }),
          status.INVALID_ARGUMENT,
        );
      });

      it('answers NOT_FOUND for a volume that does not exist, mounting nothing', async () => {
        const staging = join(work, 'ghost-staging');
        await mkdir(staging);
        const ghost: NodeVolume = {
          id: await session.unknownVolumeId(),
          context: {},
          staging,
          capability: mountCap(),
        };
        await failsWithoutMounting(() => stage(ghost), status.NOT_FOUND);
      });

      it('is idempotent: staging twice answers OK and mounts once', async () => {
        const v = await stagedVolume('stage-twice');
        await stage(v);
        assert.equal((await mountsAt(v.staging)).length, 1);
      });

      it('answers ALREADY_EXISTS when another volume is staged at the path, keeping the first', async () => {
        const a = await stagedVolume('stage-a');
        await writeFile(join(a.staging, 'marker'), 'a');
        const b = await newVolume('stage-b');
        await failsWithoutMounting(() => stage({ ...b, staging: a.staging }), status.ALREADY_EXISTS);
        assert.equal(await readFile(join(a.staging, 'marker'), 'utf8'), 'a');
      });

      it('unstage of a path that is not staged answers OK', async () => {
        const v = await newVolume('unstage-idle');
        await rpc(node(), 'NodeUnstageVolume', { volume_id: v.id, staging_target_path: v.staging });
        await rpc(node(), 'NodeUnstageVolume', {
          volume_id: v.id,
          staging_target_path: join(work, 'never-created'),
        });
      });

      it('unstage undoes stage, and the data stays on the backend', async () => {
        const v = await stagedVolume('unstage');
        await writeFile(join(v.staging, 'kept'), 'data');
        await rpc(node(), 'NodeUnstageVolume', { volume_id: v.id, staging_target_path: v.staging });
        assert.deepEqual(await mountsAt(v.staging), []);
        await rpc(node(), 'NodeUnstageVolume', { volume_id: v.id, staging_target_path: v.staging });
        await stage(v);
        assert.equal(await readFile(join(v.staging, 'kept'), 'utf8'), 'data');
      });

      it('refuses NodeUnstageVolume without volume_id or staging path with INVALID_ARGUMENT', async () => {
        const v = await stagedVolume('unstage-args');
        await failsWithoutMounting(
          () => rpc(node(), 'NodeUnstageVolume', { volume_id: '', staging_target_path: v.staging }),
          status.INVALID_ARGUMENT,
        );
        await failsWithoutMounting(
          () => rpc(node(), 'NodeUnstageVolume', { volume_id: v.id, staging_target_path: '' }),
          status.INVALID_ARGUMENT,
        );
      });
    });

    describe('NodePublishVolume and NodeUnpublishVolume', () => {
      it('answers FAILED_PRECONDITION when the volume is not staged, mounting nothing', async () => {
        const v = await newVolume('unstaged');
        const target = join(work, 'target');
        await failsWithoutMounting(() => publish(v, target), status.FAILED_PRECONDITION);
        await failsWithoutMounting(() => publish({ ...v, staging: '' }, target), status.FAILED_PRECONDITION);
      });

      it('refuses a missing volume_id, target path or capability with INVALID_ARGUMENT, mounting nothing', async () => {
        const v = await stagedVolume('publish-args');
        const target = join(work, 'target');
        await failsWithoutMounting(() => publish({ ...v, id: '' }, target), status.INVALID_ARGUMENT);
        await failsWithoutMounting(() => publish(v, ''), status.INVALID_ARGUMENT);
        await failsWithoutMounting(
          () =>
            rpc(node(), 'NodePublishVolume', {
              volume_id: v.id,
              staging_target_path: v.staging,
              target_path: target,
              volume_capability: null,
            }),
          status.INVALID_ARGUMENT,
        );
      });

      it('is idempotent: publishing twice with the same arguments answers OK and mounts once', async () => {
        const v = await stagedVolume('publish-twice');
        const target = join(work, 'target');
        await publish(v, target);
        await publish(v, target);
        assert.equal((await mountsAt(target)).length, 1);
      });

      it('answers ALREADY_EXISTS when the target is published with another readonly flag, leaving it as it was', async () => {
        const v = await stagedVolume('publish-conflict');
        const target = join(work, 'target');
        await publish(v, target, false);
        await failsWithoutMounting(() => publish(v, target, true), status.ALREADY_EXISTS);
        assert.ok((await mountOptionsAt(target)).includes('rw'));
        await writeFile(join(target, 'still-writable'), 'yes');
      });

      it('publishes read-only for real: writes fail with EROFS', async () => {
        const v = await stagedVolume('readonly');
        const rw = join(work, 'rw');
        const ro = join(work, 'ro');
        await publish(v, rw, false);
        await publish(v, ro, true);
        assert.ok((await mountOptionsAt(ro)).includes('ro'));
        await writeFile(join(rw, 'shared'), 'from rw');
        assert.equal(await readFile(join(ro, 'shared'), 'utf8'), 'from rw');
        await assert.rejects(
          writeFile(join(ro, 'blocked'), 'x'),
          (err: NodeJS.ErrnoException) => err.code === 'EROFS',
        );
      });

      it('applies mount_flags (noexec) to the published mount', async () => {
        const v = await stagedVolume(
          'noexec',
          mountCap('MULTI_NODE_MULTI_WRITER', { mount_flags: ['noexec'] }),
        );
        const target = join(work, 'target');
        await publish(v, target);
        assert.ok(
          (await mountOptionsAt(target)).includes('noexec'),
          `options: ${(await mountOptionsAt(target)).join(',')}`,
        );
        const script = join(target, 'run.sh');
        await writeFile(script, '#!/bin/sh\nexit 0\n');
        await chmod(script, 0o755);
        await assert.rejects(
          promisify(execFile)(script),
          (err: NodeJS.ErrnoException) => err.code === 'EACCES',
        );
      });

      it('applies volume_mount_group: the volume root belongs to the group and is group-writable', async () => {
        const gid = 4242;
        const v = await stagedVolume(
          'fsgroup',
          mountCap('MULTI_NODE_MULTI_WRITER', { volume_mount_group: String(gid) }),
        );
        const target = join(work, 'target');
        await publish(v, target);
        const root = await stat(target);
        assert.equal(root.gid, gid);
        assert.ok(root.mode & 0o020, `mode ${root.mode.toString(8)} is not group-writable`);
        await writeFile(join(target, 'new-file'), 'x');
        assert.equal(
          (await stat(join(target, 'new-file'))).gid,
          gid,
          'new entries should carry the mount group',
        );
      });

      it('unpublish of a target that is not mounted answers OK and removes the directory', async () => {
        const v = await stagedVolume('unpublish-idle');
        const target = join(work, 'plain-dir');
        await mkdir(target);
        await rpc(node(), 'NodeUnpublishVolume', { volume_id: v.id, target_path: target });
        assert.equal(await exists(target), false);
        await rpc(node(), 'NodeUnpublishVolume', { volume_id: v.id, target_path: target });
      });

      it('unpublish undoes publish and leaves the staging mount alone', async () => {
        const v = await stagedVolume('unpublish');
        const target = join(work, 'target');
        await publish(v, target);
        await rpc(node(), 'NodeUnpublishVolume', { volume_id: v.id, target_path: target });
        assert.deepEqual(await mountsAt(target), []);
        assert.equal(await exists(target), false);
        assert.equal((await mountsAt(v.staging)).length, 1);
      });

      it('refuses NodeUnpublishVolume without volume_id or target path with INVALID_ARGUMENT', async () => {
        const v = await stagedVolume('unpublish-args');
        const target = join(work, 'target');
        await publish(v, target);
        await failsWithoutMounting(
          () => rpc(node(), 'NodeUnpublishVolume', { volume_id: '', target_path: target }),
          status.INVALID_ARGUMENT,
        );
        await failsWithoutMounting(
          () => rpc(node(), 'NodeUnpublishVolume', { volume_id: v.id, target_path: '' }),
          status.INVALID_ARGUMENT,
        );
      });
    });

    describe('NodeGetVolumeStats', () => {
      it('reports BYTES and INODES usage and a normal condition for a published volume', async () => {
        const v = await stagedVolume('stats');
        const target = join(work, 'target');
        await publish(v, target);
        const stats = await rpc(node(), 'NodeGetVolumeStats', {
          volume_id: v.id,
          volume_path: target,
          staging_target_path: v.staging,
        });
        for (const unit of ['BYTES', 'INODES']) {
          const usage = stats.usage.find((u) => u.unit === unit);
          assert.ok(usage, `no ${unit} usage`);
          const [total, available, used] = [usage.total, usage.available, usage.used].map(Number);
          assert.ok(total! > 0, `${unit} total ${usage.total}`);
          assert.ok(
            available! >= 0 && used! >= 0 && available! <= total!,
            `${unit}: ${JSON.stringify(usage)}`,
          );
        }
        assert.equal(stats.volume_condition?.abnormal, false, stats.volume_condition?.message);
      });

      it('answers NOT_FOUND for a volume path that does not exist', async () => {
        const v = await newVolume('stats-missing');
        await rejectsWith(
          rpc(node(), 'NodeGetVolumeStats', { volume_id: v.id, volume_path: join(work, 'nowhere') }),
          status.NOT_FOUND,
        );
      });

      it('reports an abnormal condition for a directory that is not a mount', async () => {
        const v = await newVolume('stats-plain');
        const stats = await rpc(node(), 'NodeGetVolumeStats', { volume_id: v.id, volume_path: v.staging });
        assert.equal(stats.volume_condition?.abnormal, true);
        assert.ok(stats.volume_condition!.message.length > 0);
      });

      it('refuses a missing volume_id or volume_path with INVALID_ARGUMENT', async () => {
        const v = await stagedVolume('stats-args');
        await rejectsWith(
          rpc(node(), 'NodeGetVolumeStats', { volume_id: '', volume_path: v.staging }),
          status.INVALID_ARGUMENT,
        );
        await rejectsWith(
          rpc(node(), 'NodeGetVolumeStats', { volume_id: v.id, volume_path: '' }),
          status.INVALID_ARGUMENT,
        );
      });
    });

    describe('concurrency', () => {
      it('two concurrent stages of one volume: each OK or ABORTED, at least one OK, one mount', async () => {
        const v = await newVolume('race-stage');
        const codes = await Promise.all([1, 2].map(() => codeOf(stage(v))));
        for (const code of codes)
          assert.ok(code === status.OK || code === status.ABORTED, `unexpected ${codeName(code)}`);
        assert.ok(codes.includes(status.OK), 'neither stage succeeded');
        assert.equal((await mountsAt(v.staging)).length, 1);
      });

      it('two concurrent publishes to one target: each OK or ABORTED, at least one OK, one mount', async () => {
        const v = await stagedVolume('race-publish');
        const target = join(work, 'target');
        const codes = await Promise.all([1, 2].map(() => codeOf(publish(v, target))));
        for (const code of codes)
          assert.ok(code === status.OK || code === status.ABORTED, `unexpected ${codeName(code)}`);
        assert.ok(codes.includes(status.OK), 'neither publish succeeded');
        assert.equal((await mountsAt(target)).length, 1);
      });

      it('stages of different volumes run concurrently and all succeed', async () => {
        const volumes = await Promise.all(Array.from({ length: 6 }, (_, i) => newVolume(`parallel-${i}`)));
        const codes = await Promise.all(volumes.map((v) => codeOf(stage(v))));
        assert.deepEqual(
          codes.map(codeName),
          volumes.map(() => 'OK'),
        );
        for (const v of volumes) assert.equal((await mountsAt(v.staging)).length, 1, v.staging);
      });
    });
  });
});
