import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { z } from 'zod';
import { notFound, toStatus } from '../../src/rpc/errors.js';

describe('error to status mapping', () => {
  it('keeps the code of a CsiError', () => {
    assert.deepEqual(toStatus(notFound('gone')), { code: status.NOT_FOUND, message: 'gone' });
  });

  it('maps zod failures to INVALID_ARGUMENT naming the key', () => {
    const result = z.strictObject({ onDelete: z.enum(['delete']) }).safeParse({ onDelete: 'x', extra: '1' });
    const mapped = toStatus(result.error);
    assert.equal(mapped.code, status.INVALID_ARGUMENT);
    assert.match(mapped.message, /"onDelete"/);
    assert.match(mapped.message, /unknown parameter "extra"/);
  });

  it('maps quota and space errors to RESOURCE_EXHAUSTED, anything else to INTERNAL', () => {
    assert.equal(toStatus(Object.assign(new Error('q'), { code: 'EDQUOT' })).code, status.RESOURCE_EXHAUSTED);
    const unnamedQuota = Object.assign(new Error('Unknown system error -122'), {
      errno: -122,
      code: 'Unknown system error -122',
    });
    assert.equal(toStatus(unnamedQuota).code, status.RESOURCE_EXHAUSTED);
    assert.equal(toStatus(new Error('boom')).code, status.INTERNAL);
  });
});
