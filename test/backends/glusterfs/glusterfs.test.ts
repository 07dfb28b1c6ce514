import { status, type ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { mkdir, readdir, readFile, stat, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { rpc } from '../../../src/cli/csi-client.js';
import type { NodeGetVolumeStatsResponse__Output } from '../../../src/generated/csi/v1/NodeGetVolumeStatsResponse.js';
import type { Volume__Output } from '../../../src/generated/csi/v1/Volume.js';
import { mountCapability, rejectsWith } from '../../helpers/csi.js';
import { startDriver, type RunningDriver } from '../../helpers/driver.js';
import {
  commandLine,
  fuseClientFor,
  glusterdInstalled,
  killHungFuseClients,
  startGlusterd,
  writeGlusterBackends,
  type RunningGlusterd,
} from '../../helpers/glusterd.js';
import { mountsUnder, unmountUnder } from '../../helpers/mount-cleanup.js';

const MiB = 1024 * 1024;
const QUOTA_VOLUME = 'svquota';
const PLAIN_VOLUME = 'svplain';
/** Instance on the quota-enabled volume. */
const GL = 'gl';
/** Instance on a volume without quota enabled, where every `limit-usage` fails. */
const GL_PLAIN = 'gl-plain';

interface MountLine {
  mountPoint: string;
  fsType: string;
  source: string;
}

/** /proc/self/mountinfo read by the test itself (paths here hold no spaces), so a parser bug cannot hide a mount. */
async function mountsAt(path: string): Promise<MountLine[]> {
  const lines = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter(Boolean);
  return lines
    .map((line) => line.split(' '))
    .map((f) => {
      const sep = f.indexOf('-', 6);
      return { mountPoint: f[4]!, fsType: f[sep + 1]!, source: f[sep + 2]! };
    })
    .filter((m) => m.mountPoint === path);
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const gone = (pid: number) => async () => (await commandLine(pid)) === undefined;

/**
 * Writes `mib` MiB of zeros with dd in a child process and flushes. A child, because a glusterfs client
 * can hang on a crash: the test then kills dd instead of blocking a thread of its own forever.
 */
async function ddZeros(file: string, mib: number) {
  return execa('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${mib}`, 'conv=fsync'], {
    reject: false,
    stdin: 'ignore',
    env: { LC_ALL: 'C' },
    timeout: 60_000,
    killSignal: 'SIGKILL',
  });
}

/** Stops the driver, killing it if it does not exit on SIGTERM within the bound. */
async function stopDriver(driver: RunningDriver | undefined): Promise<number | null | undefined> {
  if (!driver) return undefined;
  const timer = setTimeout(() => driver.process.kill('SIGKILL'), 30_000);
  try {
    return await driver.stop();
  } finally {
    clearTimeout(timer);
  }
}

describe('GlusterFS backend against a real glusterd', function () {
  this.timeout(120_000);
  let gluster: RunningGlusterd;
  let driver: RunningDriver | undefined;
  let backendsFile: string;
  let nodeDir: string;
  let counter = 0;

  async function startTestDriver(name: string): Promise<RunningDriver> {
    const dir = join(gluster.dir, name);
    await mkdir(dir, { recursive: true });
    return startDriver({ args: ['--backends', backendsFile], dir });
  }

  before(async function () {
    this.timeout(300_000);
    if (!glusterdInstalled()) this.skip();
    gluster = await startGlusterd([
      { name: QUOTA_VOLUME, quota: true },
      { name: PLAIN_VOLUME, quota: false },
    ]);
    nodeDir = join(gluster.dir, 'node');
    backendsFile = await writeGlusterBackends(join(gluster.dir, 'backends.yaml'), gluster.server, [
      { name: GL, volume: QUOTA_VOLUME },
      { name: GL_PLAIN, volume: PLAIN_VOLUME },
    ]);
    driver = await startTestDriver('driver');
  });

  afterEach(async function () {
    if (!gluster) return;
    if (this.currentTest?.state === 'failed' && driver) {
      console.error(
        `--- last driver log lines ---\n${driver.log().trim().split('\n').slice(-15).join('\n')}`,
      );
    }
    await killHungFuseClients(nodeDir);
    await unmountUnder(nodeDir);
  });

  after(async function () {
    this.timeout(300_000);
    if (!gluster) return;
    try {
      await stopDriver(driver);
    } finally {
      await gluster.stop();
    }
  });

  const live = () => driver!;

  async function createVolume(
    parameters: Record<string, string> = {},
    capacityBytes = 10 * MiB,
    instance = GL,
  ) {
    const response = await rpc(live().controller, 'CreateVolume', {
      name: `pvc-${++counter}`,
      capacity_range: { required_bytes: String(capacityBytes), limit_bytes: '0' },
      volume_capabilities: [mountCapability()],
      parameters: { backend: instance, ...parameters },
    });
    return response.volume!;
  }

  /** The directory of a volume inside the GlusterFS volume (its id is `<instance>/<path>`). */
  const dirOf = (volume: Volume__Output) => volume.volume_id.slice(volume.volume_id.indexOf('/') + 1);

  async function quotaFor(path: string) {
    return (await gluster.quotaLimits(QUOTA_VOLUME)).find((limit) => limit.path === `/${path}`);
  }

  async function stage(volume: Volume__Output) {
    const staging = join(nodeDir, 'staging', dirOf(volume));
    await rpc(live().node, 'NodeStageVolume', {
      volume_id: volume.volume_id,
      staging_target_path: staging,
      volume_capability: mountCapability(),
      volume_context: volume.volume_context,
    });
    return staging;
  }

  async function publish(volume: Volume__Output) {
    const target = join(nodeDir, 'target', dirOf(volume));
    await rpc(live().node, 'NodePublishVolume', {
      volume_id: volume.volume_id,
      staging_target_path: join(nodeDir, 'staging', dirOf(volume)),
      target_path: target,
      volume_capability: mountCapability(),
      readonly: false,
      volume_context: volume.volume_context,
    });
    return target;
  }

  async function unpublishAndUnstage(volume: Volume__Output) {
    const id = volume.volume_id;
    await rpc(live().node, 'NodeUnpublishVolume', {
      volume_id: id,
      target_path: join(nodeDir, 'target', dirOf(volume)),
    });
    await rpc(live().node, 'NodeUnstageVolume', {
      volume_id: id,
      staging_target_path: join(nodeDir, 'staging', dirOf(volume)),
    });
  }

  /** The driver's own mount of a GlusterFS volume, under its --state-dir. */
  async function controllerMountOf(running: RunningDriver, volume: string): Promise<string | undefined> {
    for (const point of await mountsUnder(join(running.dir, 'state'))) {
      if ((await mountsAt(point))[0]?.source === `${gluster.server}:/${volume}`) return point;
    }
    return undefined;
  }

  /** NodeGetVolumeStats with a gRPC deadline: a wedged mount must not hang the kubelet's call. */
  function volumeStats(volume: Volume__Output, path: string, deadlineMs = 15_000) {
    return new Promise<NodeGetVolumeStatsResponse__Output>((resolve, reject) =>
      live().node.NodeGetVolumeStats(
        { volume_id: volume.volume_id, volume_path: path },
        { deadline: Date.now() + deadlineMs },
        (err: ServiceError | null, res?: NodeGetVolumeStatsResponse__Output) =>
          err ? reject(err) : resolve(res!),
      ),
    );
  }

  it('creates one directory per volume with a hard quota equal to the requested capacity', async () => {
    const volume = await createVolume();
    assert.equal(volume.capacity_bytes, String(10 * MiB));
    assert.ok(
      (await readdir(gluster.brick(QUOTA_VOLUME))).includes(dirOf(volume)),
      'directory missing on the brick',
    );
    const quota = await quotaFor(dirOf(volume));
    assert.equal(quota?.hardLimitBytes, 10 * MiB);
  });

  it('stages by a FUSE subdirectory mount whose size is the quota, and enforces it with EDQUOT', async () => {
    const volume = await createVolume();
    const staging = await stage(volume);
    const target = await publish(volume);

    const [mount] = await mountsAt(staging);
    assert.equal(mount?.fsType, 'fuse.glusterfs');
    assert.equal(mount?.source, `${gluster.server}:/${QUOTA_VOLUME}/${dirOf(volume)}`);
    const fs = await statfs(target);
    const total = fs.blocks * fs.bsize;
    assert.ok(Math.abs(total - 10 * MiB) <= MiB, `statfs total ${total} is not the 10 MiB quota`);

    const stats = await volumeStats(volume, target);
    const bytes = stats.usage.find((u) => u.unit === 'BYTES');
    assert.equal(Number(bytes?.total), total);
    assert.equal(stats.volume_condition?.abnormal, false);

    const dd = await ddZeros(join(target, 'big'), 30);
    assert.ok(!dd.timedOut, 'dd hung: the glusterfs FUSE client stopped answering');
    assert.notEqual(dd.exitCode, 0, 'writing 30 MiB into a 10 MiB volume succeeded');
    assert.match(dd.stderr, /Disk quota exceeded/);
    assert.ok(
      (await stat(join(target, 'big'))).size < 15 * MiB,
      'the quota let far more than 10 MiB through',
    );
    await unpublishAndUnstage(volume);
  });

  it('leaves no FUSE mount and no FUSE client after unpublish and unstage', async () => {
    const volume = await createVolume();
    const staging = await stage(volume);
    const target = await publish(volume);
    const client = await fuseClientFor(staging);
    assert.ok(client, 'no glusterfs FUSE client serves the staging mount');

    await unpublishAndUnstage(volume);
    assert.deepEqual(await mountsAt(target), []);
    assert.deepEqual(await mountsAt(staging), []);
    assert.deepEqual(await mountsUnder(nodeDir), []);
    await waitFor(gone(client), `FUSE client ${client} to exit`);
  });

  it('removes the quota and the directory on DeleteVolume', async () => {
    const volume = await createVolume();
    assert.ok(await quotaFor(dirOf(volume)));
    await rpc(live().controller, 'DeleteVolume', { volume_id: volume.volume_id });
    assert.equal(await quotaFor(dirOf(volume)), undefined, 'quota left behind');
    assert.ok(!(await readdir(gluster.brick(QUOTA_VOLUME))).includes(dirOf(volume)), 'directory left behind');
    const listed = await rpc(live().controller, 'ListVolumes', {});
    assert.ok(!listed.entries.some((e) => e.volume?.volume_id === volume.volume_id));
  });

  it('deletes a volume whose quota is already gone (removed by hand, or by an interrupted delete)', async () => {
    const volume = await createVolume();
    await gluster.cli(['volume', 'quota', QUOTA_VOLUME, 'remove', `/${dirOf(volume)}`]);
    await rpc(live().controller, 'DeleteVolume', { volume_id: volume.volume_id });
    assert.ok(!(await readdir(gluster.brick(QUOTA_VOLUME))).includes(dirOf(volume)), 'directory left behind');
  });

  it('keeps the data under archived-<dir> with onDelete=archive, without the quota', async () => {
    const volume = await createVolume({ onDelete: 'archive' });
    await stage(volume);
    await writeFile(join(await publish(volume), 'keep.txt'), 'kept across delete');
    await unpublishAndUnstage(volume);

    await rpc(live().controller, 'DeleteVolume', { volume_id: volume.volume_id });
    const brick = gluster.brick(QUOTA_VOLUME);
    const archived = `archived-${dirOf(volume)}`;
    assert.equal(await readFile(join(brick, archived, 'keep.txt'), 'utf8'), 'kept across delete');
    assert.ok(!(await readdir(brick)).includes(dirOf(volume)));
    assert.equal(await quotaFor(dirOf(volume)), undefined);
    assert.equal(await quotaFor(archived), undefined);
  });

  it('keeps the directory and its quota with onDelete=retain', async () => {
    const volume = await createVolume({ onDelete: 'retain' });
    await rpc(live().controller, 'DeleteVolume', { volume_id: volume.volume_id });
    assert.ok((await readdir(gluster.brick(QUOTA_VOLUME))).includes(dirOf(volume)));
    assert.equal((await quotaFor(dirOf(volume)))?.hardLimitBytes, 10 * MiB);
  });

  it('sets every quota when CreateVolumes run in parallel (glusterd takes one quota command at a time)', async () => {
    const volumes = await Promise.all([1, 2, 3, 4, 5].map((n) => createVolume({}, n * MiB)));
    for (const [i, volume] of volumes.entries()) {
      assert.equal(
        (await quotaFor(dirOf(volume)))?.hardLimitBytes,
        (i + 1) * MiB,
        `quota of ${volume.volume_id}`,
      );
    }
  });

  it('provisions beyond the size of the GlusterFS volume, since each quota caps its own directory', async () => {
    const brickSize =
      (await statfs(gluster.brick(QUOTA_VOLUME))).blocks * (await statfs(gluster.brick(QUOTA_VOLUME))).bsize;
    const capacity = 2 ** 50;
    assert.ok(capacity > brickSize);
    const volume = await createVolume({}, capacity);
    assert.equal((await quotaFor(dirOf(volume)))?.hardLimitBytes, capacity);
  });

  it('leaves no directory and no record behind when setting the quota fails', async () => {
    const err = await rejectsWith(createVolume({}, 10 * MiB, GL_PLAIN), status.INTERNAL, /quota/i);
    assert.match(err.details, /limit-usage/);
    const brick = gluster.brick(PLAIN_VOLUME);
    assert.deepEqual(
      (await readdir(brick)).filter((e) => !['.glusterfs', '.trashcan', '.sharedvolume'].includes(e)),
      [],
      'volume directory left behind',
    );
    assert.deepEqual(await readdir(join(brick, '.sharedvolume', 'records')), [], 'record left behind');
    assert.deepEqual(await readdir(join(brick, '.sharedvolume', 'names')), [], 'name index left behind');
    const listed = await rpc(live().controller, 'ListVolumes', {});
    assert.ok(!listed.entries.some((e) => e.volume?.volume_id.startsWith(`${GL_PLAIN}/`)));
  });

  it('reports a volume without quota as not ready in Probe', async () => {
    const probe = await rpc(live().identity, 'Probe', {});
    assert.equal(probe.ready?.value, false);
    assert.match(live().log(), new RegExp(`volume ${PLAIN_VOLUME}: quota is not enabled`));
  });

  it('says why a remote gluster CLI (cliRemoteHost) cannot set a quota, and leaves nothing behind', async () => {
    const file = await writeGlusterBackends(join(gluster.dir, 'backends-remote.yaml'), gluster.server, [
      { name: 'gl-remote', volume: QUOTA_VOLUME, cliRemoteHost: '127.0.0.1' },
    ]);
    const dir = join(gluster.dir, 'driver-remote');
    await mkdir(dir);
    const remote = await startDriver({ args: ['--backends', file], dir });
    try {
      const name = `pvc-${++counter}`;
      const request = {
        name,
        capacity_range: { required_bytes: String(MiB), limit_bytes: '0' },
        volume_capabilities: [mountCapability()],
        parameters: {},
      };
      await rejectsWith(
        rpc(remote.controller, 'CreateVolume', request),
        status.INTERNAL,
        /read-only commands from a remote CLI/,
      );
      assert.ok(!(await readdir(gluster.brick(QUOTA_VOLUME))).includes(name), 'directory left behind');
      assert.equal(await quotaFor(name), undefined);
      const listed = await rpc(remote.controller, 'ListVolumes', {});
      assert.ok(
        !listed.entries.some((e) => e.volume?.volume_id === `gl-remote/${name}`),
        'record left behind',
      );
    } finally {
      await stopDriver(remote);
      await unmountUnder(dir);
    }
  });

  it('reports a staging mount whose FUSE client died as abnormal, and repairs it on the next stage and publish', async () => {
    const volume = await createVolume();
    const staging = await stage(volume);
    const target = await publish(volume);
    await writeFile(join(target, 'hello.txt'), 'still here');
    const client = await fuseClientFor(staging);
    assert.ok(client, 'no glusterfs FUSE client serves the staging mount');

    process.kill(client, 'SIGKILL');
    await waitFor(gone(client), `FUSE client ${client} to die`);
    const broken = await volumeStats(volume, target);
    assert.equal(broken.volume_condition?.abnormal, true);
    assert.match(broken.volume_condition?.message ?? '', /not connected/i);

    await stage(volume);
    await publish(volume);
    assert.equal((await mountsAt(staging)).length, 1, 'stale staging mount still stacked');
    assert.equal((await mountsAt(target)).length, 1, 'stale target mount still stacked');
    const replacement = await fuseClientFor(staging);
    assert.ok(replacement && replacement !== client);
    assert.equal(await readFile(join(target, 'hello.txt'), 'utf8'), 'still here');
    assert.equal((await volumeStats(volume, target)).volume_condition?.abnormal, false);
    await unpublishAndUnstage(volume);
  });

  it('remounts its own mount of the volume when that FUSE client died', async () => {
    await createVolume();
    const controllerMount = await controllerMountOf(live(), QUOTA_VOLUME);
    assert.ok(controllerMount, 'the controller did not mount the volume under --state-dir');
    const client = await fuseClientFor(controllerMount);
    assert.ok(client);
    process.kill(client, 'SIGKILL');
    await waitFor(gone(client), `controller FUSE client ${client} to die`);

    // A reused mount is checked every few seconds, so calls until then may fail, as UNAVAILABLE.
    const request = {
      name: `pvc-${++counter}`,
      capacity_range: { required_bytes: String(MiB), limit_bytes: '0' },
      volume_capabilities: [mountCapability()],
      parameters: { backend: GL },
    };
    let created: Volume__Output | undefined;
    await waitFor(async () => {
      try {
        created = (await rpc(live().controller, 'CreateVolume', request)).volume!;
        return true;
      } catch (err) {
        assert.equal(status[(err as ServiceError).code], 'UNAVAILABLE', (err as ServiceError).details);
        return false;
      }
    }, 'CreateVolume to succeed on a remounted volume');
    assert.equal((await quotaFor(dirOf(created!)))?.hardLimitBytes, MiB);
    assert.equal((await mountsAt(controllerMount)).length, 1, 'the dead mount is still stacked');
    const replacement = await fuseClientFor(controllerMount);
    assert.ok(replacement && replacement !== client);
  });

  it('unmounts its controller mount of the volume when it gets SIGTERM', async () => {
    const second = await startTestDriver('driver-sigterm');
    let exitCode: number | null | undefined;
    try {
      await rpc(second.controller, 'CreateVolume', {
        name: `pvc-${++counter}`,
        capacity_range: { required_bytes: String(MiB), limit_bytes: '0' },
        volume_capabilities: [mountCapability()],
        parameters: { backend: GL },
      });
      const controllerMount = await controllerMountOf(second, QUOTA_VOLUME);
      assert.ok(controllerMount, 'the controller did not mount the volume under --state-dir');
      const client = await fuseClientFor(controllerMount);
      assert.ok(client);

      exitCode = await stopDriver(second);
      assert.equal(exitCode, 0);
      assert.deepEqual(await mountsUnder(second.dir), []);
      await waitFor(gone(client), `controller FUSE client ${client} to exit`);
    } finally {
      if (exitCode === undefined) await stopDriver(second);
      await unmountUnder(second.dir);
    }
  });
});
