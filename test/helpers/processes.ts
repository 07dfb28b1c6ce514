import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

/**
 * Servers a test started, stopped again by PID. Tests never stop anything they did not start.
 */
export class ProcessGroup {
  private readonly children: { name: string; child: ChildProcess }[] = [];
  private readonly pids: { name: string; pid: number }[] = [];

  /** Starts a long-running foreground process and remembers it. */
  spawn(name: string, command: string, args: string[], options: SpawnOptions = {}): ChildProcess {
    const child = spawn(command, args, { stdio: 'ignore', ...options });
    this.children.push({ name, child });
    return child;
  }

  /** Remembers a PID a daemon wrote to its own pid file. */
  adopt(name: string, pid: number): void {
    this.pids.push({ name, pid });
  }

  /** SIGTERM everything started, newest first; SIGKILL what is still alive after `graceMs`. */
  async stopAll(graceMs = 5000): Promise<void> {
    const all = [
      ...this.children
        .filter((c) => c.child.pid !== undefined && c.child.exitCode === null)
        .map((c) => c.child.pid!),
      ...this.pids.map((p) => p.pid),
    ].reverse();
    for (const pid of all) signal(pid, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (all.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const pid of all.filter(alive)) signal(pid, 'SIGKILL');
    this.children.length = 0;
    this.pids.length = 0;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
