import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lease } from '../../src/populator/lease.js';

describe('populator lease', () => {
  let dir: string;
  let clock: number;
  const now = () => clock;
  const lease = (owner: string, durationMs = 60_000) =>
    new Lease(dir, { owner, durationMs, graceMs: 5000, now });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-lease-'));
    clock = 1_000_000;
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('one holder at a time; released leases are free at once', async () => {
    const a = lease('a');
    const b = lease('b');
    assert.equal(await a.tryAcquire(), true);
    assert.equal(await b.tryAcquire(), false);
    assert.equal((await b.current())?.owner, 'a');
    await a.release();
    assert.equal(await b.tryAcquire(), true);
    assert.equal((await a.current())?.owner, 'b');
    assert.equal(await a.tryAcquire(), false);
  });

  it('renewal keeps the lease past its first expiry', async () => {
    const a = lease('a');
    const b = lease('b');
    await a.tryAcquire();
    clock += 40_000;
    assert.equal(await a.renew(), true);
    clock += 40_000; // 80 s after the start: expired without the renewal
    assert.equal(await b.tryAcquire(), false);
    assert.equal((await b.current())?.expiresAt, 1_000_000 + 40_000 + 60_000);
  });

  it('an expired lease is taken over after the grace period, and its old holder knows it lost', async () => {
    const a = lease('a');
    const b = lease('b');
    await a.tryAcquire();
    clock += 60_000 + 4_000;
    assert.equal(await b.tryAcquire(), false, 'within the grace period for clock skew');
    clock += 2_000;
    assert.equal(await b.tryAcquire(), true);
    assert.equal(await a.renew(), false, 'the old holder may not renew');
    assert.equal(a.holding, false);
    await a.release();
    assert.equal((await b.current())?.owner, 'b', "a late release does not free b's lease");
  });

  it('a holder past its own expiry stops even if nobody took over', async () => {
    const a = lease('a');
    await a.tryAcquire();
    clock += 61_000;
    assert.equal(await a.renew(), false);
  });

  it('of many contenders for an expired lease exactly one wins', async () => {
    const first = lease('first');
    await first.tryAcquire();
    clock += 120_000;
    const contenders = Array.from({ length: 12 }, (_, i) => lease(`c${i}`));
    const won = await Promise.all(contenders.map((c) => c.tryAcquire()));
    assert.equal(won.filter(Boolean).length, 1);
    const winner = contenders[won.indexOf(true)]!;
    assert.equal((await winner.current())?.generation, 2);
  });

  it('a decision made on a stale listing never yields a second holder', async () => {
    // c read generation 1 long ago; since then 2 and 3 were taken and 1 cleaned up.
    const holders = ['a', 'b', 'd'].map((o) => lease(o));
    for (const h of holders) {
      await h.tryAcquire();
      await h.release();
    }
    const d = lease('d2');
    assert.equal(await d.tryAcquire(), true);
    const names = (await readdir(join(dir, 'lease'))).filter((n) => /^\d+$/.test(n)).sort();
    assert.ok(!names.includes('000000000001'), `old generations are cleaned up: ${names.join(',')}`);
    // Recreate what a stale contender would: generation 2 no longer exists, but 4 does.
    const stale = lease('stale');
    (stale as unknown as { current: () => Promise<unknown> }).current = async () => ({
      owner: 'a',
      generation: 1,
      acquiredAt: 0,
      expiresAt: 0,
    });
    assert.equal(await stale.tryAcquire(), false);
    assert.equal((await d.current())?.owner, 'd2');
    assert.equal(await d.renew(), true);
  });
});
