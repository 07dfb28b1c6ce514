import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lstat, mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pLimit from 'p-limit';
import { SyncError } from '../../../src/populator/errors.js';
import {
  parseSourceSpec,
  readSyncStatus,
  syncOnce,
  type SourceCredentials,
} from '../../../src/populator/index.js';
import {
  S3RVER_CREDENTIALS,
  startCountingProxy,
  startS3rver,
  type CountingProxy,
  type S3rverInstance,
} from '../../helpers/s3rver.js';
import { inodes, listFiles, readTree, treeContains } from '../tree.js';

describe('populator s3 source', function () {
  this.timeout(120_000);
  let s3: S3rverInstance;
  let proxy: CountingProxy;
  let dir: string;
  let volume: string;
  let state: string;
  let bucketCount = 0;
  let bucket: string;

  before(async () => {
    s3 = await startS3rver(Array.from({ length: 20 }, (_, i) => `bucket-${i}`));
    proxy = await startCountingProxy(s3.endpoint);
  });
  after(async () => {
    await proxy?.stop();
    await s3?.stop();
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-s3-'));
    volume = join(dir, 'volume');
    state = join(dir, 'state');
    bucket = `bucket-${bucketCount++}`;
    proxy.requests.length = 0;
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  function sync(
    s3Keys: Record<string, unknown> = {},
    overrides: Record<string, unknown> = {},
    credentials?: SourceCredentials,
  ) {
    const spec = parseSourceSpec({
      type: 's3',
      s3: { bucket, prefix: 'data/', endpoint: proxy.endpoint, ...s3Keys },
      ...overrides,
    });
    return syncOnce({
      spec,
      credentials: credentials ?? S3RVER_CREDENTIALS,
      volumeDir: volume,
      stateDir: state,
    });
  }

  const put = (key: string, body: string | Buffer) => s3.put(bucket, key, body);

  it('mirrors a prefix byte for byte, small and large objects', async () => {
    const large = randomBytes(3 * 2 ** 20 + 17);
    const small = randomBytes(5000);
    await put('data/a.txt', 'alpha');
    await put('data/dir/b.bin', small);
    await put('data/dir/sub/large.bin', large);
    await put('data/dir/with space+plus.txt', 'odd name');
    await put('outside/ignored.txt', 'not under the prefix');
    const result = await sync();
    assert.equal(result.changed, true);
    assert.equal(result.files, 4);
    assert.equal(result.totalBytes, 5 + small.length + large.length + 8);
    assert.deepEqual(await listFiles(volume), [
      'a.txt',
      'dir/b.bin',
      'dir/sub/large.bin',
      'dir/with space+plus.txt',
    ]);
    assert.ok((await readFile(join(volume, 'dir/b.bin'))).equals(small));
    assert.ok(
      (await readFile(join(volume, 'dir/sub/large.bin'))).equals(large),
      'the streamed body is intact',
    );
    assert.equal(await readFile(join(volume, 'dir/with space+plus.txt'), 'utf8'), 'odd name');
    assert.ok(
      proxy.requests.every((r) => r.authorization),
      'every request was signed',
    );
  });

  it('resyncs with one listing and no GET or HEAD when nothing changed', async () => {
    await put('data/a', 'a');
    await put('data/b', 'b');
    await sync();
    const before = await inodes(volume);
    proxy.requests.length = 0;
    const again = await sync();
    assert.equal(again.changed, false);
    assert.equal(again.bytes, 0);
    assert.deepEqual(proxy.objectRequests(), [], 'no request for any single object');
    assert.equal(proxy.listRequests().length, 1);
    assert.deepEqual(await inodes(volume), before, 'nothing rewritten');
    assert.equal((await readSyncStatus(state))?.totalFiles, 2);
  });

  it('downloads only changed and new objects and deletes removed ones (mirror)', async () => {
    await put('data/same', 'same');
    await put('data/changes', 'v1');
    await put('data/goes', 'bye');
    await sync();
    const before = await inodes(volume);
    await put('data/changes', 'v2');
    await put('data/new', 'new');
    await s3.remove(bucket, 'data/goes');
    proxy.requests.length = 0;
    const result = await sync();
    assert.equal(result.changed, true);
    assert.deepEqual(
      proxy
        .objectRequests()
        .map((r) => decodeURIComponent(r.url))
        .sort(),
      [`/${bucket}/data/changes`, `/${bucket}/data/new`],
    );
    assert.deepEqual(await readTree(volume), { changes: 'v2', new: 'new', same: 'same' });
    assert.equal((await inodes(volume)).same, before.same);
  });

  it('additive mode keeps objects deleted from the source', async () => {
    await put('data/a', 'a');
    await put('data/b', 'b');
    await sync({}, { syncMode: 'additive' });
    await s3.remove(bucket, 'data/a');
    assert.equal(
      (await sync({}, { syncMode: 'additive' })).changed,
      false,
      'a deletion alone changes nothing',
    );
    await put('data/c', 'c');
    await sync({}, { syncMode: 'additive' });
    assert.deepEqual(await readTree(volume), { a: 'a', b: 'b', c: 'c' });
  });

  it('lists more than 1,000 keys', async () => {
    const limit = pLimit(16);
    await Promise.all(
      Array.from({ length: 1100 }, (_, i) =>
        limit(() => put(`data/k/${String(i).padStart(4, '0')}`, `${i}`)),
      ),
    );
    const result = await sync();
    assert.equal(result.totalFiles, 1100);
    const files = await listFiles(volume);
    assert.equal(files.length, 1100);
    assert.equal(await readFile(join(volume, 'k/1099'), 'utf8'), '1099');
    proxy.requests.length = 0;
    assert.equal((await sync()).changed, false);
    assert.equal(proxy.listRequests().length, 2, 'two pages');
    assert.deepEqual(proxy.objectRequests(), []);
  });

  it('publishes whole versions in symlink mode, sharing unchanged objects', async () => {
    await put('data/keep', 'k');
    await put('data/change', '1');
    await sync({}, { publish: 'symlink' });
    const first = await readlink(join(volume, 'current'));
    await put('data/change', '2');
    await sync({}, { publish: 'symlink' });
    const second = await readlink(join(volume, 'current'));
    assert.notEqual(first, second);
    assert.deepEqual(await readTree(join(volume, second)), { change: '2', keep: 'k' });
    assert.deepEqual(
      await readTree(join(volume, first)),
      { change: '1', keep: 'k' },
      'the previous version intact',
    );
    assert.equal(
      (await lstat(join(volume, second, 'keep'))).ino,
      (await lstat(join(volume, first, 'keep'))).ino,
    );
  });

  it('signs a session token, and keeps every credential out of the volume and the state', async () => {
    await put('data/a', 'a');
    const credentials = { ...S3RVER_CREDENTIALS, sessionToken: 'SESSION-PLANTED-TOKEN-42' };
    await sync({}, {}, credentials);
    for (const secret of [credentials.secretAccessKey, credentials.sessionToken]) {
      assert.deepEqual(await treeContains(volume, secret), []);
    }
    assert.deepEqual(await treeContains(state, credentials.sessionToken), []);
  });

  it('sends anonymous requests without credentials (never the driver’s own identity)', async () => {
    await put('data/public', 'p');
    await sync({}, {}, {});
    assert.equal(await readFile(join(volume, 'public'), 'utf8'), 'p');
    assert.ok(proxy.requests.length > 0);
    assert.ok(
      proxy.requests.every((r) => !r.authorization),
      'no Authorization header at all',
    );
  });

  it('reports unknown keys as auth and a missing bucket as not-found, both permanent', async () => {
    await put('data/a', 'a');
    // s3rver checks the access key id only (it does not verify V4 signatures: see s3-client.test.ts).
    await assert.rejects(
      sync({}, {}, { accessKeyId: 'NOT-A-KEY', secretAccessKey: 'wrong-secret' }),
      (err: unknown) => err instanceof SyncError && err.reason === 'auth' && err.permanent,
    );
    await assert.rejects(
      sync({ bucket: 'no-such-bucket' }),
      (err: unknown) => err instanceof SyncError && err.reason === 'not-found' && err.permanent,
    );
    const status = await readSyncStatus(state);
    assert.equal(status?.lastError?.reason, 'not-found');
    assert.doesNotMatch(status!.lastError!.message, /wrong-secret/);
  });

  it('stops before downloading when the listing exceeds the limits', async () => {
    await put('data/a', 'aaaa');
    await put('data/b', 'bbbb');
    await assert.rejects(
      sync({}, { limits: { maxBytes: '6' } }),
      /holds more than 6 bytes \(limits\.maxBytes\)/,
    );
    await assert.rejects(sync({}, { limits: { maxFiles: '1' } }), /more than 1 objects \(limits\.maxFiles\)/);
    assert.deepEqual(proxy.objectRequests(), []);
  });
});
