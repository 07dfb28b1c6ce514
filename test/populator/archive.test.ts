import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectFormat } from '../../src/populator/archive.js';
import { tar, tarGz, zip } from './archives.js';

describe('populator archive format detection', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-archive-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  async function formatOf(content: Buffer | string): Promise<string> {
    const path = join(dir, `f-${Math.random().toString(16).slice(2)}`);
    await writeFile(path, content);
    return detectFormat(path);
  }

  it('recognises tar, tar.gz, tar.zst and zip by their first bytes', async () => {
    const entries = [{ type: 'file' as const, name: 'a.txt', content: 'a' }];
    assert.equal(await formatOf(tar(entries)), 'tar');
    assert.equal(await formatOf(tarGz(entries)), 'tar');
    assert.equal(await formatOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0])), 'tar');
    assert.equal(await formatOf(zip(entries)), 'zip');
    assert.equal(await formatOf('{"plain": "json"}'), 'file');
  });

  it('takes files shorter than any magic number as plain files', async () => {
    for (const tiny of ['', 'v', 'v1', 'v1\n'])
      assert.equal(await formatOf(tiny), 'file', JSON.stringify(tiny));
  });
});
