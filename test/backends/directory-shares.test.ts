import assert from 'node:assert/strict';
import {
  lstat,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  writeFile,
  mkdir,
  unlink,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type { CreateShareInput } from '../../src/backends/backend.js';
import { DirectoryShares } from '../../src/backends/directory-shares.js';

function input(
  name: string,
  path = name,
  onDelete: 'delete' | 'retain' | 'archive' = 'delete',
): CreateShareInput {
  return {
    name,
    path,
    capacityBytes: 1024,
    parameters: {},
    share: { subDir: path, onDelete, mountPermissions: 0o770, mountOptions: [] },
  };
}

const volumeEntries = async (root: string) =>
  (await readdir(root)).filter((e) => e !== '.sharedvolume').sort();
const nameFile = (root: string, name: string) =>
  join(root, '.sharedvolume', 'names', createHash('sha256').update(name).digest('hex'));
const recordFile = (root: string, path: string) =>
  join(root, '.sharedvolume', 'records', `${createHash('sha256').update(path).digest('hex')}.json`);

describe('DirectoryShares', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'sv-shares-'));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('creates a directory with its mode and finds it by name and path', async () => {
    const shares = new DirectoryShares(async () => root);
    const record = await shares.create(input('pvc-1', 'ns/pvc-1'));
    assert.equal(((await stat(join(root, 'ns/pvc-1'))).mode & 0o777).toString(8), '770');
    assert.deepEqual(await shares.findByName('pvc-1'), record);
    assert.deepEqual(await shares.getRecord('ns/pvc-1'), record);
    assert.equal(await shares.exists('ns/pvc-1'), true);
  });

  it('leaves nothing behind when a backend hook fails', async () => {
    const shares = new DirectoryShares(async () => root, {
      afterCreate: async () => {
        throw new Error('quota refused');
      },
    });
    await assert.rejects(shares.create(input('pvc-2', 'ns/pvc-2')), /quota refused/);
    assert.deepEqual(await volumeEntries(root), [], 'no orphan directory, not even the parent');
    assert.deepEqual(await readdir(join(root, '.sharedvolume', 'records')), [], 'no half-written record');
    assert.equal(await shares.findByName('pvc-2'), undefined);
  });

  it('does not remove a parent another volume still uses', async () => {
    let fail = false;
    const shares = new DirectoryShares(async () => root, {
      afterCreate: async () => {
        if (fail) throw new Error('boom');
      },
    });
    await shares.create(input('a', 'ns/a'));
    fail = true;
    await assert.rejects(shares.create(input('b', 'ns/b')));
    assert.deepEqual(await readdir(join(root, 'ns')), ['a']);
  });

  it('completes a create that crashed after claiming the path', async () => {
    const shares = new DirectoryShares(async () => root);
    const first = await shares.create(input('pvc-3'));
    // Simulate a crash before the commit point: the name index was never written.
    await unlink(join(root, '.sharedvolume', 'names', createHash('sha256').update('pvc-3').digest('hex')));
    assert.equal(await shares.findByName('pvc-3'), undefined);
    const again = await shares.create(input('pvc-3'));
    assert.deepEqual(again, first);
    assert.deepEqual(await shares.findByName('pvc-3'), first);
  });

  it('refuses a directory that exists but is not ours', async () => {
    const shares = new DirectoryShares(async () => root);
    await mkdir(join(root, 'taken'));
    await writeFile(join(root, 'taken', 'keep.txt'), 'data');
    await assert.rejects(shares.create(input('pvc-4', 'taken')), /already exists/);
    assert.deepEqual(await readdir(join(root, 'taken')), ['keep.txt'], 'foreign data untouched');
    await assert.rejects(lstat(recordFile(root, 'taken')), /ENOENT/);
  });

  it('refuses a path already claimed by another name', async () => {
    const shares = new DirectoryShares(async () => root);
    await shares.create(input('one', 'shared'));
    await assert.rejects(shares.create(input('two', 'shared')), /belongs to volume "one"/);
  });

  it('applies onDelete: delete, retain, archive', async () => {
    const shares = new DirectoryShares(async () => root);
    for (const mode of ['delete', 'retain', 'archive'] as const) {
      await shares.create(input(`v-${mode}`, `v-${mode}`, mode));
      await writeFile(join(root, `v-${mode}`, 'f'), mode);
      assert.equal(await shares.delete(`v-${mode}`), true);
      assert.equal(await shares.getRecord(`v-${mode}`), undefined);
      assert.equal(await shares.delete(`v-${mode}`), false, 'second delete finds nothing');
    }
    await shares.close();
    assert.deepEqual(await volumeEntries(root), ['archived-v-archive', 'v-retain']);
    assert.deepEqual(await readdir(join(root, '.sharedvolume', 'trash')), [], 'deleted data purged');
  });

  it('archives beside an earlier archive of the same name', async () => {
    const shares = new DirectoryShares(async () => root);
    for (let i = 0; i < 2; i++) {
      await shares.create(input('arch', 'arch', 'archive'));
      await shares.delete('arch');
    }
    const entries = await volumeEntries(root);
    assert.equal(entries.length, 2);
    assert.ok(entries.every((e) => e.startsWith('archived-arch')));
  });

  it('writes a record as one symlink and indexes the name as a hard link to it', async () => {
    const shares = new DirectoryShares(async () => root);
    const created = await shares.create(input('pvc-link', 'v-link'));
    assert.deepEqual(JSON.parse(await readlink(recordFile(root, 'v-link'))), created);
    const [name, record] = await Promise.all([
      lstat(nameFile(root, 'pvc-link')),
      lstat(recordFile(root, 'v-link')),
    ]);
    assert.equal(name.ino, record.ino);
    assert.equal(record.nlink, 2);
  });

  it('finds an expanded volume by name with its new capacity', async () => {
    const shares = new DirectoryShares(async () => root);
    await shares.create(input('pvc-grow', 'v-grow'));
    await shares.expand('v-grow', 4096);
    assert.equal((await shares.findByName('pvc-grow'))?.capacityBytes, 4096);
    assert.equal(await shares.delete('v-grow'), true);
    assert.equal(await shares.findByName('pvc-grow'), undefined);
    await assert.rejects(lstat(nameFile(root, 'pvc-grow')), { code: 'ENOENT' });
  });

  it('keeps a record too long for a link target in a file, with the same lifecycle', async () => {
    const shares = new DirectoryShares(async () => root);
    const big = { ...input('pvc-big', 'v-big'), parameters: { note: 'x'.repeat(5000) } };
    const created = await shares.create(big);
    assert.ok((await lstat(recordFile(root, 'v-big'))).isFile());
    assert.deepEqual(await shares.findByName('pvc-big'), created);
    assert.deepEqual(await shares.create(big), created, 'idempotent create');
    await shares.expand('v-big', 8192);
    assert.equal((await shares.getRecord('v-big'))?.capacityBytes, 8192);
    assert.equal(await shares.delete('v-big'), true);
    assert.equal(await shares.findByName('pvc-big'), undefined);
  });

  it('answers a create for a committed name with its volume, untouched', async () => {
    let hookCalls = 0;
    const shares = new DirectoryShares(async () => root, {
      afterCreate: async () => void hookCalls++,
    });
    const created = await shares.create(input('pvc-again', 'v-again'));
    await writeFile(join(root, 'v-again', 'data'), 'kept');
    const again = await shares.create({ ...input('pvc-again', 'v-again'), capacityBytes: 4096 });
    assert.deepEqual(again, created, 'the first record, not the second request');
    assert.equal(hookCalls, 1, 'no quota or other hook applied again');
    assert.equal(await readFile(join(root, 'v-again', 'data'), 'utf8'), 'kept');
    assert.deepEqual(await shares.getRecord('v-again'), created);
  });

  it('answers a create for a name committed at another path with that volume, leaving nothing at the new path', async () => {
    const shares = new DirectoryShares(async () => root);
    const created = await shares.create(input('pvc-moved', 'ns-a/v'));
    const again = await shares.create(input('pvc-moved', 'ns-b/v'));
    assert.deepEqual(again, created);
    assert.deepEqual(await volumeEntries(root), ['ns-a']);
    await assert.rejects(lstat(recordFile(root, 'ns-b/v')), { code: 'ENOENT' });
    assert.deepEqual(await shares.findByName('pvc-moved'), created);
  });

  it('replaces a name link whose volume is gone', async () => {
    const shares = new DirectoryShares(async () => root);
    await shares.create(input('pvc-stale', 'v-old'));
    // A crash in a delete between removing the record and removing the name leaves the link behind.
    await unlink(recordFile(root, 'v-old'));
    const created = await shares.create(input('pvc-stale', 'v-new'));
    assert.equal(created.path, 'v-new');
    assert.deepEqual(await shares.findByName('pvc-stale'), created);
  });

  it('lists in a stable order across pages', async () => {
    const shares = new DirectoryShares(async () => root);
    for (let i = 0; i < 7; i++) await shares.create(input(`v${i}`));
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await shares.list(after, 3);
      if (page.length === 0) break;
      seen.push(...page.map((r) => r.path));
      after = page[page.length - 1]!.path;
    }
    assert.deepEqual([...seen].sort(), ['v0', 'v1', 'v2', 'v3', 'v4', 'v5', 'v6']);
    assert.equal(new Set(seen).size, 7);
  });
});
