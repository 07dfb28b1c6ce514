import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

/** The launcher operators run (it sets the node flags), not the bare script. */
const DRIVER_BIN = fileURLToPath(new URL('../../bin/sharedvolume-csi', import.meta.url));
const CLOCK_TICKS = 100;

/** The real driver as a child process, with its CPU time and RSS read from /proc. */
export class DriverProcess {
  readonly child: ChildProcess;

  constructor(
    readonly socket: string,
    args: string[],
  ) {
    this.child = spawn(DRIVER_BIN, ['--endpoint', `unix://${socket}`, ...args], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  }

  async ready(): Promise<void> {
    for (let i = 0; i < 400 && !existsSync(this.socket); i++) await new Promise((r) => setTimeout(r, 25));
    if (!existsSync(this.socket)) throw new Error('driver did not create its socket');
  }

  /** User + system CPU seconds consumed so far. */
  async cpuSeconds(): Promise<number> {
    const stat = await readFile(`/proc/${this.child.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  }

  async rssMiB(): Promise<number> {
    const status = await readFile(`/proc/${this.child.pid}/status`, 'utf8');
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
    return kb / 1024;
  }

  async stop(): Promise<void> {
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` in flight; returns per-call latencies in ms. */
export async function runConcurrent(
  count: number,
  concurrency: number,
  task: (i: number) => Promise<unknown>,
): Promise<number[]> {
  const latencies: number[] = [];
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      const start = process.hrtime.bigint();
      await task(i);
      latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  return latencies;
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
