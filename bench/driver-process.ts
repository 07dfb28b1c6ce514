import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, statfs } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

/** The launcher operators run (it sets the node flags), not the bare script. */
const DRIVER_BIN = fileURLToPath(new URL('../../bin/sharedvolume-csi', import.meta.url));
const CLOCK_TICKS = 100;

/** CPU seconds of a process: user space (its code, V8, libraries) and kernel (its syscalls). */
export interface CpuTime {
  user: number;
  system: number;
}

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

  /** CPU consumed so far by all the driver's threads (JS, V8 GC helpers, libuv file system workers). */
  async cpu(): Promise<CpuTime> {
    const stat = await readFile(`/proc/${this.child.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]) / CLOCK_TICKS, system: Number(fields[12]) / CLOCK_TICKS };
  }

  /**
   * CPU seconds of the JS thread and of all other threads together (libuv's file system workers, V8's
   * compiler and GC helpers: Node 20 does not name them apart), to the nanosecond: the scheduler's
   * run time of each thread (schedstat). /proc/PID/stat counts in clock ticks of 10 ms, which for 500
   * calls is 0.02 ms per call. Threads that exited are not counted; the driver's threads live as long
   * as it does.
   */
  async cpuByThread(): Promise<{ js: number; others: number }> {
    const cpu = { js: 0, others: 0 };
    const tasks = await readdir(`/proc/${this.child.pid}/task`).catch(() => [] as string[]);
    for (const task of tasks) {
      const schedstat = await readFile(`/proc/${this.child.pid}/task/${task}/schedstat`, 'utf8').catch(
        () => '',
      );
      if (!schedstat) continue;
      const seconds = Number(schedstat.split(' ')[0]) / 1e9;
      if (task === String(this.child.pid)) cpu.js += seconds;
      else cpu.others += seconds;
    }
    return cpu;
  }

  /** User + system CPU seconds consumed so far. */
  async cpuSeconds(): Promise<number> {
    const { user, system } = await this.cpu();
    return user + system;
  }

  /**
   * Waits until the driver has gone idle (at most one clock tick of CPU in a 100 ms window), so that
   * work a phase left running in the background (purging deleted volumes) is charged to that phase
   * and not to the next one. Gives up after `maxMs`.
   */
  async settle(maxMs = 10_000): Promise<void> {
    const deadline = Date.now() + maxMs;
    let last = await this.cpuSeconds();
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      const now = await this.cpuSeconds();
      if (now - last <= 1 / CLOCK_TICKS) return;
      last = now;
    }
  }

  async rssMiB(): Promise<number> {
    const status = await readFile(`/proc/${this.child.pid}/status`, 'utf8');
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
    return kb / 1024;
  }

  async stop(): Promise<void> {
    // A driver that already exited (it failed to start) sends no 'exit' again: waiting would hang.
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}

const FS_TYPES: Record<number, string> = {
  0xef53: 'ext2/3/4',
  0x01021994: 'tmpfs',
  0x9123683e: 'btrfs',
  0x58465342: 'xfs',
  0x794c7630: 'overlayfs',
};

/** The file system a directory is on, by name where known (the backend's costs depend on it). */
export async function fileSystemName(dir: string): Promise<string> {
  const type = (await statfs(dir)).type;
  return FS_TYPES[type] ?? `type 0x${type.toString(16)}`;
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
