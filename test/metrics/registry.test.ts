import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDriverWithMetrics, type RunningDriverWithMetrics } from '../helpers/driver.js';

/** Context switches of a process's main thread so far (each one is the thread waking up or being preempted). */
async function mainThreadSwitches(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/task/${pid}/status`, 'utf8');
  return [...status.matchAll(/ctxt_switches:\s+(\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
}

describe('process metrics of the running driver', () => {
  let dir: string;
  let driver: RunningDriverWithMetrics;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-metrics-'));
    driver = await startDriverWithMetrics({ args: ['--local-root', join(dir, 'root')] });
  });
  after(async () => {
    await driver?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('exports the event-loop lag without polling an idle driver', async () => {
    const body = await (await fetch(`http://${driver.metricsAddress}/metrics`)).text();
    assert.match(body, /nodejs_eventloop_lag_p99_seconds \d/);
    // The event-loop monitor's default 10 ms resolution woke an idle driver 100 times a second.
    await new Promise((r) => setTimeout(r, 500));
    const before = await mainThreadSwitches(driver.process.pid!);
    await new Promise((r) => setTimeout(r, 2000));
    const wakeups = (await mainThreadSwitches(driver.process.pid!)) - before;
    assert.ok(wakeups < 20, `an idle driver's main thread woke ${wakeups} times in 2 s`);
  });
});
