import assert from 'node:assert/strict';
import { backoffDelay, nextSyncDelay } from '../../src/populator/backoff.js';

describe('populator backoff', () => {
  it('doubles per attempt between half and all of the exponential value', () => {
    const low = () => 0;
    const high = () => 0.999999;
    assert.deepEqual(
      [0, 1, 2, 3].map((a) => backoffDelay(a, { baseMs: 1000, random: low })),
      [500, 1000, 2000, 4000],
    );
    assert.deepEqual(
      [0, 1, 2, 3].map((a) => backoffDelay(a, { baseMs: 1000, random: high })),
      [1000, 2000, 4000, 8000],
    );
  });

  it('is capped', () => {
    assert.equal(backoffDelay(50, { baseMs: 1000, maxMs: 60_000, random: () => 0.999999 }), 60_000);
    assert.equal(backoffDelay(1e6, { random: () => 0 }), 150_000);
  });

  it('spreads delays at random', () => {
    const seen = new Set(Array.from({ length: 50 }, () => backoffDelay(4)));
    assert.ok(seen.size > 10, 'jitter makes delays differ');
  });

  it('adds up to a fraction of the interval to periodic syncs', () => {
    assert.equal(
      nextSyncDelay(60_000, 0.1, () => 0),
      60_000,
    );
    assert.equal(
      nextSyncDelay(60_000, 0.1, () => 0.5),
      63_000,
    );
  });
});
