import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SyncError } from '../../src/populator/errors.js';
import { Publication, type PublicationOptions } from '../../src/populator/publish.js';
import { inodes, readTree } from './tree.js';

const READER = join(dirname(fileURLToPath(import.meta.url)), 'reader-child.js');

describe('populator publisher', () => {
  let dir: string;
  let volume: string;
  const options = (overrides: Partial<PublicationOptions> = {}): PublicationOptions => ({
    volumeDir: volume,
    publish: 'files',
    syncMode: 'mirror',
    limits: { maxFiles: 1000 },
    stagingDir: join(dir, 'staging'),
    ...overrides,
  });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-publish-'));
    volume = join(dir, 'volume');
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  async function publish(
    files: Record<string, string>,
    overrides: Partial<PublicationOptions> = {},
    links: Record<string, string> = {},
  ) {
    const pub = await Publication.open(options(overrides), overrides.syncMode === 'additive');
    for (const [name, content] of Object.entries(files)) await pub.writeFile(name, Buffer.from(content));
    for (const [name, target] of Object.entries(links)) pub.addSymlink(name, target);
    return pub.commit();
  }

  describe('files mode', () => {
    it('publishes a tree and replaces each changed file by rename (new inode)', async () => {
      const first = await publish({ 'a.txt': 'A1', 'd/b.txt': 'B1', 'd/e/c.txt': 'C1' });
      assert.deepEqual(first, { files: 3, bytes: 6, totalFiles: 3, totalBytes: 6 });
      assert.deepEqual(await readTree(volume), {
        'a.txt': 'A1',
        'd/': '/',
        'd/b.txt': 'B1',
        'd/e/': '/',
        'd/e/c.txt': 'C1',
      });
      const before = await inodes(volume);

      const pub = await Publication.open(options(), true);
      await pub.writeFile('a.txt', Buffer.from('A2'));
      pub.keep('d/b.txt', 'file', 2);
      pub.keep('d/e/c.txt', 'file', 2);
      assert.equal(await readFile(join(volume, 'a.txt'), 'utf8'), 'A1', 'nothing visible before commit');
      await pub.commit();

      const after = await inodes(volume);
      assert.equal(await readFile(join(volume, 'a.txt'), 'utf8'), 'A2');
      assert.notEqual(after['a.txt'], before['a.txt'], 'the file was replaced, not written in place');
      assert.equal(after['d/b.txt'], before['d/b.txt'], 'unchanged files are not touched');
      assert.deepEqual(await readdir(volume), ['a.txt', 'd'], 'no staging or temp file left');
    });

    it('never shows a reader a partly written file', async function () {
      this.timeout(120_000);
      const size = 256 * 1024;
      const write = (version: string) => {
        const files: Record<string, string> = {};
        for (let i = 0; i < 8; i++) files[`f${i}`] = version.repeat(size);
        return publish(files);
      };
      await write('a');
      const reader = startReader('files', volume, 8);
      let report: ReaderReport;
      try {
        await reader.waitFor('a');
        for (const version of 'bcdefghijklmnopq') {
          await write(version);
          await reader.waitFor(version);
        }
      } finally {
        report = await reader.stop();
      }
      assert.equal(report.torn, 0, 'no read saw a partial file');
      assert.ok(report.reads > 16);
      assert.equal(report.versions.length, 17);
    });

    it('mirror deletes what the source dropped, only when the whole sync succeeds', async () => {
      await publish({ keep: 'k', drop: 'd', 'old/x': 'x' });
      const failing = await Publication.open(options(), true);
      failing.keep('keep', 'file', 1);
      await failing.writeFile('new', Buffer.from('n'));
      await failing.abort();
      assert.deepEqual(await readTree(volume), { drop: 'd', keep: 'k', 'old/': '/', 'old/x': 'x' });

      const pub = await Publication.open(options(), true);
      pub.keep('keep', 'file', 1);
      await pub.writeFile('new', Buffer.from('n'));
      await pub.commit();
      assert.deepEqual(await readTree(volume), { keep: 'k', new: 'n' });
    });

    it('stages inside the volume when no staging directory is given', async () => {
      await publish({ a: '1' }, { stagingDir: undefined });
      await publish({ b: '2' }, { stagingDir: undefined });
      assert.deepEqual(await readTree(volume), { b: '2' });
      await publish({ c: '3' }, { stagingDir: undefined, publish: 'symlink' });
      assert.deepEqual(await readTree(join(volume, 'current')), { c: '3' });
      assert.deepEqual((await readdir(volume)).sort(), ['.versions', 'current']);
    });

    it('additive mode never deletes', async () => {
      await publish({ a: '1', b: '2' }, { syncMode: 'additive' });
      await publish({ c: '3' }, { syncMode: 'additive' });
      assert.deepEqual(await readTree(volume), { a: '1', b: '2', c: '3' });
    });

    it('replaces a directory by a file and a file by a directory', async () => {
      await publish({ 'x/inner': 'i', y: 'file' });
      await publish({ x: 'now a file', 'y/inner': 'now a dir' });
      assert.deepEqual(await readTree(volume), { x: 'now a file', 'y/': '/', 'y/inner': 'now a dir' });
    });

    it('never writes through a symlink already in the volume', async () => {
      const outside = join(dir, 'outside');
      await mkdir(outside);
      await mkdir(volume);
      await symlink(outside, join(volume, 'd'));
      await publish({ 'd/file': 'x' }, { syncMode: 'additive' });
      assert.deepEqual(await readdir(outside), [], 'nothing landed outside');
      assert.ok((await lstat(join(volume, 'd'))).isDirectory(), 'the link was replaced by a real directory');
    });
  });

  describe('symlink mode', () => {
    it('swaps `current` to a new version directory and keeps only the previous one', async () => {
      const sym = { publish: 'symlink' as const };
      const first = await publish({ a: 'v1' }, sym);
      const v1 = await readlink(join(volume, 'current'));
      assert.match(v1, /^\.versions\//);
      assert.deepEqual(first.versions, [v1.slice('.versions/'.length)]);
      await publish({ a: 'v2' }, sym);
      const v2 = await readlink(join(volume, 'current'));
      assert.deepEqual(
        (await readdir(join(volume, '.versions'))).sort(),
        [v1, v2].map((v) => v.slice(10)).sort(),
      );
      await publish({ a: 'v3' }, sym);
      assert.equal(await readFile(join(volume, 'current', 'a'), 'utf8'), 'v3');
      assert.equal((await readdir(join(volume, '.versions'))).length, 2, 'the oldest version is gone');
      assert.deepEqual((await readdir(volume)).sort(), ['.versions', 'current']);
    });

    it('shares unchanged files of an incremental version by hard link and never alters the old one', async () => {
      const sym = { publish: 'symlink' as const };
      await publish({ same: 's', changed: 'old' }, sym);
      const oldRoot = join(volume, await readlink(join(volume, 'current')));
      const pub = await Publication.open(options(sym), true);
      pub.keep('same', 'file', 1);
      await pub.writeFile('changed', Buffer.from('new'));
      await pub.commit();
      const newRoot = join(volume, await readlink(join(volume, 'current')));
      assert.equal((await lstat(join(newRoot, 'same'))).ino, (await lstat(join(oldRoot, 'same'))).ino);
      assert.equal(await readFile(join(oldRoot, 'changed'), 'utf8'), 'old', 'the old version is intact');
      assert.equal(await readFile(join(newRoot, 'changed'), 'utf8'), 'new');
    });

    it('never shows a reader a mix of two versions, nor a missing `current`', async function () {
      this.timeout(120_000);
      const write = (version: string) => {
        const files: Record<string, string> = {};
        for (let i = 0; i < 64; i++) files[`f${i}`] = version.repeat(4096);
        return publish(files, { publish: 'symlink' });
      };
      await write('a');
      const reader = startReader('symlink', volume, 64);
      let report: ReaderReport;
      try {
        await reader.waitFor('a');
        for (const version of 'bcdefghijklmnopqrstu') {
          await write(version);
          await reader.waitFor(version);
        }
      } finally {
        report = await reader.stop();
      }
      assert.equal(report.mixed, 0, 'no tree mixed two versions');
      assert.equal(report.torn, 0, 'no file of the current tree was missing or partial');
      assert.equal(report.missingCurrent, 0, '`current` always existed');
      assert.equal(report.versions.length, 21);
    });
  });

  describe('safety', () => {
    it('creates links that stay inside and refuses one that points out, publishing nothing', async () => {
      await publish({ 'docs/index.md': 'doc' }, {}, { 'README.md': 'docs/index.md', 'docs/self': '.' });
      assert.equal(await readFile(join(volume, 'README.md'), 'utf8'), 'doc');
      await assert.rejects(
        publish({ 'docs/index.md': 'changed' }, {}, { 'docs/self': '.', escape: 'docs/self/../..' }),
        (err: unknown) =>
          err instanceof SyncError && err.reason === 'unsafe' && /symlink "escape"/.test(err.message),
      );
      assert.equal(
        await readFile(join(volume, 'docs/index.md'), 'utf8'),
        'doc',
        'the last good content is intact',
      );
      assert.deepEqual((await readdir(volume)).sort(), ['README.md', 'docs']);
    });

    it('refuses a name that is both a file and a directory', async () => {
      const pub = await Publication.open(options(), false);
      await pub.writeFile('a', Buffer.from('x'));
      await assert.rejects(
        pub.writeFile('a/b', Buffer.from('y')),
        (err: unknown) => (err as SyncError).reason === 'invalid',
      );
      await pub.abort();
    });

    it('stops at limits.maxFiles and limits.maxBytes with a clear error', async () => {
      await assert.rejects(
        publish({ a: '1', b: '2', c: '3' }, { limits: { maxFiles: 2 } }),
        /more than 2 entries \(limits\.maxFiles\)/,
      );
      const pub = await Publication.open(options({ limits: { maxFiles: 10, maxBytes: 1000 } }), false);
      async function* endless() {
        for (;;) yield Buffer.alloc(400);
      }
      await assert.rejects(
        pub.writeFile('bomb', endless()),
        (err: unknown) =>
          err instanceof SyncError && err.reason === 'limit' && /limits\.maxBytes/.test(err.message),
      );
      await pub.abort();
      assert.deepEqual(await readdir(volume), [], 'nothing published');
      assert.deepEqual(await readdir(join(dir, 'staging')), [], 'staging emptied');
    });

    it('refuses names that leave the volume', async () => {
      const pub = await Publication.open(options(), false);
      for (const name of ['../x', '/abs', 'a/../../x']) {
        await assert.rejects(
          pub.writeFile(name, Buffer.from('x')),
          (err: unknown) => (err as SyncError).reason === 'unsafe',
        );
      }
      await pub.abort();
      await writeFile(join(dir, 'sentinel'), '');
      assert.deepEqual((await readdir(dir)).sort(), ['sentinel', 'staging', 'volume']);
      assert.deepEqual(await readdir(join(dir, 'staging')), []);
    });
  });
});

interface ReaderReport {
  reads: number;
  torn: number;
  mixed: number;
  missingCurrent: number;
  versions: string[];
}

function startReader(mode: 'files' | 'symlink', volume: string, count: number) {
  const child: ChildProcess = spawn(process.execPath, [READER, mode, volume, String(count)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let output = '';
  const waiters: { version: string; resolve: () => void }[] = [];
  child.stdout!.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    for (const w of [...waiters]) {
      if (output.includes(`seen ${w.version}\n`)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return {
    waitFor: (version: string) =>
      new Promise<void>((resolve, reject) => {
        if (output.includes(`seen ${version}\n`)) return resolve();
        waiters.push({ version, resolve });
        exited.then(() => reject(new Error(`reader exited before seeing ${version}: ${output}`)));
      }),
    stop: async (): Promise<ReaderReport> => {
      child.stdin!.end('stop\n');
      await exited;
      const line = output.split('\n').find((l) => l.startsWith('report '));
      if (!line) throw new Error(`reader gave no report: ${output}`);
      return JSON.parse(line.slice('report '.length)) as ReaderReport;
    },
  };
}
