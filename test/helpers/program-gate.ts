import { chmod, mkdir, mkdtemp, readFile, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const GATE_SCRIPT = fileURLToPath(new URL('../../../test/fixtures/program-gate/gate', import.meta.url));

/**
 * Real programs (cp, tar, zstd...) behind a gate the test controls: the driver runs with the gate's
 * directory first on its PATH, and each gated program waits while the test holds it, or fails while
 * the test says so, before it becomes the real program. This lets a test catch a long copy in the
 * middle without depending on how fast the machine is.
 */
export class ProgramGate {
  private constructor(private readonly dir: string) {}

  static async create(programs: string[]): Promise<ProgramGate> {
    await chmod(GATE_SCRIPT, 0o755);
    const dir = await mkdtemp(join(tmpdir(), 'sv-gate-'));
    await mkdir(join(dir, 'bin'));
    for (const program of programs) await symlink(GATE_SCRIPT, join(dir, 'bin', program));
    return new ProgramGate(dir);
  }

  /** Environment for the driver process. */
  env(): Record<string, string> {
    return {
      PATH: `${join(this.dir, 'bin')}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`,
      SV_GATE_DIR: this.dir,
    };
  }

  async hold(program: string): Promise<void> {
    await unlink(join(this.dir, `${program}.waiting`)).catch(() => undefined);
    await writeFile(join(this.dir, `${program}.hold`), '');
  }

  async release(program: string): Promise<void> {
    await unlink(join(this.dir, `${program}.hold`)).catch(() => undefined);
  }

  async fail(program: string): Promise<void> {
    await writeFile(join(this.dir, `${program}.fail`), '');
  }

  async pass(program: string): Promise<void> {
    await unlink(join(this.dir, `${program}.fail`)).catch(() => undefined);
  }

  /** Makes the program read its stdin at no more than `bytesPerSecond`. */
  async throttle(program: string, bytesPerSecond: number): Promise<void> {
    await writeFile(join(this.dir, `${program}.throttle`), String(bytesPerSecond));
  }

  async unthrottle(program: string): Promise<void> {
    await unlink(join(this.dir, `${program}.throttle`)).catch(() => undefined);
  }

  /** PIDs of every run of the program so far (the gate's own PID, which the real program keeps or parents). */
  async pids(program: string): Promise<number[]> {
    const text = await readFile(join(this.dir, `${program}.pids`), 'utf8').catch(() => '');
    return text.split('\n').filter(Boolean).map(Number);
  }

  /** Waits until a held program has started and is waiting at the gate; returns its PID. */
  async waiting(program: string, timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const pid = Number(await readFile(join(this.dir, `${program}.waiting`), 'utf8').catch(() => ''));
      if (pid > 0) return pid;
      if (Date.now() > deadline) throw new Error(`${program} never reached the gate`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Waits until `pid` has exited; a zombie (exited, not yet reaped by its new parent) counts as exited. */
export async function waitForExit(pid: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (!stat || stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return;
    if (Date.now() > deadline) throw new Error(`process ${pid} did not exit`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
