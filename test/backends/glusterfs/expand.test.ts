import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { rpc } from '../../../src/cli/csi-client.js';
import type { Volume__Output } from '../../../src/generated/csi/v1/Volume.js';
import { mountCapability } from '../../helpers/csi.js';
import { startDriver, type RunningDriver } from '../../helpers/driver.js';
import {
  glusterdInstalled,
  killHungFuseClients,
  startGlusterd,
  writeGlusterBackends,
  type RunningGlusterd,
} from '../../helpers/glusterd.js';
import { unmountUnder } from '../../helpers/mount-cleanup.js';
import { buildTree, describeTree } from '../../helpers/tree.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const VOLUME = 'svexpand';

/** dd of `mib` MiB of zeros with fsync; resolves to its stderr when it failed, undefined when it worked. */
async function ddFails(file: string, mib: number): Promise<string | undefined> {
  try {
    await run('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${mib}`, 'conv=fsync'], {
      env: { LC_ALL: 'C' },
      timeout: 60_000,
      killSignal: 'SIGKILL',
    });
    return undefined;
  } catch (err) {
    return (err as { stderr?: string }).stderr ?? String(err);
  } finally {
    await rm(file, { force: true });
  }
}

describe('GlusterFS: online expansion raises the directory quota; snapshots and clones', function () {
  this.timeout(120_000);
  let gluster: RunningGlusterd | undefined;
  let driver: RunningDriver | undefined;
  let nodeDir: string;

  before(async function () {
    this.timeout(300_000);
    if (!glusterdInstalled()) return this.skip();
    gluster = await startGlusterd([{ name: VOLUME, quota: true }]);
    nodeDir = join(gluster.dir, 'node');
    const backends = await writeGlusterBackends(join(gluster.dir, 'backends.yaml'), gluster.server, [
      { name: 'gl', volume: VOLUME },
    ]);
    const dir = join(gluster.dir, 'driver');
    await mkdir(dir, { recursive: true });
    driver = await startDriver({ args: ['--backends', backends], dir });
  });

  after(async function () {
    this.timeout(300_000);
    if (!gluster) return;
    try {
      await killHungFuseClients(nodeDir);
      await unmountUnder(nodeDir);
      const timer = setTimeout(() => driver?.process.kill('SIGKILL'), 30_000);
      await driver?.stop();
      clearTimeout(timer);
    } finally {
      await gluster.stop();
    }
  });

  const hardLimit = async (volume: Volume__Output) => {
    const path = `/${volume.volume_id.slice(volume.volume_id.indexOf('/') + 1)}`;
    return (await gluster!.quotaLimits(VOLUME)).find((l) => l.path === path)?.hardLimitBytes;
  };

  async function createVolume(name: string, bytes: number, extra: object = {}) {
    const { volume } = await rpc(driver!.controller, 'CreateVolume', {
      name,
      capacity_range: { required_bytes: bytes },
      volume_capabilities: [mountCapability()],
      ...extra,
    });
    return volume!;
  }

  /** Stages and publishes through the real FUSE client; returns the pod's path. */
  async function publish(volume: Volume__Output): Promise<string> {
    const staging = join(nodeDir, 'staging', volume.volume_id.replace(/\//g, '_'));
    const target = join(nodeDir, 'target', volume.volume_id.replace(/\//g, '_'));
    const common = {
      volume_id: volume.volume_id,
      volume_capability: mountCapability(),
      volume_context: volume.volume_context,
    };
    await rpc(driver!.node, 'NodeStageVolume', { ...common, staging_target_path: staging });
    await rpc(driver!.node, 'NodePublishVolume', {
      ...common,
      staging_target_path: staging,
      target_path: target,
    });
    return target;
  }

  const totalBytes = async (volume: Volume__Output, path: string) => {
    const stats = await rpc(driver!.node, 'NodeGetVolumeStats', {
      volume_id: volume.volume_id,
      volume_path: path,
    });
    return Number(stats.usage.find((u) => u.unit === 'BYTES')!.total);
  };

  it('raises the hard quota with ControllerExpandVolume: the write that failed with EDQUOT then succeeds', async () => {
    const volume = await createVolume('gl-expand', 10 * MiB);
    assert.equal(await hardLimit(volume), 10 * MiB);
    const target = await publish(volume);
    assert.ok(Math.abs((await totalBytes(volume, target)) - 10 * MiB) <= MiB);
    assert.match((await ddFails(join(target, 'big'), 30)) ?? 'it worked', /Disk quota exceeded/);

    const expanded = await rpc(driver!.controller, 'ControllerExpandVolume', {
      volume_id: volume.volume_id,
      capacity_range: { required_bytes: 64 * MiB },
    });
    assert.equal(expanded.capacity_bytes, String(64 * MiB));
    assert.equal(expanded.node_expansion_required, false);
    assert.equal(await hardLimit(volume), 64 * MiB);
    assert.ok(
      Math.abs((await totalBytes(volume, target)) - 64 * MiB) <= MiB,
      'the mounted volume shows the new size',
    );
    assert.equal(await ddFails(join(target, 'big'), 30), undefined);
  });

  it('snapshots a volume into an archive on the GlusterFS volume and restores it with its own quota', async () => {
    const volume = await createVolume('gl-snap-source', 32 * MiB);
    const target = await publish(volume);
    await buildTree(join(target, 'tree'), { files: 150, maxFileBytes: 16 * 1024, seed: 5 });
    const before = await describeTree(join(target, 'tree'));

    const { snapshot } = await rpc(driver!.controller, 'CreateSnapshot', {
      name: 'gl-snap',
      source_volume_id: volume.volume_id,
      parameters: {},
    });
    assert.match(snapshot!.snapshot_id, /^gl\/archive\//);
    assert.equal(snapshot!.ready_to_use, true);
    const restored = await createVolume('gl-restored', 48 * MiB, {
      volume_content_source: { snapshot: { snapshot_id: snapshot!.snapshot_id } },
    });
    assert.equal(await hardLimit(restored), 48 * MiB);
    const clone = await createVolume('gl-clone', 32 * MiB, {
      volume_content_source: { volume: { volume_id: volume.volume_id } },
    });
    assert.equal(await hardLimit(clone), 32 * MiB);
    for (const copy of [restored, clone]) {
      assert.deepEqual(await describeTree(join(await publish(copy), 'tree')), before);
    }
  });
});
