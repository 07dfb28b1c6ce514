import assert from 'node:assert/strict';
import { linkStaysInside, parentsOf, safeRelativePath } from '../../src/populator/paths.js';
import { SyncError } from '../../src/populator/errors.js';

describe('populator path safety', () => {
  it('normalises harmless names', () => {
    assert.equal(safeRelativePath('./a//b/'), 'a/b');
    assert.equal(safeRelativePath('a/./b'), 'a/b');
    assert.equal(safeRelativePath('..a/b..'), '..a/b..');
  });

  it('refuses names that leave the root, as unsafe', () => {
    for (const name of [
      '../x',
      'a/../../x',
      'a/..',
      '/etc/passwd',
      'C:\\x',
      '\\\\server\\x',
      'a\0b',
      '',
      './',
    ]) {
      assert.throws(
        () => safeRelativePath(name),
        (err: unknown) => err instanceof SyncError && err.reason === 'unsafe' && err.permanent,
        name,
      );
    }
  });

  it('lists parents outermost first', () => {
    assert.deepEqual(parentsOf('a/b/c'), ['a', 'a/b']);
    assert.deepEqual(parentsOf('a'), []);
  });

  it('accepts links that stay inside, following the other links of the tree', async () => {
    const links: Record<string, string> = { 'docs/latest': 'v2', 'docs/v2': '../versions/2' };
    const readLink = (rel: string) => links[rel];
    assert.equal(await linkStaysInside('README', 'docs/index.md', readLink), true);
    assert.equal(await linkStaysInside('docs/readme', '../README.md', readLink), true);
    assert.equal(await linkStaysInside('a/b/c', '../../x', readLink), true);
    assert.equal(await linkStaysInside('top', 'docs/latest/file', readLink), true);
  });

  it('refuses links that point out, directly or through other links', async () => {
    const links: Record<string, string> = { self: '.', up: '..', loop1: 'loop2', loop2: 'loop1' };
    const readLink = (rel: string) => links[rel];
    assert.equal(await linkStaysInside('x', '/etc/passwd', readLink), false);
    assert.equal(await linkStaysInside('x', '../outside', readLink), false);
    assert.equal(await linkStaysInside('a/x', '../../outside', readLink), false);
    // "self/.." is the root lexically, but self is "." so it is the root's parent.
    assert.equal(await linkStaysInside('x', 'self/..', readLink), false);
    assert.equal(await linkStaysInside('x', 'up/whatever', readLink), false);
    assert.equal(await linkStaysInside('x', 'loop1', readLink), false);
    assert.equal(await linkStaysInside('x', '', readLink), false);
  });
});
