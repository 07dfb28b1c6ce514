import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SyncError } from '../../../src/populator/errors.js';
import {
  parseSourceSpec,
  readSyncStatus,
  syncOnce,
  type SourceCredentials,
} from '../../../src/populator/index.js';
import { tar, tarGz, zip, type ArchiveEntry } from '../archives.js';
import { inodes, readTree, treeContains } from '../tree.js';

interface Served {
  body: Buffer;
  etag?: string;
  lastModified?: string;
  token?: string;
  redirect?: string;
}

interface Seen {
  path: string;
  headers: IncomingHttpHeaders;
  status: number;
  bodyBytes: number;
}

/** Serves archives with ETag / Last-Modified and answers conditional GETs; records every request. */
async function startArchiveServer(): Promise<{
  base: string;
  routes: Map<string, Served>;
  seen: Seen[];
  stop(): Promise<void>;
}> {
  const routes = new Map<string, Served>();
  const seen: Seen[] = [];
  const server: Server = createServer((req, res) => {
    const route = routes.get(req.url ?? '');
    const record: Seen = { path: req.url ?? '', headers: req.headers, status: 0, bodyBytes: 0 };
    seen.push(record);
    const reply = (status: number, headers: Record<string, string> = {}, body?: Buffer) => {
      record.status = status;
      record.bodyBytes = body?.length ?? 0;
      res.writeHead(status, headers).end(body);
    };
    if (!route) return reply(404);
    if (route.redirect) return reply(302, { location: route.redirect });
    if (route.token && req.headers.authorization !== `Bearer ${route.token}`) return reply(401);
    if (route.etag && req.headers['if-none-match'] === route.etag) return reply(304, { etag: route.etag });
    if (!route.etag && route.lastModified && req.headers['if-modified-since'] === route.lastModified) {
      return reply(304);
    }
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (route.etag) headers.etag = route.etag;
    if (route.lastModified) headers['last-modified'] = route.lastModified;
    reply(200, headers, route.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    routes,
    seen,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const etagOf = (body: Buffer) => `"${createHash('md5').update(body).digest('hex')}"`;

describe('populator http source', function () {
  this.timeout(30_000);
  let server: Awaited<ReturnType<typeof startArchiveServer>>;
  let dir: string;
  let volume: string;
  let state: string;

  before(async () => {
    server = await startArchiveServer();
  });
  after(() => server.stop());
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-http-'));
    volume = join(dir, 'volume');
    state = join(dir, 'state');
    server.routes.clear();
    server.seen.length = 0;
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  function serve(path: string, body: Buffer, extra: Partial<Served> = {}): void {
    server.routes.set(path, { body, etag: etagOf(body), ...extra });
  }

  function sync(path: string, overrides: Record<string, unknown> = {}, credentials?: SourceCredentials) {
    const spec = parseSourceSpec({ type: 'http', http: { url: `${server.base}${path}` }, ...overrides });
    return syncOnce({ spec, credentials, volumeDir: volume, stateDir: state });
  }

  const release = (version: string): ArchiveEntry[] => [
    { type: 'dir', name: './' },
    { type: 'file', name: './README', content: `release ${version}` },
    { type: 'file', name: './bin/run', content: '#!/bin/sh\necho hi\n', mode: 0o755 },
    { type: 'symlink', name: './docs', target: 'README' },
    { type: 'file', name: `./only-in-${version}`, content: version },
  ];

  it('unpacks a tar.gz, then answers a resync with one conditional GET and no body', async () => {
    serve('/app.tgz', tarGz(release('1')));
    const first = await sync('/app.tgz');
    assert.equal(first.changed, true);
    assert.match(first.revision, /^sha256:[0-9a-f]{64}$/);
    assert.deepEqual(await readTree(volume), {
      README: 'release 1',
      'bin/': '/',
      'bin/run': '#!/bin/sh\necho hi\n',
      docs: '-> README',
      'only-in-1': '1',
    });
    assert.equal((await stat(join(volume, 'bin/run'))).mode & 0o777, 0o755);
    const before = await inodes(volume);

    const second = await sync('/app.tgz');
    assert.equal(second.changed, false);
    assert.equal(second.bytes, 0);
    const last = server.seen[server.seen.length - 1]!;
    assert.equal(last.headers['if-none-match'], server.routes.get('/app.tgz')!.etag);
    assert.equal(last.status, 304);
    assert.equal(last.bodyBytes, 0, 'the server sent no body');
    assert.deepEqual(await inodes(volume), before, 'nothing was rewritten');
    assert.deepEqual(await readdir(volume).then((e) => e.sort()), ['README', 'bin', 'docs', 'only-in-1']);
  });

  it('uses Last-Modified when the server gives no ETag', async () => {
    server.routes.set('/lm.tar', { body: tar(release('1')), lastModified: 'Wed, 01 May 2024 10:00:00 GMT' });
    await sync('/lm.tar');
    assert.equal((await sync('/lm.tar')).changed, false);
    assert.equal(server.seen[1]!.headers['if-modified-since'], 'Wed, 01 May 2024 10:00:00 GMT');
    assert.equal(server.seen[1]!.status, 304);
  });

  it('publishes a new archive and mirrors its removals', async () => {
    serve('/app.tgz', tarGz(release('1')));
    await sync('/app.tgz');
    serve('/app.tgz', tarGz(release('2')));
    const result = await sync('/app.tgz');
    assert.equal(result.changed, true);
    const tree = await readTree(volume);
    assert.equal(tree.README, 'release 2');
    assert.equal(tree['only-in-2'], '2');
    assert.equal(tree['only-in-1'], undefined, 'mirror removed the file the new archive dropped');
  });

  it('does not unpack again when a 200 carries the same content', async () => {
    const body = tar(release('1'));
    server.routes.set('/noetag.tar', { body });
    await sync('/noetag.tar');
    const before = await inodes(volume);
    const again = await sync('/noetag.tar');
    assert.equal(again.changed, false);
    assert.deepEqual(await inodes(volume), before);
  });

  it('unpacks zip archives with modes and symlinks', async () => {
    serve(
      '/app.zip',
      zip([
        { type: 'dir', name: 'lib' },
        { type: 'file', name: 'lib/tool', content: 'x', mode: 0o755 },
        { type: 'file', name: 'lib/data.txt', content: 'd'.repeat(10_000) },
        { type: 'symlink', name: 'tool', target: 'lib/tool' },
      ]),
    );
    await sync('/app.zip', { publish: 'symlink' });
    const tree = await readTree(join(volume, 'current'));
    assert.deepEqual(Object.keys(tree).sort(), ['lib/', 'lib/data.txt', 'lib/tool', 'tool']);
    assert.equal(tree.tool, '-> lib/tool');
    assert.equal(tree['lib/data.txt'], 'd'.repeat(10_000));
    assert.equal((await stat(join(volume, 'current/lib/tool'))).mode & 0o777, 0o755);
  });

  it('publishes a plain file under the last segment of the URL', async () => {
    serve('/config/settings.json', Buffer.from('{"a":1}'));
    await sync('/config/settings.json');
    assert.deepEqual(await readTree(volume), { 'settings.json': '{"a":1}' });
  });

  describe('hostile archives are refused and the last good content stays', () => {
    const cases: { name: string; body: () => Buffer; reason: string; message: RegExp; limits?: object }[] = [
      {
        name: 'zip-slip',
        body: () =>
          zip([
            { type: 'file', name: 'ok', content: 'x' },
            { type: 'file', name: '../evil', content: 'pwned' },
          ]),
        reason: 'unsafe',
        message: /zip archive refused: .*invalid relative path: \.\.\/evil/,
      },
      {
        name: 'tar-slip',
        body: () =>
          tarGz([
            { type: 'file', name: 'ok', content: 'x' },
            { type: 'file', name: 'a/../../evil', content: 'p' },
          ]),
        reason: 'unsafe',
        message: /entry "a\/\.\.\/\.\.\/evil" refused: path contains "\.\."/,
      },
      {
        name: 'absolute path',
        body: () => tar([{ type: 'file', name: '/tmp/evil', content: 'p' }]),
        reason: 'unsafe',
        message: /entry "\/tmp\/evil" refused: absolute path/,
      },
      {
        name: 'symlink pointing out',
        body: () => tar([{ type: 'symlink', name: 'etc', target: '../../../../etc' }]),
        reason: 'unsafe',
        message: /symlink "etc" -> "\.\.\/\.\.\/\.\.\/\.\.\/etc" refused: it points outside the volume/,
      },
      {
        name: 'file written through a symlink of the same archive',
        body: () =>
          tar([
            { type: 'symlink', name: 'out', target: '/tmp' },
            { type: 'file', name: 'out/evil', content: 'p' },
          ]),
        reason: 'invalid',
        message: /entries "out" and "out\/evil" conflict/,
      },
      {
        name: 'zip symlink pointing out',
        body: () => zip([{ type: 'symlink', name: 'passwd', target: '/etc/passwd' }]),
        reason: 'unsafe',
        message: /symlink "passwd" -> "\/etc\/passwd" refused/,
      },
      {
        name: 'hard link to a file outside',
        body: () => tar([{ type: 'hardlink', name: 'passwd', target: '/etc/passwd' }]),
        reason: 'unsafe',
        message: /hard link target "\/etc\/passwd" refused: absolute path/,
      },
      {
        name: 'zip bomb beyond limits.maxBytes',
        body: () => zip([{ type: 'file', name: 'zeros', content: Buffer.alloc(20 * 2 ** 20) }]),
        reason: 'limit',
        message: /more than 1048576 bytes \(limits\.maxBytes\); nothing was published/,
        limits: { maxBytes: '1Mi' },
      },
      {
        name: 'tar bomb beyond limits.maxBytes',
        body: () => tar([{ type: 'file', name: 'zeros', content: Buffer.alloc(3 * 2 ** 20) }]),
        reason: 'limit',
        message: /limits\.maxBytes/,
        limits: { maxBytes: '1Mi' },
      },
      {
        name: 'too many entries',
        body: () =>
          tarGz(
            Array.from({ length: 50 }, (_, i) => ({ type: 'file' as const, name: `f${i}`, content: '' })),
          ),
        reason: 'limit',
        message: /more than 20 entries \(limits\.maxFiles\)/,
        limits: { maxFiles: '20' },
      },
    ];

    for (const c of cases) {
      it(c.name, async () => {
        serve('/app.tgz', tarGz(release('1')));
        await sync('/app.tgz', c.limits ? { limits: c.limits } : {});
        const good = await readTree(volume);
        serve('/app.tgz', c.body());
        await assert.rejects(
          sync('/app.tgz', c.limits ? { limits: c.limits } : {}),
          (err: unknown) =>
            err instanceof SyncError &&
            err.reason === c.reason &&
            err.permanent &&
            c.message.test(err.message),
        );
        assert.deepEqual(await readTree(volume), good, 'the last good content is intact');
        assert.deepEqual(
          await readdir(dir).then((e) => e.sort()),
          ['state', 'volume'],
          'nothing written beside',
        );
        const status = await readSyncStatus(state);
        assert.equal(status?.lastError?.reason, c.reason);
        assert.equal(status?.lastError?.permanent, true);
        assert.equal(status?.inProgress, undefined);
      });
    }
  });

  it('sends a token as a header only, never to another origin, and keeps it out of every file', async () => {
    const token = 'tok-PLANTED-0123456789';
    serve('/private.tgz', tarGz(release('1')), { token });
    await assert.rejects(sync('/private.tgz'), (err: unknown) => (err as SyncError).reason === 'auth');
    await assert.rejects(
      sync('/private.tgz', {}, { token: 'wrong-token' }),
      (err: unknown) => err instanceof SyncError && err.reason === 'auth' && err.permanent,
    );
    await sync('/private.tgz', {}, { token });
    assert.equal((await readTree(volume)).README, 'release 1');
    assert.ok(
      server.seen.every((s) => !s.path.includes(token)),
      'never in a URL',
    );
    assert.deepEqual(await treeContains(volume, token), []);
    assert.deepEqual(await treeContains(state, token), []);

    const other = await startArchiveServer();
    try {
      other.routes.set('/elsewhere.tgz', { body: tarGz(release('2')) });
      server.routes.set('/moved.tgz', { body: Buffer.alloc(0), redirect: `${other.base}/elsewhere.tgz` });
      await sync('/moved.tgz', {}, { token });
      assert.equal(other.seen.length, 1);
      assert.equal(other.seen[0]!.headers.authorization, undefined, 'the token did not follow the redirect');
      assert.equal((await readTree(volume)).README, 'release 2');
    } finally {
      await other.stop();
    }
  });

  it('gives up at syncTimeout, or when the caller aborts, without touching the volume', async () => {
    serve('/app.tgz', tarGz(release('1')));
    await sync('/app.tgz');
    const good = await readTree(volume);
    const hanging = createServer(() => undefined);
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/app.tgz`;
    try {
      const spec = parseSourceSpec({ type: 'http', http: { url }, syncTimeout: '1s' });
      await assert.rejects(
        syncOnce({ spec, volumeDir: volume, stateDir: state }),
        (err: unknown) => err instanceof SyncError && err.reason === 'timeout' && !err.permanent,
      );
      const controller = new AbortController();
      const pending = syncOnce({
        spec: { ...spec, syncTimeout: 60_000 },
        volumeDir: volume,
        stateDir: state,
        signal: controller.signal,
      });
      setImmediate(() => controller.abort());
      await assert.rejects(pending, (err: unknown) => err instanceof SyncError && err.reason === 'aborted');
    } finally {
      hanging.closeAllConnections();
      await new Promise((resolve) => hanging.close(resolve));
    }
    assert.deepEqual(await readTree(volume), good);
    assert.equal((await readSyncStatus(state))?.lastError?.reason, 'aborted');
  });

  it('reports a missing archive as a permanent not-found', async () => {
    await assert.rejects(
      sync('/nope.tgz'),
      (err: unknown) => err instanceof SyncError && err.reason === 'not-found' && err.permanent,
    );
    assert.equal((await readSyncStatus(state))?.consecutiveFailures, 1);
    await readFile(join(state, 'status.json'));
  });
});
