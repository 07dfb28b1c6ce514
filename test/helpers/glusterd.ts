import { execa } from 'execa';
import { type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { link, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { stringify } from 'yaml';
import { mountsUnder, unmountUnder } from './mount-cleanup.js';
import { ProcessGroup } from './processes.js';

/** glusterd keeps its state here; a custom working dir makes `quota list` misreport (see the notes). */
const STATE_DIR = '/var/lib/glusterd';
const RUN_DIR = '/var/run/gluster';
const SOCKET = '/run/glusterd.socket';
const LOG_DIR = '/var/log/glusterfs';
/** What glusterd adds to STATE_DIR on a first start; `groups` and `hooks` come with the package. */
const STATE_ENTRIES = [
  'bitd',
  'geo-replication',
  'glusterd.info',
  'glusterd.upgrade',
  'glustershd',
  'options',
  'peers',
  'quotad',
  'scrub',
  'snaps',
  'ss_brick',
  'vols',
];

export interface GlusterVolumeSpec {
  name: string;
  /** Enable quota with hard and soft timeouts of 0, so limits apply at once. */
  quota: boolean;
}

export interface QuotaLimit {
  path: string;
  hardLimitBytes: number;
  usedBytes: number;
}

export interface RunningGlusterd {
  /** Temp dir holding the bricks; tests put their mount points and driver dirs under it too. */
  dir: string;
  /** Address clients mount from. */
  server: string;
  cli(args: string[]): Promise<string>;
  /** `volume quota VOL list --xml`, parsed. */
  quotaLimits(volume: string): Promise<QuotaLimit[]>;
  /** The brick directory of a volume: the server's own view of the volume root. */
  brick(volume: string): string;
  /** Unmounts what is left under `dir`, stops the volumes, glusterd and its daemons, wipes what it created. */
  stop(): Promise<void>;
}

function onPath(command: string): boolean {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin'];
  return dirs.some((dir) => dir && existsSync(join(dir, command)));
}

/** Whether the GlusterFS server and FUSE client are installed (tests skip otherwise). */
export function glusterdInstalled(): boolean {
  return ['glusterd', 'gluster', 'glusterfs', 'mount.glusterfs'].every(onPath);
}

async function gluster(args: string[]): Promise<string> {
  const result = await execa('gluster', ['--mode=script', ...args], {
    reject: false,
    stdin: 'ignore',
    timeout: 60_000,
  });
  if (result.exitCode !== 0) {
    throw new Error(`gluster ${args.join(' ')} failed: ${(result.stderr || result.stdout).trim()}`);
  }
  return result.stdout;
}

/** Parses the <limit> entries of `volume quota VOL list --xml`. */
export function parseQuotaList(xml: string): QuotaLimit[] {
  const field = (block: string, name: string) =>
    new RegExp(`<${name}>([^<]*)</${name}>`).exec(block)?.[1] ?? '';
  return [...xml.matchAll(/<limit>([\s\S]*?)<\/limit>/g)].map(([, block]) => ({
    path: field(block!, 'path'),
    hardLimitBytes: Number(field(block!, 'hard_limit')),
    usedBytes: Number(field(block!, 'used_space')),
  }));
}

async function listOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}

async function waitUntil(check: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Command line of a live (non-zombie) process, or undefined. */
export async function commandLine(pid: number): Promise<string[] | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return undefined;
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
  } catch {
    return undefined;
  }
}

/** Live processes whose command line satisfies `match`. */
export async function findProcesses(match: (argv: string[]) => boolean): Promise<number[]> {
  const pids = (await readdir('/proc')).filter((e) => /^\d+$/.test(e)).map(Number);
  const found: number[] = [];
  for (const pid of pids) {
    const argv = await commandLine(pid);
    if (argv && match(argv)) found.push(pid);
  }
  return found;
}

const isHook = (argv: string[]) => argv.some((a) => a.startsWith(`${STATE_DIR}/hooks/`));

async function waitForExit(match: (argv: string[]) => boolean, what: string): Promise<void> {
  await waitUntil(async () => (await findProcesses(match)).length === 0, `${what} to exit`, 30_000);
}

/** The glusterfs FUSE client serving the mount at `mountPoint` (its last argument). */
export async function fuseClientFor(mountPoint: string): Promise<number | undefined> {
  const pids = await findProcesses(
    (argv) => /glusterfs$/.test(argv[0] ?? '') && argv[argv.length - 1] === mountPoint,
  );
  return pids[0];
}

/**
 * SIGKILLs the FUSE client of every mount under `dir` that does not answer statfs within the bound
 * (a glusterfs client that crashed but hangs in its crash handler), so that unmounting cannot block.
 */
export async function killHungFuseClients(dir: string): Promise<number[]> {
  const killed: number[] = [];
  for (const point of await mountsUnder(dir)) {
    const probe = await execa('stat', ['-f', '--', point], {
      reject: false,
      stdin: 'ignore',
      timeout: 5000,
      killSignal: 'SIGKILL',
    });
    if (!probe.timedOut) continue;
    const client = await fuseClientFor(point);
    if (client) {
      process.kill(client, 'SIGKILL');
      killed.push(client);
    }
  }
  return killed;
}

/** Log files glusterfs names after a path (mount point or brick): slashes become dashes. */
function logPrefix(dir: string): string {
  return dir.replace(/^\/+/, '').replace(/\//g, '-');
}

async function readPid(file: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(file, 'utf8')).trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * One glusterd per machine: test processes running side by side (several mocha runs) queue on this
 * file, which names the holder's PID; a holder that died without releasing it is ignored.
 */
const MACHINE_LOCK = '/run/sharedvolume-test-glusterd.lock';
const LOCK_WAIT_MS = 240_000;

async function takeMachineLock(): Promise<void> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    // Written aside and linked into place, so that nobody ever reads a lock without its PID.
    const mine = `${MACHINE_LOCK}.${process.pid}`;
    await writeFile(mine, String(process.pid));
    try {
      await link(mine, MACHINE_LOCK);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      await rm(mine, { force: true });
    }
    const holder = await readPid(MACHINE_LOCK);
    if (holder === process.pid) {
      throw new Error('startGlusterd: this process already runs a glusterd; stop it first');
    }
    if (holder === undefined || (await commandLine(holder)) === undefined) {
      await rm(MACHINE_LOCK, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`glusterd is still in use by the tests of process ${holder}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function releaseMachineLock(): Promise<void> {
  if ((await readPid(MACHINE_LOCK)) === process.pid) await rm(MACHINE_LOCK, { force: true });
}

/**
 * Starts a real glusterd (foreground, our child) with one single-brick volume per spec. Refuses to run
 * beside another glusterd or over state it did not create, since both live in fixed system paths.
 */
export async function startGlusterd(volumes: GlusterVolumeSpec[]): Promise<RunningGlusterd> {
  await takeMachineLock();
  if (existsSync(join(STATE_DIR, 'glusterd.info')) || existsSync(SOCKET)) {
    await releaseMachineLock();
    throw new Error(
      `glusterd state exists (${STATE_DIR}/glusterd.info or ${SOCKET}): another glusterd runs, or a run crashed`,
    );
  }
  const runBefore = new Set(await listOrEmpty(RUN_DIR));
  const stateBefore = new Set(await listOrEmpty(STATE_DIR));
  const dir = await mkdtemp(join(tmpdir(), 'sv-gluster-'));
  const processes = new ProcessGroup();
  const started: string[] = [];
  /** Brick and quota daemons glusterd forked for our volumes (they are not our children). */
  const daemons: number[] = [];
  const daemon: ChildProcess = processes.spawn('glusterd', 'glusterd', [
    '-N',
    '-l',
    join(dir, 'glusterd.log'),
  ]);
  const brick = (volume: string) => join(dir, 'bricks', volume);

  const stop = async () => {
    const problems: string[] = [];
    const attempt = async (what: string, step: () => Promise<unknown>) => {
      await step().catch((err: Error) => problems.push(`${what}: ${err.message}`));
    };
    await attempt('hung FUSE clients', () => killHungFuseClients(dir));
    await attempt('unmount', () => unmountUnder(dir));
    // Stopping a volume is what ends its brick process; killing glusterd alone would orphan it.
    for (const volume of [...started].reverse()) {
      await attempt(`stop ${volume}`, () => gluster(['volume', 'stop', volume, 'force']));
      await attempt(`delete ${volume}`, () => gluster(['volume', 'delete', volume]));
    }
    // Hooks (glusterfind's delete hook) run detached and write into STATE_DIR: let them finish before the wipe.
    await attempt('hooks', () => waitForExit(isHook, 'glusterd hook scripts'));
    await processes.stopAll();
    await stopDaemons(daemons);
    // Anything still naming our temp dir (a brick, a FUSE client of a lazily unmounted mount) is ours.
    for (const pid of await findProcesses((argv) => argv.some((a) => a.includes(dir)))) {
      process.kill(pid, 'SIGKILL');
    }
    for (const entry of await listOrEmpty(STATE_DIR)) {
      if (!stateBefore.has(entry) && STATE_ENTRIES.includes(entry)) {
        await rm(join(STATE_DIR, entry), { recursive: true, force: true });
      }
    }
    for (const entry of await listOrEmpty(RUN_DIR)) {
      if (!runBefore.has(entry)) await rm(join(RUN_DIR, entry), { recursive: true, force: true });
    }
    await rm(SOCKET, { force: true });
    await attempt('logs', () => removeLogs(dir, started));
    if ((await mountsUnder(dir)).length === 0) await rm(dir, { recursive: true, force: true });
    else problems.push(`left ${dir} in place: mounts remain under it`);
    await releaseMachineLock();
    if (problems.length > 0) throw new Error(`glusterd cleanup: ${problems.join('; ')}`);
  };

  try {
    await waitUntil(
      async () => {
        if (daemon.exitCode !== null) throw new Error(`glusterd exited with ${daemon.exitCode}`);
        return (
          (await execa('gluster', ['--mode=script', 'pool', 'list'], { reject: false, stdin: 'ignore' }))
            .exitCode === 0
        );
      },
      'glusterd to answer',
      30_000,
    );
    for (const spec of volumes) {
      await mkdir(brick(spec.name), { recursive: true });
      // The brick must be named by the host name: /etc/hosts maps it to 127.0.0.1, which glusterd accepts as local.
      await gluster(['volume', 'create', spec.name, `${hostname()}:${brick(spec.name)}`, 'force']);
      started.push(spec.name);
      await gluster(['volume', 'start', spec.name]);
      if (spec.quota) {
        await gluster(['volume', 'quota', spec.name, 'enable']);
        await gluster(['volume', 'set', spec.name, 'features.hard-timeout', '0']);
        await gluster(['volume', 'set', spec.name, 'features.soft-timeout', '0']);
      }
      for (const file of await listOrEmpty(join(RUN_DIR, 'vols', spec.name))) {
        const pid = await readPid(join(RUN_DIR, 'vols', spec.name, file));
        if (pid) daemons.push(pid);
      }
    }
    const quotad = await readPid(join(RUN_DIR, 'quotad', 'quotad.pid'));
    if (quotad) daemons.push(quotad);
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }

  return {
    dir,
    server: '127.0.0.1',
    cli: gluster,
    quotaLimits: async (volume) =>
      parseQuotaList(await gluster(['volume', 'quota', volume, 'list', '--xml'])),
    brick,
    stop,
  };
}

/** SIGTERM, then SIGKILL, the recorded gluster daemons still alive; a zombie or a reused PID is left alone. */
async function stopDaemons(pids: number[]): Promise<void> {
  const ours = async (pid: number) => (await commandLine(pid))?.some((a) => a.includes('gluster')) ?? false;
  for (const pid of pids) if (await ours(pid)) process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 5000;
  for (const pid of pids) {
    while ((await ours(pid)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (await ours(pid)) process.kill(pid, 'SIGKILL');
  }
}

/** Removes the log files glusterfs wrote for our bricks, mounts and volumes (the directory itself is the package's). */
async function removeLogs(dir: string, volumes: string[]): Promise<void> {
  const prefix = logPrefix(dir);
  for (const sub of ['', 'bricks', 'quota_crawl']) {
    for (const entry of await listOrEmpty(join(LOG_DIR, sub))) {
      const ours = entry.startsWith(prefix) || volumes.some((v) => entry === `quota-mount-${v}.log`);
      if (ours) await rm(join(LOG_DIR, sub, entry), { force: true });
    }
  }
  for (const volume of volumes) {
    for (const sub of ['gfproxy', 'snaps'])
      await rm(join(LOG_DIR, sub, volume), { recursive: true, force: true });
  }
}

export interface GlusterInstance {
  name: string;
  volume: string;
  quota?: boolean;
  mountOptions?: string[];
  cliRemoteHost?: string;
}

/** Writes a --backends file with one glusterfs instance per entry, each reached by the controller through a mount. */
export async function writeGlusterBackends(
  file: string,
  server: string,
  instances: GlusterInstance[],
): Promise<string> {
  const backends = instances.map((i) => ({
    name: i.name,
    kind: 'glusterfs',
    server,
    volume: i.volume,
    mountOptions: i.mountOptions ?? [],
    quota: i.quota ?? true,
    ...(i.cliRemoteHost ? { cliRemoteHost: i.cliRemoteHost } : {}),
    controller: { access: 'mount' },
  }));
  await writeFile(file, stringify({ backends }));
  return file;
}
