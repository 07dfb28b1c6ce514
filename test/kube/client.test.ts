import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectKube, KubeApiError, lazyKube, type KubeClient } from '../../src/kube/client.js';
import { withEnv } from '../helpers/env.js';
import { startKubeApi, type KubeApiStandIn } from '../helpers/kube-api.js';

describe('kube/client against the API stand-in', function () {
  this.timeout(30_000);
  let api: KubeApiStandIn;
  let dir: string;
  let restoreEnv: () => void;
  let kube: KubeClient;

  before(async () => {
    api = await startKubeApi();
    dir = await mkdtemp(join(tmpdir(), 'sv-kube-'));
    restoreEnv = withEnv({ KUBECONFIG: await api.writeKubeconfig(dir), KUBERNETES_SERVICE_HOST: undefined });
    kube = await connectKube();
  });
  after(async () => {
    restoreEnv?.();
    await api?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a PVC: uid and annotations, with the kubeconfig token', async () => {
    const uid = api.setPvc('team-a', 'site', { 'sharedvolume.io/source': 'type: http' });
    const pvc = await kube.readPvc('team-a', 'site');
    assert.deepEqual(pvc, {
      namespace: 'team-a',
      name: 'site',
      uid,
      annotations: { 'sharedvolume.io/source': 'type: http' },
    });
    const last = api.requests.at(-1)!;
    assert.equal(last.path, '/api/v1/namespaces/team-a/persistentvolumeclaims/site');
    assert.equal(last.status, 200, 'the stand-in accepted the bearer token from the kubeconfig');
  });

  it('reads a Secret and decodes its data', async () => {
    api.setSecret('team-a', 'token', { token: 'ghp_abc', 'ssh-privatekey': 'line1\nline2\n' });
    const data = await kube.readSecret('team-a', 'token');
    assert.deepEqual(Object.fromEntries(Object.entries(data).map(([k, v]) => [k, v.toString('utf8')])), {
      token: 'ghp_abc',
      'ssh-privatekey': 'line1\nline2\n',
    });
  });

  it('turns 404 and 403 into KubeApiError with the status and the API server reason only', async () => {
    await assert.rejects(kube.readSecret('team-a', 'missing'), (err: KubeApiError) => {
      assert.ok(err instanceof KubeApiError);
      assert.equal(err.status, 404);
      assert.equal(err.message, 'Secret team-a/missing: secrets "missing" not found');
      return true;
    });
    api.setSecret('team-b', 'locked', { token: 'x' });
    api.forbidSecret('team-b', 'locked');
    await assert.rejects(kube.readSecret('team-b', 'locked'), (err: KubeApiError) => {
      assert.equal(err.status, 403);
      assert.match(err.message, /^Secret team-b\/locked: secrets "locked" is forbidden/);
      assert.doesNotMatch(err.message, /Headers|HTTP-Code/);
      return true;
    });
  });

  it('posts an Event about the PVC in its namespace', async () => {
    const before = api.events.length;
    await kube.createPvcEvent(
      { namespace: 'team-a', name: 'site', uid: 'u-1' },
      { type: 'Warning', reason: 'SyncFailed', message: 'auth: credentials refused' },
    );
    assert.equal(api.events.length, before + 1);
    const event = api.events.at(-1) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    assert.equal(event.metadata.namespace, 'team-a');
    assert.match(event.metadata.name, /^site\.[0-9a-f]+$/);
    assert.deepEqual(event.involvedObject, {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      namespace: 'team-a',
      name: 'site',
      uid: 'u-1',
    });
    assert.equal(event.type, 'Warning');
    assert.equal(event.reason, 'SyncFailed');
    assert.equal(event.message, 'auth: credentials refused');
    assert.equal(event.count, 1);
    assert.ok(!Number.isNaN(Date.parse(event.firstTimestamp)), 'timestamps are serialised');
  });

  it('makes no call outside the three it is allowed', () => {
    const allowed = [
      /^GET \/api\/v1\/namespaces\/[^/]+\/persistentvolumeclaims\/[^/]+$/,
      /^GET \/api\/v1\/namespaces\/[^/]+\/secrets\/[^/]+$/,
      /^POST \/api\/v1\/namespaces\/[^/]+\/events$/,
    ];
    const calls = api.requests.map((r) => `${r.method} ${r.path.split('?')[0]}`);
    assert.ok(calls.length >= 5);
    assert.deepEqual(
      calls.filter((c) => !allowed.some((re) => re.test(c))),
      [],
    );
  });

  it('reports an unreachable API server without the library dump', async () => {
    const restore = withEnv({ KUBECONFIG: join(dir, 'unreachable') });
    try {
      await writeFile(
        join(dir, 'unreachable'),
        'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "http://127.0.0.1:1", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n',
      );
      const client = await connectKube();
      await assert.rejects(client.readPvc('a', 'b'), (err: KubeApiError) => {
        assert.equal(err.status, undefined);
        assert.match(err.message, /^PersistentVolumeClaim a\/b: .*ECONNREFUSED/);
        return true;
      });
    } finally {
      restore();
    }
  });

  it('refuses to guess an API server without KUBECONFIG or a service account', async () => {
    const restore = withEnv({ KUBECONFIG: undefined, KUBERNETES_SERVICE_HOST: undefined });
    try {
      await assert.rejects(connectKube(), /no Kubernetes API: set KUBECONFIG or run in a cluster/);
    } finally {
      restore();
    }
  });

  it('lazyKube connects once and retries after a failed connection', async () => {
    let calls = 0;
    const factory = lazyKube(async () => {
      calls++;
      if (calls === 1) throw new Error('first fails');
      return kube;
    });
    await assert.rejects(factory(), /first fails/);
    assert.equal(await factory(), kube);
    assert.equal(await factory(), kube);
    assert.equal(calls, 2);
  });
});
