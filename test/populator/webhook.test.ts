import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rpc } from '../../src/cli/csi-client.js';
import { mountCapability } from '../helpers/csi.js';
import {
  normalizeGitUrl,
  pushMovesRef,
  signBody,
  verifySignature,
  volumesForPush,
} from '../../src/populator/webhook.js';
import { startDriver, type RunningDriver } from '../helpers/driver.js';
import { eventually } from '../helpers/eventually.js';
import { startGitHttpServer, type GitHttpServer } from '../helpers/git-server.js';
import { startKubeApi, type KubeApiStandIn } from '../helpers/kube-api.js';
import { freePort } from '../helpers/ports.js';
import { listFiles } from './tree.js';
import { TestRepo } from './git-repo.js';

describe('populator webhook: signatures and matching', () => {
  const secret = Buffer.from('shared-secret');
  const body = Buffer.from('{"ref":"refs/heads/main"}');

  it('accepts exactly the GitHub-style HMAC-SHA256 of the body', () => {
    const good = signBody(secret, body);
    assert.match(good, /^sha256=[0-9a-f]{64}$/);
    assert.equal(verifySignature(secret, body, good), true);
    assert.equal(verifySignature(secret, Buffer.from(`${body} `), good), false, 'another body');
    assert.equal(verifySignature(Buffer.from('other'), body, good), false, 'another secret');
    assert.equal(verifySignature(secret, body, good.slice(0, -1)), false, 'truncated');
    assert.equal(verifySignature(secret, body, good.replace('sha256=', 'sha1=')), false);
    assert.equal(verifySignature(secret, body, undefined), false);
    assert.equal(verifySignature(Buffer.alloc(0), body, signBody('', body)), false, 'never an empty secret');
  });

  it('recognises one repository under its URL forms', () => {
    const forms = [
      'https://GitHub.com/Org/Repo.git',
      'https://github.com/org/repo',
      'http://github.com/org/repo/',
      'git@github.com:org/repo.git',
      'ssh://git@github.com:22/org/repo',
      'git://github.com/org/repo.git',
    ];
    assert.deepEqual(new Set(forms.map(normalizeGitUrl)), new Set(['github.com/org/repo']));
    assert.notEqual(normalizeGitUrl('https://github.com/org/repo2'), 'github.com/org/repo');
  });

  it('syncs only the volumes whose ref the push can have moved', () => {
    assert.equal(pushMovesRef('main', 'refs/heads/main', 'main'), true);
    assert.equal(pushMovesRef('main', 'refs/heads/dev', 'main'), false);
    assert.equal(pushMovesRef('v1.2', 'refs/tags/v1.2', 'main'), true);
    assert.equal(pushMovesRef('refs/heads/dev', 'refs/heads/dev', 'main'), true);
    assert.equal(pushMovesRef('HEAD', 'refs/heads/main', 'main'), true);
    assert.equal(pushMovesRef('HEAD', 'refs/heads/dev', 'main'), false);
    assert.equal(pushMovesRef('0123456789abcdef0123456789abcdef01234567', 'refs/heads/main', 'main'), false);
    const volumes = [
      { id: 'local/a', url: 'https://git.example.com/team/site.git', ref: 'main' },
      { id: 'local/b', url: 'git@git.example.com:team/site', ref: 'HEAD' },
      { id: 'local/c', url: 'https://git.example.com/team/other.git', ref: 'main' },
      { id: 'local/d', url: 'https://git.example.com/team/site.git', ref: 'dev' },
    ];
    const payload = {
      ref: 'refs/heads/main',
      repository: {
        clone_url: 'https://git.example.com/team/site.git',
        ssh_url: 'git@git.example.com:team/site.git',
        default_branch: 'main',
      },
    };
    assert.deepEqual(volumesForPush(volumes, payload), ['local/a', 'local/b']);
  });
});

describe('populator webhook: a push reaches the volume through the real driver', function () {
  this.timeout(90_000);
  const PASSWORD = 'pw-PLANTED-webhook-4711';
  const SECRET = 'webhook-secret-PLANTED';
  let dir: string;
  let root: string;
  let gitRoot: string;
  let git: GitHttpServer;
  let api: KubeApiStandIn;
  let repo: TestRepo;
  let driver: RunningDriver | undefined;
  let hook: string;
  const volumeId = 'local/site';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-webhook-'));
    root = join(dir, 'root');
    gitRoot = join(dir, 'git');
    await mkdir(gitRoot);
    git = await startGitHttpServer(gitRoot, { alice: PASSWORD });
    repo = await TestRepo.create(gitRoot, 'site');
    await repo.commit({ 'index.html': 'v1\n' });
    api = await startKubeApi();
    api.setSecret('team-a', 'site-git', { username: 'alice', password: PASSWORD });
    await writeFile(join(dir, 'webhook-secret'), `${SECRET}\n`, { mode: 0o600 });
    hook = `http://127.0.0.1:${await freePort()}`;
    driver = await startDriver({
      args: [
        '--local-root',
        root,
        '--populator',
        '--admin-address',
        'off',
        '--webhook-address',
        hook.replace('http://', ''),
        '--webhook-secret-file',
        join(dir, 'webhook-secret'),
      ],
      env: { KUBECONFIG: await api.writeKubeconfig(dir) },
    });
    await rpc(driver.controller, 'CreateVolume', {
      name: 'site',
      volume_capabilities: [mountCapability()],
      parameters: {
        'source.type': 'git',
        'source.git.url': git.url('site.git'),
        'source.git.ref': 'main',
        'source.secretRef.name': 'site-git',
        'source.secretRef.namespace': 'team-a',
        syncInterval: '1h',
      },
    });
  });

  after(async () => {
    await driver?.stop();
    await git?.stop();
    await api?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const page = () => readFile(join(root, 'site', 'index.html'), 'utf8').catch(() => '');
  const post = (
    path: string,
    body: string,
    signature: string | undefined,
    headers: Record<string, string> = {},
  ) =>
    fetch(`${hook}${path}`, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json',
        ...(signature ? { 'x-hub-signature-256': signature } : {}),
        ...headers,
      },
    });
  const pushPayload = (ref = 'refs/heads/main') =>
    JSON.stringify({
      ref,
      after: '0'.repeat(40),
      repository: { full_name: 'team/site', clone_url: git.url('site.git'), default_branch: 'main' },
    });

  it('CreateVolume filled the volume, with the Secret read through the API', async () => {
    assert.equal(await page(), 'v1\n');
    assert.ok(
      api.requests.some((r) => r.path === '/api/v1/namespaces/team-a/secrets/site-git' && r.status === 200),
    );
  });

  it('a signed push event makes the new commit appear within seconds (the interval is an hour)', async () => {
    await eventually(async () => (await page()) === 'v1\n', 'the initial fill');
    await repo.commit({ 'index.html': 'v2\n' });
    const body = pushPayload();
    const res = await post('/hooks/git', body, signBody(SECRET, body), { 'x-github-event': 'push' });
    assert.equal(res.status, 202);
    assert.deepEqual(await res.json(), { triggered: [volumeId] });
    await eventually(async () => (await page()) === 'v2\n', 'v2 in the volume', 10_000);
  });

  it('a bad or missing signature is refused with 401 and triggers nothing', async () => {
    await eventually(async () => (await page()) === 'v2\n', 'v2');
    await repo.commit({ 'index.html': 'v3\n' });
    const fetchesBefore = git.requests.length;
    const body = pushPayload();
    for (const signature of [signBody('wrong-secret', body), undefined, 'sha256=']) {
      const res = await post('/hooks/git', body, signature);
      assert.equal(res.status, 401);
    }
    const forged = await post(`/hooks/sync/${encodeURIComponent(volumeId)}`, '', signBody('wrong', ''));
    assert.equal(forged.status, 401);
    // A valid request afterwards proves the sync path works; nothing ran in between.
    assert.equal(git.requests.length, fetchesBefore, 'no fetch from the git server');
    assert.equal(await page(), 'v2\n');
    assert.match(driver!.log(), /webhook refused: bad or missing signature/);
    const res = await post(`/hooks/sync/${encodeURIComponent(volumeId)}`, '', signBody(SECRET, ''));
    assert.equal(res.status, 202);
    await eventually(async () => (await page()) === 'v3\n', 'v3 in the volume', 10_000);
  });

  it('answers 404 for an unknown volume or a push nobody follows, and 200 to a ping', async () => {
    const unknown = await post('/hooks/sync/local%2Fnope', '', signBody(SECRET, ''));
    assert.equal(unknown.status, 404);
    const other = pushPayload('refs/heads/feature');
    assert.equal((await post('/hooks/git', other, signBody(SECRET, other))).status, 404);
    const ping = JSON.stringify({ zen: 'Keep it logically awesome.', hook_id: 1 });
    assert.equal(
      (await post('/hooks/git', ping, signBody(SECRET, ping), { 'x-github-event': 'ping' })).status,
      200,
    );
    assert.equal((await fetch(`${hook}/hooks/git`)).status, 405);
  });

  it('no credential in the driver log or in any file of the volume', async () => {
    const files = await listFiles(join(root, 'site'));
    assert.ok(files.length > 0);
    for (const file of files) {
      const text = await readFile(join(root, 'site', file), 'utf8').catch(() => '');
      assert.ok(!text.includes(PASSWORD) && !text.includes(SECRET), file);
    }
    assert.ok(!driver!.log().includes(PASSWORD));
    assert.ok(!driver!.log().includes(SECRET));
  });
});
