import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { access, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connectCsi, rpc } from '../../src/cli/csi-client.js';
import { DRIVER_BIN, startDriver, type RunningDriver } from '../helpers/driver.js';
import { mountCapability, rejectsWith } from '../helpers/csi.js';
import { callWithDeadline } from '../helpers/deadline.js';
import { eventually } from '../helpers/eventually.js';
import { startFileServer, type FileServer } from '../helpers/file-server.js';
import { startKubeApi, type KubeApiStandIn } from '../helpers/kube-api.js';
import { unmountUnder } from '../helpers/mount-cleanup.js';
import { tarGz } from '../populator/archives.js';
import { readTree } from '../populator/tree.js';

/**
 * CreateVolume and DeleteVolume with a populator source, through the real driver: the volume is
 * answered only once its content is in place, published read-only, and leaves nothing behind when
 * its source cannot be used.
 */

const PVC = { 'csi.storage.k8s.io/pvc/namespace': 'team-a', 'csi.storage.k8s.io/pvc/name': 'site' };
const TOKEN = 'tok-PLANTED-population-5150';
const site = (version: string) =>
  tarGz([
    { type: 'dir', name: 'site/' },
    { type: 'file', name: 'site/index.html', content: `${version}\n` },
    { type: 'file', name: 'README', content: `release ${version}\n` },
  ]);

describe('volumes: CreateVolume and DeleteVolume with a populator source (real driver)', function () {
  this.timeout(60_000);
  let dir: string;
  let root: string;
  let files: FileServer;
  let api: KubeApiStandIn;
  let driver: RunningDriver;
  let plain: RunningDriver | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-population-'));
    root = join(dir, 'root');
    files = await startFileServer();
    files.set('/site.tar.gz', site('v1'));
    files.set('/private.tar.gz', site('private'), { token: TOKEN });
    files.set('/big.tar.gz', tarGz([{ type: 'file', name: 'big.bin', content: Buffer.alloc(64 * 1024, 7) }]));
    api = await startKubeApi();
    api.setSecret('team-a', 'site-token', { token: TOKEN });
    api.setPvc('team-a', 'site');
    driver = await startDriver({
      args: ['--local-root', root, '--populator', '--admin-address', 'off'],
      env: { KUBECONFIG: await api.writeKubeconfig(dir) },
    });
  });

  after(async () => {
    await unmountUnder(dir);
    await driver?.stop();
    await plain?.stop();
    await files?.stop();
    await api?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const create = (name: string, parameters: Record<string, string>, extra: object = {}) =>
    rpc(driver.controller, 'CreateVolume', {
      name,
      volume_capabilities: [mountCapability()],
      parameters: { ...PVC, ...parameters },
      ...extra,
    });
  const httpClass = (path: string, more: Record<string, string> = {}) => ({
    'source.type': 'http',
    'source.http.url': files.url(path),
    syncInterval: '0',
    ...more,
  });
  /** The backend's root apart from the driver's own metadata directory. */
  const volumesOnBackend = async () => (await readdir(root)).filter((n) => n !== '.sharedvolume').sort();
  const syncStates = async () => readdir(join(root, '.sharedvolume', 'sync')).catch(() => []);

  it('answers CreateVolume only once the source is in place, and asks the node for a read-only publish', async () => {
    const { volume } = await create('pvc-fill', httpClass('/site.tar.gz'));
    assert.equal(volume?.volume_id, 'local/pvc-fill');
    assert.equal(volume?.volume_context.readOnly, 'true');
    assert.deepEqual(await readTree(join(root, 'pvc-fill')), {
      README: 'release v1\n',
      'site/': '/',
      'site/index.html': 'v1\n',
    });
    // The sync state is beside the volume, never inside it where pods would see it.
    assert.equal((await syncStates()).length, 1);
    // CSI: the same volume_context on every call that reports the volume.
    const got = await rpc(driver.controller, 'ControllerGetVolume', { volume_id: 'local/pvc-fill' });
    assert.equal(got.volume?.volume_context.readOnly, 'true');
    const listed = await rpc(driver.controller, 'ListVolumes', {});
    const entry = listed.entries.find((e) => e.volume?.volume_id === 'local/pvc-fill');
    assert.equal(entry?.volume?.volume_context.readOnly, 'true');
    const again = await create('pvc-fill', httpClass('/site.tar.gz'));
    assert.equal(again.volume?.volume_id, 'local/pvc-fill', 'a retry returns the same volume');
    assert.equal(files.requests.filter((r) => r.path === '/site.tar.gz').length, 1, 'and fetches nothing');
    await eventually(
      () => api.events.some((e) => e.reason === 'SyncSucceeded'),
      'a SyncSucceeded Event on the PVC',
    );
  });

  it('publishes a populated volume read-only even when the pod asks for read-write; writable classes stay writable', async () => {
    const ro = await create('pvc-ro', httpClass('/site.tar.gz'));
    const rw = await create('pvc-rw', httpClass('/site.tar.gz', { writable: 'true' }));
    assert.equal(rw.volume?.volume_context.readOnly, undefined);
    for (const [volume, writable] of [
      [ro.volume!, false],
      [rw.volume!, true],
    ] as const) {
      const staging = join(dir, 'node', volume.volume_id.replace('/', '-'), 'staging');
      const target = join(dir, 'node', volume.volume_id.replace('/', '-'), 'target');
      await mkdir(staging, { recursive: true });
      const common = {
        volume_id: volume.volume_id,
        staging_target_path: staging,
        volume_capability: mountCapability(),
        volume_context: volume.volume_context,
      };
      await rpc(driver.node, 'NodeStageVolume', common);
      await rpc(driver.node, 'NodePublishVolume', { ...common, target_path: target, readonly: false });
      assert.equal(await readFile(join(target, 'site', 'index.html'), 'utf8'), 'v1\n');
      const write = writeFile(join(target, 'pod-wrote'), 'x');
      if (writable) await write;
      else await assert.rejects(write, /EROFS/);
      await rpc(driver.node, 'NodeUnpublishVolume', { volume_id: volume.volume_id, target_path: target });
      await rpc(driver.node, 'NodeUnstageVolume', {
        volume_id: volume.volume_id,
        staging_target_path: staging,
      });
    }
  });

  it('uses CreateVolume secrets for the first fill, and keeps them out of the volume and the log', async () => {
    await rejectsWith(create('pvc-nosecret', httpClass('/private.tar.gz')), status.PERMISSION_DENIED);
    const { volume } = await create('pvc-secret', httpClass('/private.tar.gz'), {
      secrets: { token: TOKEN },
    });
    assert.equal(await readFile(join(root, 'pvc-secret', 'site', 'index.html'), 'utf8'), 'private\n');
    const tree = await readTree(join(root, volume!.volume_id.split('/')[1]!));
    assert.ok(!JSON.stringify(tree).includes(TOKEN));
    assert.ok(!driver.log().includes(TOKEN));
  });

  it('reads a class secretRef through the Kubernetes API', async () => {
    await create('pvc-secretref', httpClass('/private.tar.gz', { 'source.secretRef.name': 'site-token' }));
    assert.equal(await readFile(join(root, 'pvc-secretref', 'README'), 'utf8'), 'release private\n');
    assert.ok(api.requests.some((r) => r.path === '/api/v1/namespaces/team-a/secrets/site-token'));
  });

  it('a source that cannot be used leaves no volume, record or sync state behind', async () => {
    const before = { volumes: await volumesOnBackend(), states: (await syncStates()).length };
    await rejectsWith(create('pvc-404', httpClass('/missing.tar.gz')), status.NOT_FOUND, /first fill/);
    await rejectsWith(create('pvc-401', httpClass('/private.tar.gz')), status.PERMISSION_DENIED);
    // limits.maxBytes defaults to the requested capacity.
    await rejectsWith(
      create('pvc-toobig', httpClass('/big.tar.gz'), { capacity_range: { required_bytes: 4096 } }),
      status.RESOURCE_EXHAUSTED,
    );
    assert.deepEqual(await volumesOnBackend(), before.volumes);
    assert.equal((await syncStates()).length, before.states);
    const listed = await rpc(driver.controller, 'ListVolumes', {});
    assert.ok(!listed.entries.some((e) => /pvc-(404|401|toobig)/.test(e.volume!.volume_id)));
  });

  it('refuses a wrong key with INVALID_ARGUMENT naming it, before anything is made', async () => {
    const before = await volumesOnBackend();
    await rejectsWith(
      create('pvc-badkey', { ...httpClass('/site.tar.gz'), 'source.http.uri': 'x' }),
      status.INVALID_ARGUMENT,
      /source\.http\.uri/,
    );
    await rejectsWith(
      create('pvc-badwritable', httpClass('/site.tar.gz', { writable: 'yes' })),
      status.INVALID_ARGUMENT,
      /"writable": must be "true" or "false"/,
    );
    await rejectsWith(
      create('pvc-mixed', httpClass('/site.tar.gz'), {
        volume_content_source: { volume: { volume_id: 'local/pvc-fill' } },
      }),
      status.INVALID_ARGUMENT,
      /volume_content_source/,
    );
    assert.deepEqual(await volumesOnBackend(), before);
    assert.equal(files.requests.filter((r) => r.path === '/site.tar.gz').length > 0, true);
  });

  it('a fill that outlives the deadline goes on; retries get ABORTED until the volume is ready', async () => {
    files.set('/slow.tar.gz', site('slow'), { hold: true });
    const request = {
      name: 'pvc-slow',
      volume_capabilities: [mountCapability()],
      parameters: { ...PVC, ...httpClass('/slow.tar.gz') },
    };
    await rejectsWith(callWithDeadline(driver.controller, 'CreateVolume', request, 1500), status.ABORTED);
    await files.held('/slow.tar.gz');
    await rejectsWith(
      callWithDeadline(driver.controller, 'CreateVolume', request, 1500),
      status.ABORTED,
      /in progress/,
    );
    await assert.rejects(
      access(join(root, 'pvc-slow', 'README')),
      'nothing published before the whole archive',
    );
    files.release('/slow.tar.gz');
    const { volume } = await rpc(driver.controller, 'CreateVolume', request);
    assert.equal(volume?.volume_id, 'local/pvc-slow');
    assert.equal(await readFile(join(root, 'pvc-slow', 'site', 'index.html'), 'utf8'), 'slow\n');
  });

  it('reads the source from the PVC annotation when the class allows it; only Secrets of its own namespace', async () => {
    api.setPvc('team-a', 'tenant', {
      'sharedvolume.io/source': `type: http\nhttp:\n  url: ${files.url('/site.tar.gz')}\n`,
    });
    api.setPvc('team-a', 'thief', {
      'sharedvolume.io/source': `type: http\nhttp:\n  url: ${files.url('/private.tar.gz')}\nsecretRef:\n  name: site-token\n  namespace: kube-system\n`,
    });
    const pvc = (name: string) => ({ ...PVC, 'csi.storage.k8s.io/pvc/name': name });
    const tenant = await rpc(driver.controller, 'CreateVolume', {
      name: 'pvc-tenant',
      volume_capabilities: [mountCapability()],
      parameters: { ...pvc('tenant'), allowPVCSource: 'true', syncInterval: '0' },
    });
    assert.equal(tenant.volume?.volume_context.readOnly, 'true');
    assert.equal(await readFile(join(root, 'pvc-tenant', 'README'), 'utf8'), 'release v1\n');
    await rejectsWith(
      rpc(driver.controller, 'CreateVolume', {
        name: 'pvc-thief',
        volume_capabilities: [mountCapability()],
        parameters: { ...pvc('thief'), allowPVCSource: 'true' },
      }),
      status.INVALID_ARGUMENT,
      /only use Secrets in its own namespace/,
    );
    assert.ok(!(await volumesOnBackend()).includes('pvc-thief'));
  });

  it('DeleteVolume stops the sync and removes the sync state with the volume', async () => {
    const states = (await syncStates()).length;
    await rpc(driver.controller, 'DeleteVolume', { volume_id: 'local/pvc-fill' });
    assert.ok(!(await volumesOnBackend()).includes('pvc-fill'));
    assert.equal((await syncStates()).length, states - 1);
  });

  it('a controller without --populator refuses a class with a source, naming the key', async () => {
    plain = await startDriver({ args: ['--local-root', join(dir, 'plain-root')] });
    await rejectsWith(
      rpc(plain.controller, 'CreateVolume', {
        name: 'pvc-nopop',
        volume_capabilities: [mountCapability()],
        parameters: httpClass('/site.tar.gz'),
      }),
      status.FAILED_PRECONDITION,
      /"source\.type".*--populator/,
    );
    assert.deepEqual(
      (await readdir(join(dir, 'plain-root'))).filter((n) => n !== '.sharedvolume'),
      [],
    );
  });
});

describe('volumes: a populated CreateVolume as soon as the driver socket exists', function () {
  this.timeout(30_000);
  let dir: string;
  let files: FileServer;
  let child: ChildProcess | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-population-start-'));
    files = await startFileServer();
    files.set('/site.tar.gz', site('v1'));
  });

  after(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await files?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('finds the populator ready: it starts before the socket is created', async () => {
    const socket = join(dir, 'csi.sock');
    child = spawn(
      DRIVER_BIN,
      [
        '--endpoint',
        `unix://${socket}`,
        '--local-root',
        join(dir, 'root'),
        '--populator',
        '--admin-address',
        'off',
      ],
      { stdio: 'ignore' },
    );
    await eventually(() => existsSync(socket), 'the socket', 15_000);
    const clients = connectCsi(`unix://${socket}`);
    try {
      const { volume } = await rpc(clients.controller, 'CreateVolume', {
        name: 'pvc-early',
        volume_capabilities: [mountCapability()],
        parameters: {
          'source.type': 'http',
          'source.http.url': files.url('/site.tar.gz'),
          syncInterval: '0',
        },
      });
      assert.equal(await readFile(join(dir, 'root', 'pvc-early', 'README'), 'utf8'), 'release v1\n');
      assert.equal(volume?.volume_context.readOnly, 'true');
    } finally {
      clients.close();
    }
  });
});
