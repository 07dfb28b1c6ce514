import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { CsiError } from '../../src/rpc/errors.js';
import { VolumeLocks } from '../../src/rpc/locks.js';

describe('per-volume locks', () => {
  it('refuses a second holder with ABORTED and frees on release', () => {
    const locks = new VolumeLocks();
    const release = locks.acquire('v1');
    assert.throws(
      () => locks.acquire('v1'),
      (e: unknown) => e instanceof CsiError && e.code === status.ABORTED,
    );
    const other = locks.acquire('v2');
    release();
    locks.acquire('v1')();
    other();
    assert.equal(locks.size, 0);
  });
});
