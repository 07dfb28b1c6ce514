import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectCsi, type CsiClients } from '../../src/cli/csi-client.js';
import { freePort } from './ports.js';

/** The launcher operators run (bin/sharedvolume-csi), so tests exercise the same node flags. */
export const DRIVER_BIN = fileURLToPath(new URL('../../../bin/sharedvolume-csi', import.meta.url));
export const SVCTL_BIN = fileURLToPath(new URL('../../src/cli/svctl.js', import.meta.url));

export interface RunningDriver extends CsiClients {
  endpoint: string;
  socket: string;
  dir: string;
  process: ChildProcess;
  /** Everything the driver wrote to stdout and stderr so far. */
  log(): string;
  /** SIGTERM, wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
}

export interface DriverArgs {
  /** Extra flags, e.g. ['--local-root', dir] or ['--backends', file]. */
  args: string[];
  env?: Record<string, string>;
  /** A command that runs the driver, such as setpriv with its options (default: none). */
  launcher?: string[];
  /** Reuse a directory (for restarts); default: a fresh temp dir, removed on stop. */
  dir?: string;
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 15000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Starts the real driver binary on a unix socket in a temp dir and connects real gRPC clients to it. */
export async function startDriver(options: DriverArgs): Promise<RunningDriver> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'sv-driver-')));
  const socket = join(dir, 'csi.sock');
  const endpoint = `unix://${socket}`;
  const [command, ...prefix] = [...(options.launcher ?? []), DRIVER_BIN];
  const child = spawn(
    command!,
    [
      ...prefix,
      '--endpoint',
      endpoint,
      '--node-id',
      'test-node',
      '--state-dir',
      join(dir, 'state'),
      '--log-format',
      'json',
      ...options.args,
    ],
    { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  let exited: number | null | undefined;
  const exit = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve((exited = code))),
  );
  try {
    await waitFor(() => exited !== undefined || output.includes('"serving"'), 'the driver to serve');
    if (exited !== undefined) throw new Error(`driver exited with ${exited}: ${output}`);
    await waitFor(() => existsSync(socket), 'the socket');
  } catch (err) {
    // A driver that never served leaves nothing behind: not its process, not its directory.
    child.kill('SIGKILL');
    await exit;
    if (!options.dir) await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const clients = connectCsi(endpoint);
  return {
    ...clients,
    endpoint,
    socket,
    dir,
    process: child,
    log: () => output,
    stop: async () => {
      clients.close();
      if (exited === undefined) child.kill('SIGTERM');
      const code = await exit;
      if (!options.dir) await rm(dir, { recursive: true, force: true });
      return code;
    },
  };
}

/** A driver that serves /metrics and /healthz at `http://${metricsAddress}/...`. */
export type RunningDriverWithMetrics = RunningDriver & { metricsAddress: string };

/** startDriver serving /metrics and /healthz on a free loopback port. */
export async function startDriverWithMetrics(options: DriverArgs): Promise<RunningDriverWithMetrics> {
  const metricsAddress = `127.0.0.1:${await freePort()}`;
  const driver = await startDriver({
    ...options,
    args: [...options.args, '--metrics-address', metricsAddress],
  });
  return { ...driver, metricsAddress };
}
