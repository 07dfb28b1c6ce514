import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pLimit from 'p-limit';
import { parseSourceSpec, readSyncStatus, syncOnce, type SourceSpec } from '../../src/populator/index.js';
import { S3RVER_CREDENTIALS, startS3rver, type S3rverInstance } from '../helpers/s3rver.js';
import { listFiles } from './tree.js';
import { rpc } from '../../src/cli/csi-client.js';
import { mountCapability } from '../helpers/csi.js';
import { startDriver, type RunningDriver } from '../helpers/driver.js';
import { eventually } from '../helpers/eventually.js';
import { startFileServer, type FileServer } from '../helpers/file-server.js';
import { freePort } from '../helpers/ports.js';
import { ok, runSvctl } from '../helpers/svctl.js';
import { tarGz } from './archives.js';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'sync-child.js');
const OBJECTS = 400;
const SIZE = 16 * 1024;

/** The content of object `i` at `version`: a header and a filler, so any cut is detectable. */
function content(version: number, i: number): Buffer {
  const header = `v${version} object ${i}\n`;
  return Buffer.concat([Buffer.from(header), Buffer.alloc(SIZE - header.length, 48 + version)]);
}

/** Which version a file holds, or undefined if it is neither version whole. */
function versionOf(data: Buffer, i: number): number | undefined {
  for (const version of [1, 2]) if (data.equals(content(version, i))) return version;
  return undefined;
}

/**
 * kill -9 of a process in the middle of a sync, then a rerun: the volume never holds a torn file,
 * symlink mode shows one whole revision, and the next sync completes the mirror.
 */
describe('populator crash safety', function () {
  this.timeout(180_000);
  let s3: S3rverInstance;
  let dir: string;
  let bucketCount = 0;

  before(async () => {
    s3 = await startS3rver(['crash-0', 'crash-1', 'crash-2', 'crash-3']);
  });
  after(() => s3?.stop());
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-crash-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  async function seed(bucket: string, version: number): Promise<void> {
    const limit = pLimit(16);
    await Promise.all(
      Array.from({ length: OBJECTS }, (_, i) =>
        limit(() => s3.put(bucket, `data/d${i % 10}/o${i}`, content(version, i))),
      ),
    );
  }

  /** Runs a sync in a child and kills it with SIGKILL once `when` matches a progress line. */
  async function killMidSync(
    spec: SourceSpec,
    volume: string,
    state: string,
    when: (line: string) => boolean,
  ) {
    const child = spawn(process.execPath, [CHILD], { stdio: ['pipe', 'pipe', 'ignore'] });
    child.stdin.end(
      JSON.stringify({ spec, credentials: S3RVER_CREDENTIALS, volumeDir: volume, stateDir: state }),
    );
    const outcome = await new Promise<string>((resolve) => {
      let buffer = '';
      child.stdout.on('data', (chunk: Buffer) => {
        buffer += chunk.toString();
        const lines = buffer.split('\n');
        buffer = lines.pop()!;
        for (const line of lines) {
          if (line.startsWith('done')) resolve('finished');
          else if (when(line) && child.exitCode === null) {
            child.kill('SIGKILL');
            resolve(line);
          }
        }
      });
      child.on('exit', () => resolve('exited'));
    });
    await new Promise((resolve) =>
      child.exitCode !== null || child.signalCode !== null ? resolve(null) : child.on('exit', resolve),
    );
    return outcome;
  }

  async function versionsIn(root: string): Promise<Map<number | undefined, number>> {
    const counts = new Map<number | undefined, number>();
    for (const rel of await listFiles(root)) {
      const i = Number(/o(\d+)$/.exec(rel)![1]);
      const version = versionOf(await readFile(join(root, rel)), i);
      counts.set(version, (counts.get(version) ?? 0) + 1);
    }
    return counts;
  }

  const variants = [
    {
      publish: 'files',
      when: 'while downloading',
      match: (l: string) => /^progress downloading (\d+)/.test(l) && Number(l.split(' ')[2]) >= 100,
    },
    { publish: 'files', when: 'while publishing', match: (l: string) => l.startsWith('progress publishing') },
    {
      publish: 'symlink',
      when: 'while downloading',
      match: (l: string) => /^progress downloading (\d+)/.test(l) && Number(l.split(' ')[2]) >= 100,
    },
    {
      publish: 'symlink',
      when: 'while publishing',
      match: (l: string) => l.startsWith('progress publishing'),
    },
  ] as const;

  for (const variant of variants) {
    it(`${variant.publish} mode, killed ${variant.when}`, async () => {
      const bucket = `crash-${bucketCount++}`;
      const volume = join(dir, 'volume');
      const state = join(dir, 'state');
      const spec = parseSourceSpec({
        type: 's3',
        s3: { bucket, prefix: 'data', endpoint: s3.endpoint },
        publish: variant.publish,
      });
      await seed(bucket, 1);
      await syncOnce({ spec, credentials: S3RVER_CREDENTIALS, volumeDir: volume, stateDir: state });
      await seed(bucket, 2);

      const killedAt = await killMidSync(spec, volume, state, variant.match);
      assert.match(killedAt, /^progress/, 'the child was killed mid-sync');

      const tree =
        variant.publish === 'files' ? volume : join(volume, await readlink(join(volume, 'current')));
      const after = await versionsIn(tree);
      assert.equal(after.get(undefined), undefined, 'no torn or half-written file');
      assert.equal(
        [...after.values()].reduce((a, b) => a + b, 0),
        OBJECTS,
        'no file lost',
      );
      if (variant.publish === 'symlink') assert.equal(after.size, 1, 'one whole revision, not a mix');
      assert.ok((await readSyncStatus(state))?.inProgress, 'the status shows the interrupted sync');

      const rerun = await syncOnce({
        spec,
        credentials: S3RVER_CREDENTIALS,
        volumeDir: volume,
        stateDir: state,
      });
      assert.equal(rerun.changed, true);
      const final = variant.publish === 'files' ? volume : join(volume, 'current');
      assert.deepEqual([...(await versionsIn(final))], [[2, OBJECTS]], 'the next sync completed the mirror');
      const status = await readSyncStatus(state);
      assert.equal(status?.inProgress, undefined);
      assert.equal(status?.lastError, undefined);
      if (variant.publish === 'symlink') assert.equal((await readdir(join(volume, '.versions'))).length, 2);
      else
        assert.deepEqual((await readdir(volume)).sort(), [
          'd0',
          'd1',
          'd2',
          'd3',
          'd4',
          'd5',
          'd6',
          'd7',
          'd8',
          'd9',
        ]);
    });
  }
});

describe('populator crash: kill -9 of the controller mid-sync, through the real driver', function () {
  this.timeout(90_000);
  const FILES = 200;
  const release = (version: number) =>
    tarGz(
      Array.from({ length: FILES }, (_, i) => ({
        type: 'file' as const,
        name: `f${i}.txt`,
        content: content(version, i),
      })),
    );
  let dir: string;
  let root: string;
  let files: FileServer;
  let driver: RunningDriver | undefined;
  let admin: string;
  const volumeDir = () => join(root, 'pvc-crash');

  const start = async () => {
    admin = `127.0.0.1:${await freePort()}`;
    return startDriver({
      args: ['--local-root', root, '--populator', '--admin-address', admin, '--sync-lease', '2s'],
    });
  };

  /** The version every file of the published tree holds; fails on a torn file or a mixed tree. */
  const publishedVersion = async (): Promise<number> => {
    const current = join(volumeDir(), 'current');
    const names = (await readdir(current)).sort();
    assert.equal(names.length, FILES);
    const versions = new Set<number | undefined>();
    for (const name of names) {
      const i = Number(/^f(\d+)\.txt$/.exec(name)![1]);
      versions.add(versionOf(await readFile(join(current, name)), i));
    }
    assert.equal(versions.size, 1, `one whole revision, got ${[...versions].join(', ')}`);
    const [version] = versions;
    assert.ok(version !== undefined, 'every file whole');
    return version;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-ctrl-crash-'));
    root = join(dir, 'root');
    files = await startFileServer();
    files.set('/release.tar.gz', release(1));
    driver = await start();
  });

  after(async () => {
    await driver?.stop();
    await files?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('leaves the old revision whole, and the restarted controller completes the sync', async () => {
    await rpc(driver!.controller, 'CreateVolume', {
      name: 'pvc-crash',
      volume_capabilities: [mountCapability()],
      parameters: {
        'source.type': 'http',
        'source.http.url': files.url('/release.tar.gz'),
        publish: 'symlink',
        syncInterval: '1h',
      },
    });
    assert.equal(await publishedVersion(), 1);

    files.set('/release.tar.gz', release(2), { hold: true });
    ok(await runSvctl(['sync', 'local/pvc-crash'], { SHAREDVOLUME_ADMIN_ADDRESS: admin }));
    await files.held('/release.tar.gz');
    driver!.process.kill('SIGKILL');
    await driver!.stop();
    driver = undefined;
    assert.equal(await publishedVersion(), 1, 'the killed sync changed nothing readers see');
    const killed = await readSyncStatus(await onlyStateDir(root));
    assert.ok(killed?.inProgress, 'the kill came in the middle of a sync');

    files.set('/release.tar.gz', release(2));
    files.release('/release.tar.gz');
    driver = await start();
    // The schedule comes back from the state on the backend: the interrupted sync is due at once.
    await eventually(async () => (await publishedVersion().catch(() => 0)) === 2, 'revision 2', 30_000);
    assert.equal(await publishedVersion(), 2);
    const status = await readSyncStatus(await onlyStateDir(root));
    assert.equal(status?.inProgress, undefined);
    assert.equal(status?.lastError, undefined);
  });
});

async function onlyStateDir(root: string): Promise<string> {
  const syncRoot = join(root, '.sharedvolume', 'sync');
  const names = await readdir(syncRoot);
  assert.equal(names.length, 1);
  return join(syncRoot, names[0]!);
}
