import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SyncError } from '../../../src/populator/errors.js';
import {
  parseSourceSpec,
  readSyncStatus,
  syncOnce,
  type SourceCredentials,
} from '../../../src/populator/index.js';
import { classifyGitFailure, resolveSubmoduleUrl } from '../../../src/populator/sources/git.js';
import { startGitHttpServer, type GitHttpServer } from '../../helpers/git-server.js';
import { sshdInstalled, startSshd, type Sshd } from '../../helpers/sshd.js';
import { TestRepo } from '../git-repo.js';
import { inodes, readTree, treeContains } from '../tree.js';

const TOKEN = 'ghp_PLANTEDsecret0123456789abcdef';
const PASSWORD = 'pw-PLANTED-hunter2-xyz';

describe('populator git source', function () {
  this.timeout(60_000);
  let root: string;
  let server: GitHttpServer;
  let repo: TestRepo;
  let dir: string;
  let volume: string;
  let state: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'sv-gitsrv-'));
    server = await startGitHttpServer(root, { alice: PASSWORD, 'x-access-token': TOKEN });
  });
  after(async () => {
    await server?.stop();
    await rm(root, { recursive: true, force: true });
  });
  let repoCount = 0;
  beforeEach(async () => {
    repo = await TestRepo.create(root, `repo${repoCount++}`);
    dir = await mkdtemp(join(tmpdir(), 'sv-git-test-'));
    volume = join(dir, 'volume');
    state = join(dir, 'state');
    server.requests.length = 0;
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const urlOf = (r: TestRepo) => server.url(r.bare.slice(root.length + 1));

  function sync(
    git: Record<string, unknown> = {},
    overrides: Record<string, unknown> = {},
    credentials?: SourceCredentials,
  ) {
    const spec = parseSourceSpec({ type: 'git', git: { url: urlOf(repo), ...git }, ...overrides });
    return syncOnce({
      spec,
      credentials: credentials ?? { username: 'alice', password: PASSWORD },
      volumeDir: volume,
      stateDir: state,
    });
  }

  it('fills the volume over authenticated smart HTTP, with no .git and no secret anywhere', async () => {
    const commit = await repo.commit({ 'README.md': 'hello', 'src/app.js': 'run()' });
    const result = await sync();
    assert.equal(result.revision, commit);
    assert.equal(result.changed, true);
    assert.deepEqual(await readTree(volume), { 'README.md': 'hello', 'src/': '/', 'src/app.js': 'run()' });
    assert.equal(existsSync(join(volume, '.git')), false, 'no .git in the volume');
    assert.ok(
      server.requests.some((r) => r.status === 401),
      'the server demanded credentials',
    );
    assert.ok(server.requests.every((r) => !r.url.includes(PASSWORD) && !r.url.includes('alice')));
    assert.deepEqual(await treeContains(volume, PASSWORD), []);
    assert.deepEqual(await treeContains(state, PASSWORD), [], 'not in the bare repository or its config');
    const status = await readSyncStatus(state);
    assert.equal(status?.revision, commit);
    assert.equal(status?.totalFiles, 2);
  });

  it('keeps the executable bit, symlinks inside the tree and large files', async () => {
    const large = Buffer.alloc(9 * 2 ** 20 + 3, 'L').toString();
    await repo.commit({
      'docs/index.md': 'doc',
      'README.md': { link: 'docs/index.md' },
      'bin/tool': '#!/bin/sh\n',
      big: large,
    });
    await repo.chmod('bin/tool', 0o755);
    await sync({}, {}, { token: TOKEN });
    assert.equal(await readlink(join(volume, 'README.md')), 'docs/index.md');
    assert.equal(await readFile(join(volume, 'README.md'), 'utf8'), 'doc');
    assert.equal((await stat(join(volume, 'bin/tool'))).mode & 0o777, 0o755);
    assert.equal((await stat(join(volume, 'docs/index.md'))).mode & 0o777, 0o644);
    assert.ok(
      (await readFile(join(volume, 'big'), 'utf8')) === large,
      'a blob streamed on its own arrives whole',
    );
  });

  it('publishes a pushed commit on resync and writes nothing when nothing changed', async () => {
    await repo.commit({ 'a.txt': 'one', 'b.txt': 'same', 'gone.txt': 'x' });
    await sync();
    const before = await inodes(volume);

    server.requests.length = 0;
    const idle = await sync();
    assert.equal(idle.changed, false);
    assert.deepEqual(await inodes(volume), before, 'nothing rewritten');
    const posts = server.requests.filter((r) => r.method === 'POST');
    assert.equal(posts.length, 1, 'one ls-refs round trip, no fetch');

    const second = await repo.commit({ 'a.txt': 'two', 'gone.txt': null, 'new/c.txt': 'c' });
    const result = await sync();
    assert.equal(result.revision, second);
    assert.equal(result.files, 2, 'only the changed and the new file were written');
    assert.deepEqual(await readTree(volume), {
      'a.txt': 'two',
      'b.txt': 'same',
      'new/': '/',
      'new/c.txt': 'c',
    });
    assert.equal((await inodes(volume))['b.txt'], before['b.txt']);
  });

  it('follows branches, tags and commit ids', async () => {
    const first = await repo.commit({ v: '1' });
    await repo.tag('v1.0');
    await repo.commit({ v: '2' });
    await repo.commit({ v: 'dev' }, 'dev', 'develop');
    assert.equal((await sync({ ref: 'v1.0' })).revision, first);
    assert.equal(await readFile(join(volume, 'v'), 'utf8'), '1');
    await sync({ ref: 'develop' });
    assert.equal(await readFile(join(volume, 'v'), 'utf8'), 'dev');
    await sync({ ref: first });
    assert.equal(await readFile(join(volume, 'v'), 'utf8'), '1');
    await sync({ ref: 'refs/heads/main' });
    assert.equal(await readFile(join(volume, 'v'), 'utf8'), '2');
  });

  it('reports a bad ref, a missing repository and refused credentials as permanent', async () => {
    await repo.commit({ a: 'a' });
    await assert.rejects(sync({ ref: 'no-such-branch' }), (err: unknown) => {
      return (
        err instanceof SyncError &&
        err.reason === 'bad-ref' &&
        err.permanent &&
        /no-such-branch/.test(err.message)
      );
    });
    await assert.rejects(
      sync({ url: server.url('missing.git') }),
      (err: unknown) => err instanceof SyncError && err.reason === 'not-found' && err.permanent,
    );
    await assert.rejects(
      sync({}, {}, { username: 'alice', password: 'wrong' }),
      (err: unknown) => err instanceof SyncError && err.reason === 'auth' && err.permanent,
    );
    await assert.rejects(
      sync({}, {}, {}),
      (err: unknown) => err instanceof SyncError && err.reason === 'auth' && err.permanent,
    );
    assert.equal((await readSyncStatus(state))?.consecutiveFailures, 4);
  });

  it('refuses a tree with a symlink pointing outside and keeps the last good content', async () => {
    await repo.commit({ 'ok.txt': 'good' });
    await sync();
    await repo.commit({ 'ok.txt': 'newer', escape: { link: '../../../etc/passwd' } });
    await assert.rejects(
      sync(),
      (err: unknown) =>
        err instanceof SyncError &&
        err.reason === 'unsafe' &&
        /symlink "escape" -> "\.\.\/\.\.\/\.\.\/etc\/passwd"/.test(err.message),
    );
    assert.deepEqual(await readTree(volume), { 'ok.txt': 'good' });
  });

  it('publishes whole revisions in symlink mode', async () => {
    await repo.commit({ 'a.txt': '1', 'b.txt': '1' });
    await sync({}, { publish: 'symlink' });
    const first = await readlink(join(volume, 'current'));
    await repo.commit({ 'a.txt': '2' });
    await sync({}, { publish: 'symlink' });
    const second = await readlink(join(volume, 'current'));
    assert.notEqual(first, second);
    assert.deepEqual(await readTree(join(volume, 'current')), { 'a.txt': '2', 'b.txt': '1' });
    assert.deepEqual(await readTree(join(volume, first)), { 'a.txt': '1', 'b.txt': '1' });
    assert.deepEqual((await readdir(volume)).sort(), ['.versions', 'current']);
  });

  it('publishes only the sparse paths', async () => {
    await repo.commit({ 'docs/a.md': 'a', 'docs/deep/b.md': 'b', 'src/x.js': 'x', 'top.txt': 't' });
    await sync({ sparsePaths: ['docs', 'top.txt'] });
    assert.deepEqual(Object.keys(await readTree(volume)).sort(), [
      'docs/',
      'docs/a.md',
      'docs/deep/',
      'docs/deep/b.md',
      'top.txt',
    ]);
  });

  it('publishes submodules, fetched with the same credentials from the same server', async () => {
    const lib = await TestRepo.create(root, `lib${repoCount}`);
    await lib.commit({ 'lib.txt': 'library' });
    await repo.commit({ 'main.txt': 'main' });
    await repo.addSubmodule(`../lib${repoCount}.git`, 'vendor/lib', lib.bare);
    await sync({ submodules: true });
    assert.deepEqual(await readTree(volume), {
      '.gitmodules': await readFile(join(root, `repo${repoCount - 1}.work`, '.gitmodules'), 'utf8'),
      'main.txt': 'main',
      'vendor/': '/',
      'vendor/lib/': '/',
      'vendor/lib/lib.txt': 'library',
    });
    await sync({ submodules: false }, {});
    assert.deepEqual(await readdir(join(volume, 'vendor/lib')), [], 'without submodules: an empty directory');
  });

  it('never puts a secret in the argv of any process it starts', async () => {
    await repo.commit({ a: 'a' });
    const wrapDir = join(dir, 'wrap');
    const log = join(dir, 'argv.log');
    await mkdir(wrapDir);
    for (const tool of ['git', 'ssh']) {
      await writeFile(
        join(wrapDir, tool),
        `#!/bin/sh\nprintf '%s\\n' "$0 $*" >> '${log}'\nexec /usr/bin/${tool} "$@"\n`,
        {
          mode: 0o755,
        },
      );
    }
    const seen: string[] = [];
    const scan = setInterval(() => scanCmdlines(seen), 1);
    const path = process.env.PATH;
    process.env.PATH = `${wrapDir}:${path}`;
    try {
      await sync({}, {}, { username: 'alice', password: PASSWORD });
      await sync({}, {}, { token: TOKEN });
    } finally {
      process.env.PATH = path;
      clearInterval(scan);
    }
    const argv = await readFile(log, 'utf8');
    assert.match(argv, /git .*ls-remote/, 'the wrapper saw the git calls');
    assert.doesNotMatch(argv, new RegExp(`${PASSWORD}|${TOKEN}`));
    assert.ok(seen.length > 0, 'processes were scanned');
    assert.equal(seen.filter((c) => c.includes(PASSWORD) || c.includes(TOKEN)).length, 0);
    assert.deepEqual(await treeContains(state, TOKEN), []);
    assert.deepEqual(
      (await readdir(tmpdir())).filter((n) => n.startsWith('sv-git-') && !n.startsWith('sv-git-test-')),
      [],
      'the private credential directory was removed',
    );
  });

  it('classifies git failures', () => {
    assert.equal(classifyGitFailure('fatal: Authentication failed for ...'), 'auth');
    assert.equal(classifyGitFailure('Host key verification failed.'), 'auth');
    assert.equal(classifyGitFailure("fatal: couldn't find remote ref refs/heads/x"), 'bad-ref');
    assert.equal(classifyGitFailure('fatal: repository https://h/x not found'), 'not-found');
    assert.equal(classifyGitFailure('fatal: unable to access: Could not resolve host: h'), 'network');
    assert.equal(resolveSubmoduleUrl('https://h/org/app.git', '../lib.git'), 'https://h/org/lib.git');
    assert.equal(resolveSubmoduleUrl('git@h:org/app.git', '../lib.git'), 'git@h:org/lib.git');
    assert.equal(resolveSubmoduleUrl('https://h/org/app', './sub'), 'https://h/org/app/sub');
  });

  describe('over SSH', () => {
    let sshd: Sshd | undefined;
    before(async function () {
      if (!sshdInstalled()) this.skip();
      sshd = await startSshd();
    });
    after(() => sshd?.stop());

    const sshUrl = () => `ssh://root@127.0.0.1:${sshd!.port}${repo.bare}`;

    it('fetches with a private key and verifies the host key against known_hosts', async () => {
      const commit = await repo.commit({ 'hello.txt': 'over ssh' });
      const result = await sync(
        { url: sshUrl() },
        {},
        { sshPrivateKey: sshd!.userKey, knownHosts: sshd!.knownHosts },
      );
      assert.equal(result.revision, commit);
      assert.equal(await readFile(join(volume, 'hello.txt'), 'utf8'), 'over ssh');
      assert.deepEqual(await treeContains(state, sshd!.userKey.split('\n')[1]!), [], 'the key is not kept');
      await repo.commit({ 'hello.txt': 'again' });
      await sync({ url: sshUrl() }, {}, { sshPrivateKey: sshd!.userKey, knownHosts: sshd!.knownHosts });
      assert.equal(await readFile(join(volume, 'hello.txt'), 'utf8'), 'again');
    });

    it('refuses a server whose host key does not match known_hosts', async () => {
      await repo.commit({ 'hello.txt': 'x' });
      await assert.rejects(
        sync({ url: sshUrl() }, {}, { sshPrivateKey: sshd!.userKey, knownHosts: sshd!.wrongKnownHosts }),
        (err: unknown) =>
          err instanceof SyncError &&
          err.reason === 'auth' &&
          /Host key verification failed/.test(err.message),
      );
      assert.equal(existsSync(join(volume, 'hello.txt')), false);
    });

    it('has no "accept any host" default: without known_hosts it does not connect', async () => {
      await repo.commit({ 'hello.txt': 'x' });
      await assert.rejects(
        sync({ url: sshUrl() }, {}, { sshPrivateKey: sshd!.userKey }),
        (err: unknown) =>
          err instanceof SyncError && err.reason === 'auth' && /needs known_hosts/.test(err.message),
      );
    });

    it('takes known_hosts from the spec too', async () => {
      await repo.commit({ 'hello.txt': 'spec' });
      await sync({ url: sshUrl(), knownHosts: sshd!.knownHosts }, {}, { sshPrivateKey: sshd!.userKey });
      assert.equal(await readFile(join(volume, 'hello.txt'), 'utf8'), 'spec');
      assert.ok((await lstat(join(volume, 'hello.txt'))).isFile());
    });
  });
});

/**
 * Command lines of every git or ssh process on the machine, appended to `seen`. Synchronous reads:
 * a scan must finish while the short-lived processes still exist.
 */
function scanCmdlines(seen: string[]): void {
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    if (/\b(git|ssh)\b/.test(cmdline) && !cmdline.includes('mocha')) seen.push(cmdline.replace(/\0/g, ' '));
  }
}
