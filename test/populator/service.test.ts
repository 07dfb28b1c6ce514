import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { connectKube, lazyKube } from '../../src/kube/client.js';
import { SyncMetrics } from '../../src/metrics/registry.js';
import { SyncError } from '../../src/populator/errors.js';
import { Lease } from '../../src/populator/lease.js';
import { syncStateDir, syncStateRoot, type VolumeRegistration } from '../../src/populator/registration.js';
import { PopulatorService, type PopulatorServiceOptions } from '../../src/populator/service.js';
import { parseSourceSpec, type SourceSpecInput } from '../../src/populator/spec.js';
import { readSyncStatus } from '../../src/populator/state.js';
import { withEnv } from '../helpers/env.js';
import { startFileServer, type FileServer } from '../helpers/file-server.js';
import { startKubeApi, type KubeApiStandIn } from '../helpers/kube-api.js';
import { eventually } from '../helpers/eventually.js';
import { captureLogger } from '../helpers/logger.js';

async function metricValue(
  metric: { get(): Promise<{ values: { labels: object; value: number }[] }> },
  labels: object,
) {
  const values = (await metric.get()).values;
  const match = values.find((v) =>
    Object.entries(labels).every(([k, l]) => (v.labels as Record<string, unknown>)[k] === l),
  );
  return match?.value;
}

describe('populator service', function () {
  this.timeout(20_000);
  let files: FileServer;
  let api: KubeApiStandIn;
  let dir: string;
  let root: string;
  let meta: string;
  let restoreEnv: () => void;
  const services: PopulatorService[] = [];
  let log: ReturnType<typeof captureLogger>;
  let metrics: SyncMetrics;

  before(async () => {
    files = await startFileServer();
    api = await startKubeApi();
  });
  after(async () => {
    await files?.stop();
    await api?.stop();
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-populator-service-'));
    root = join(dir, 'root');
    meta = join(root, '.sharedvolume');
    restoreEnv = withEnv({ KUBECONFIG: await api.writeKubeconfig(dir) });
    log = captureLogger();
    metrics = new SyncMetrics(new Registry());
  });
  afterEach(async function () {
    if (this.currentTest?.state === 'failed') console.log(log.text());
    await Promise.all(services.splice(0).map((s) => s.stop()));
    restoreEnv();
    await rm(dir, { recursive: true, force: true });
  });

  function service(options: Partial<PopulatorServiceOptions> = {}): PopulatorService {
    const s = new PopulatorService({
      logger: log.logger,
      stateRoots: async () => [syncStateRoot(meta)],
      metrics,
      kube: lazyKube(connectKube),
      leaseRetryMs: 50,
      ...options,
    });
    services.push(s);
    return s;
  }

  /** A volume as CreateVolume leaves it: its directory exists (syncs never create one). */
  async function volume(
    name: string,
    source: Partial<SourceSpecInput> & { path?: string },
    extra: Partial<VolumeRegistration> = {},
  ) {
    const id = `local/${name}`;
    const { path, ...rest } = source;
    const spec = parseSourceSpec({
      type: 'http',
      http: { url: files.url(path ?? `/${name}/data.txt`) },
      syncInterval: '1h',
      ...rest,
    });
    await mkdir(join(root, name), { recursive: true });
    return { id, volumeDir: join(root, name), stateDir: syncStateDir(meta, id), spec, ...extra };
  }

  const content = (name: string) => readFile(join(root, name, 'data.txt'), 'utf8');

  it('registers, fills at once, records status, metrics and a SyncSucceeded Event on the PVC', async () => {
    files.set('/fill/data.txt', 'version 1\n');
    const uid = api.setPvc('team-a', 'fill');
    const s = service();
    await s.start();
    const reg = await volume('fill', {}, { pvc: { namespace: 'team-a', name: 'fill' } });
    await s.register(reg);
    assert.ok(existsSync(join(reg.stateDir, 'registration.json')));
    const result = await s.initialFill(reg.id);
    assert.equal(result.changed, true);
    assert.equal(await content('fill'), 'version 1\n');
    const [state] = await s.status(reg.id);
    assert.equal(state?.status?.revision, result.revision);
    assert.ok(state?.status?.lastSuccess);
    assert.equal(state?.syncIntervalSeconds, 3600);
    assert.ok(Date.parse(state!.nextSync!) > Date.now() + 3_500_000, 'next sync after the interval');
    assert.equal(await metricValue(metrics.syncs, { volume: reg.id, result: 'success' }), 1);
    assert.equal(await metricValue(metrics.bytes, { volume: reg.id }), 10);
    assert.equal(await metricValue(metrics.interval, { volume: reg.id }), 3600);
    assert.ok((await metricValue(metrics.lastSuccess, { volume: reg.id }))! > Date.now() / 1000 - 60);
    await eventually(() => api.events.length > 0, 'the Event');
    const event = api.events.at(-1) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    assert.equal(event.reason, 'SyncSucceeded');
    assert.equal(event.type, 'Normal');
    assert.deepEqual(event.involvedObject, {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      namespace: 'team-a',
      name: 'fill',
      uid,
    });
    assert.match(event.message, /^Synced revision sha256:[0-9a-f]{64}: 1 files, 10 bytes written$/);
  });

  it('syncNow syncs at once; asked during a sync, it runs another one right after', async () => {
    files.set('/now/data.txt', 'one\n');
    const s = service();
    await s.start();
    const reg = await volume('now', {});
    await s.register(reg);
    await s.initialFill(reg.id);
    files.set('/now/data.txt', 'two\n', { hold: true });
    assert.equal(await s.syncNow(reg.id), true);
    await files.held('/now/data.txt');
    // The push happened after this sync fetched: a second sync must follow.
    files.set('/now/data.txt', 'three\n');
    assert.equal(await s.syncNow(reg.id), true);
    files.release('/now/data.txt');
    await eventually(async () => (await content('now').catch(() => '')) === 'three\n', 'the rerun');
    assert.equal(await s.syncNow('local/unknown'), false);
  });

  it('reads the Secret at every sync: a rotated token just works', async () => {
    files.set('/secret/data.txt', 'private\n', { token: 'token-1' });
    api.setSecret('team-a', 'files-token', { token: 'token-1' });
    const s = service();
    await s.start();
    const reg = await volume('secret', {}, { secretRef: { namespace: 'team-a', name: 'files-token' } });
    await s.register(reg);
    await s.initialFill(reg.id);
    const reads = () => api.requests.filter((r) => r.path.endsWith('/secrets/files-token')).length;
    assert.equal(reads(), 1);
    files.set('/secret/data.txt', 'rotated\n', { token: 'token-2' });
    api.setSecret('team-a', 'files-token', { token: 'token-2' });
    await s.initialFill(reg.id);
    assert.equal(reads(), 2);
    assert.equal(await content('secret'), 'rotated\n');
    assert.ok(!log.text().includes('token-1') && !log.text().includes('token-2'), 'no token in the logs');
  });

  it('a failed sync: permanent SyncError, status, failure metric, SyncFailed Event; backoff schedules a retry', async () => {
    files.set('/denied/data.txt', 'x', { token: 'right' });
    api.setSecret('team-a', 'wrong', { token: 'wrong-token-value' });
    api.setPvc('team-a', 'denied');
    const s = service();
    await s.start();
    const reg = await volume(
      'denied',
      {},
      {
        secretRef: { namespace: 'team-a', name: 'wrong' },
        pvc: { namespace: 'team-a', name: 'denied' },
      },
    );
    await s.register(reg);
    await assert.rejects(s.initialFill(reg.id), (err: SyncError) => {
      assert.ok(err instanceof SyncError);
      assert.equal(err.reason, 'auth');
      assert.equal(err.permanent, true);
      return true;
    });
    const status = await readSyncStatus(reg.stateDir);
    assert.equal(status?.lastError?.reason, 'auth');
    assert.equal(await metricValue(metrics.syncs, { volume: reg.id, result: 'failure' }), 1);
    await eventually(() => api.events.some((e) => e.reason === 'SyncFailed'), 'the SyncFailed Event');
    const event = api.events.find((e) => e.reason === 'SyncFailed') as { type: string; message: string };
    assert.equal(event.type, 'Warning');
    assert.match(event.message, /^auth: GET .*HTTP 401/);
    const [state] = await s.status(reg.id);
    const retryIn = Date.parse(state!.nextSync!) - Date.now();
    assert.ok(retryIn < 5_000, `the retry is a backoff, not the 1 h interval (${retryIn} ms)`);
    // The fix (a correct Secret) is picked up by that retry on its own.
    api.setSecret('team-a', 'wrong', { token: 'right' });
    await eventually(
      async () => (await readSyncStatus(reg.stateDir))?.lastSuccess !== undefined,
      'the retry',
    );
    assert.equal(await content('denied'), 'x');
  });

  it('a missing Secret is an auth failure recorded in the status', async () => {
    files.set('/nosecret/data.txt', 'x');
    const s = service();
    await s.start();
    const reg = await volume('nosecret', {}, { secretRef: { namespace: 'team-a', name: 'absent' } });
    await s.register(reg);
    await assert.rejects(s.initialFill(reg.id), /Secret team-a\/absent not found/);
    assert.equal((await readSyncStatus(reg.stateDir))?.lastError?.reason, 'auth');
  });

  it('after a restart the schedule is rebuilt from the backend; a volume never filled is filled at once', async () => {
    files.set('/kept/data.txt', 'kept\n');
    files.set('/orphan/data.txt', 'orphan\n');
    const first = service();
    await first.start();
    const kept = await volume('kept', {});
    await first.register(kept);
    const done = await first.initialFill(kept.id);
    // The controller dies between registering a volume and filling it.
    await first.register(await volume('orphan', {}));
    await first.stop();
    assert.equal(existsSync(join(root, 'orphan', 'data.txt')), false);

    const second = service();
    await second.start();
    const states = await second.status();
    assert.deepEqual(states.map((v) => v.volume).sort(), ['local/kept', 'local/orphan']);
    const keptState = states.find((v) => v.volume === 'local/kept')!;
    assert.equal(keptState.status?.revision, done.revision);
    const next = Date.parse(keptState.nextSync!) - Date.parse(keptState.status!.lastSuccess!);
    assert.ok(
      next >= 3_600_000 && next <= 3_960_000,
      `next sync one interval (+ jitter) after the last success: ${next}`,
    );
    await eventually(() => existsSync(join(root, 'orphan', 'data.txt')), 'the orphan fill');
    assert.equal(await content('orphan'), 'orphan\n');
  });

  it('unregister aborts an in-flight sync, keeps the last good content, removes the sync state', async () => {
    files.set('/gone/data.txt', 'good\n');
    const s = service();
    await s.start();
    const reg = await volume('gone', {});
    await s.register(reg);
    await s.initialFill(reg.id);
    files.set('/gone/data.txt', 'never published\n', { hold: true });
    await s.syncNow(reg.id);
    await files.held('/gone/data.txt');
    await s.unregister(reg.id);
    files.release('/gone/data.txt');
    assert.equal(existsSync(reg.stateDir), false);
    assert.equal(await content('gone'), 'good\n');
    assert.deepEqual(await s.status(reg.id), []);
    assert.equal(await s.syncNow(reg.id), false);
    assert.equal(await metricValue(metrics.syncs, { volume: reg.id, result: 'success' }), undefined);
  });

  it("unregister on one replica stops another replica's sync at its next lease renewal", async () => {
    files.set('/shared/data.txt', 'good\n');
    const a = service({ leaseDurationMs: 600, owner: 'replica-a' });
    const b = service({ leaseDurationMs: 600, owner: 'replica-b' });
    await a.start();
    const reg = await volume('shared', {});
    await a.register(reg);
    await a.initialFill(reg.id);
    await b.start();
    files.set('/shared/data.txt', 'never published\n', { hold: true });
    assert.equal(await b.syncNow(reg.id), true);
    await files.held('/shared/data.txt');
    assert.equal(
      (await new Lease(reg.stateDir, { owner: 'x', durationMs: 1 }).current())?.owner,
      'replica-b',
    );
    await a.unregister(reg.id);
    assert.equal(existsSync(reg.stateDir), false, 'a waited for b to let go');
    files.release('/shared/data.txt');
    assert.equal(await content('shared'), 'good\n');
  });

  it('never recreates a volume directory deleted behind its registration', async () => {
    files.set('/deleted/data.txt', 'v1\n');
    const s = service();
    await s.start();
    const reg = await volume('deleted', {});
    await s.register(reg);
    await s.initialFill(reg.id);
    await rm(reg.volumeDir, { recursive: true });
    await assert.rejects(s.initialFill(reg.id), /the volume directory .* does not exist/);
    assert.equal(existsSync(reg.volumeDir), false);
  });

  it('stop() aborts an in-flight sync and releases its lease', async () => {
    files.set('/stop/data.txt', 'v1\n');
    const s = service();
    await s.start();
    const reg = await volume('stop', {});
    await s.register(reg);
    await s.initialFill(reg.id);
    files.set('/stop/data.txt', 'v2\n', { hold: true });
    await s.syncNow(reg.id);
    await files.held('/stop/data.txt');
    const [running] = await s.status(reg.id);
    assert.equal(running?.running?.phase, 'downloading');
    assert.equal(running?.running?.totalBytes, 3);
    await s.stop();
    files.release('/stop/data.txt');
    assert.equal(await content('stop'), 'v1\n');
    const lease = await new Lease(reg.stateDir, { owner: 'x', durationMs: 1 }).current();
    assert.equal(lease?.expiresAt, 0, 'released, so another replica may take it at once');
    assert.equal(
      await metricValue(metrics.syncs, { volume: reg.id, result: 'failure' }),
      undefined,
      'an abort is not a failure',
    );
  });
});
