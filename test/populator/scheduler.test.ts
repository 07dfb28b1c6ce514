import assert from 'node:assert/strict';
import { dueIn, Scheduler } from '../../src/populator/scheduler.js';
import { emptyStatus, type SyncStatus } from '../../src/populator/state.js';

const T0 = Date.parse('2030-01-01T00:00:00Z');
const at = (ms: number) => new Date(T0 + ms).toISOString();
const status = (fields: Partial<SyncStatus>): SyncStatus => ({ ...emptyStatus('git'), ...fields });
const noJitter = () => 0;
const fullJitter = () => 0.999999;

describe('populator schedule', () => {
  it('a volume that never synced, or whose sync crashed, is due now', () => {
    assert.equal(dueIn(undefined, 60_000, T0), 0);
    assert.equal(dueIn(status({ lastAttempt: at(0) }), 60_000, T0 + 5), 0);
    const crashed = status({
      lastAttempt: at(0),
      lastSuccess: at(-1),
      inProgress: { since: at(0), pid: 1, host: 'h' },
    });
    assert.equal(dueIn(crashed, 60_000, T0 + 5), 0);
  });

  it('after a success: the interval plus up to 10 % jitter, counted from that success', () => {
    const ok = status({ lastAttempt: at(0), lastSuccess: at(1000) });
    assert.equal(dueIn(ok, 60_000, T0 + 1000, noJitter), 60_000);
    assert.equal(dueIn(ok, 60_000, T0 + 1000, fullJitter), 66_000);
    assert.equal(dueIn(ok, 60_000, T0 + 31_000, noJitter), 30_000, 'another replica synced 30 s ago');
    assert.equal(dueIn(ok, 60_000, T0 + 999_000, noJitter), 0, 'overdue');
  });

  it('a volume that fills once is never due again after a success, but is retried after a failure', () => {
    assert.equal(dueIn(status({ lastAttempt: at(0), lastSuccess: at(1) }), 0, T0 + 10), undefined);
    const failed = status({
      lastAttempt: at(0),
      lastError: { reason: 'network', permanent: false, message: 'x', at: at(0) },
      consecutiveFailures: 1,
    });
    assert.equal(dueIn(failed, 0, T0, noJitter), 500);
  });

  it('after failures: exponential backoff from the last attempt, whatever the interval', () => {
    const failing = (n: number) =>
      status({
        lastAttempt: at(0),
        lastSuccess: at(-3_600_000),
        lastError: { reason: 'auth', permanent: true, message: 'x', at: at(0) },
        consecutiveFailures: n,
      });
    assert.equal(dueIn(failing(1), 3_600_000, T0, fullJitter), 1000);
    assert.equal(dueIn(failing(4), 3_600_000, T0, noJitter), 4000);
    assert.equal(dueIn(failing(30), 3_600_000, T0, fullJitter), 300_000, 'capped at 5 minutes');
  });

  it('one timer per volume: rescheduling replaces it; cancel and clear stop it', async () => {
    const fired: string[] = [];
    const scheduler = new Scheduler((id) => fired.push(id));
    scheduler.schedule('a', 60_000);
    scheduler.schedule('a', 0);
    scheduler.schedule('b', 0);
    scheduler.cancel('b');
    scheduler.schedule('c', 60_000);
    assert.ok(scheduler.nextAt('c')! > Date.now() + 50_000);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(fired, ['a']);
    assert.equal(scheduler.nextAt('a'), undefined);
    scheduler.clear();
    assert.equal(scheduler.nextAt('c'), undefined);
  });
});
