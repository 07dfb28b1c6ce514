import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { CsiError } from '../../src/rpc/errors.js';
import { assertSafeRelativePath, formatVolumeId, parseVolumeId } from '../../src/volumes/volume-id.js';

function invalid(fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => err instanceof CsiError && err.code === status.INVALID_ARGUMENT);
}

describe('volume ids', () => {
  it('round-trips instance and path', () => {
    const id = formatVolumeId({ instance: 'nfs-a', path: 'team1/cache' });
    assert.equal(id, 'nfs-a/team1/cache');
    assert.deepEqual(parseVolumeId(id), { instance: 'nfs-a', path: 'team1/cache' });
  });

  it('treats an id without an instance separator as not ours', () => {
    assert.equal(parseVolumeId('reallyfakevolumeid'), undefined);
  });

  for (const bad of [
    'local/../etc',
    'local/a/../../etc',
    'local/./x',
    'local//abs',
    'local/a\0b',
    'local/.sharedvolume',
    'local/-rf',
    'local/a/b/c/d/e',
    'Local/x',
    '../x/y',
    `local/${'a'.repeat(130)}`,
  ]) {
    it(`rejects ${JSON.stringify(bad).slice(0, 40)} with INVALID_ARGUMENT`, () =>
      invalid(() => parseVolumeId(bad)));
  }

  it('rejects an empty id', () => invalid(() => parseVolumeId('')));

  it('refuses to format an id over 128 bytes', () =>
    invalid(() =>
      formatVolumeId({ instance: 'x', path: ['a', 'b', 'c'].map((c) => c.repeat(50)).join('/') }),
    ));

  it('accepts only plain relative segments', () => {
    assertSafeRelativePath('ns/pvc-1.data_x', 'p');
    invalid(() => assertSafeRelativePath('/etc', 'p'));
    invalid(() => assertSafeRelativePath('a/', 'p'));
    invalid(() => assertSafeRelativePath('a/b c', 'p'));
  });
});
