import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unmountUnder } from './mount-cleanup.js';
import { alive, ProcessGroup } from './processes.js';

const GANESHA = '/usr/bin/ganesha.nfsd';
const PLUGINS_DIR = '/usr/lib/x86_64-linux-gnu/ganesha';
const RPCBIND = '/usr/sbin/rpcbind';
const DBUS_DAEMON = '/usr/bin/dbus-daemon';
const DBUS_SEND = '/usr/bin/dbus-send';
const NFS_LS = '/usr/bin/nfs-ls';
const NFS_CAT = '/usr/bin/nfs-cat';
const REQUIRED_FILES = [
  GANESHA,
  join(PLUGINS_DIR, 'libfsalvfs.so'),
  RPCBIND,
  DBUS_DAEMON,
  DBUS_SEND,
  NFS_LS,
  NFS_CAT,
];

const NFS_PORT = 2049;
const MOUNTD_PORT = 20048;
const RPCBIND_PORT = 111;
/** What `rpcbind -f` leaves behind when it stops; removed only when these tests started it. */
const RPCBIND_LEFTOVERS = [
  '/run/rpcbind.sock',
  '/run/rpcbind.lock',
  '/run/rpcbind/rpcbind.xdr',
  '/run/rpcbind/portmap.xdr',
];

/** Serialises test runs on this host: there is one NFS port and one rpcbind. */
const HOST_LOCK = join(tmpdir(), 'sharedvolume-csi-ganesha.lock');

/** The NFSv4 pseudo path of the one export. */
export const PSEUDO_PATH = '/export1';

export interface NfsEntry {
  name: string;
  /** As nfs-ls prints it, e.g. "drwxrwxr-x". */
  mode: string;
}

export interface NfsClientOptions {
  /** 3 (default) addresses the export by its real path, 4 by its pseudo path. */
  version?: 3 | 4;
}

export interface Ganesha {
  /** The exported directory on this host; NFSv3 clients mount it by this same path. */
  exportPath: string;
  pseudoPath: string;
  /** Lists a directory of the export (path relative to the export root) over the NFS protocol. */
  nfsLs(path?: string, options?: NfsClientOptions): Promise<NfsEntry[]>;
  /** Reads a file of the export over the NFS protocol. */
  nfsCat(path: string, options?: NfsClientOptions): Promise<string>;
  /** Stops exactly the processes start() started and removes its files. */
  stop(): Promise<void>;
}

export async function ganeshaInstalled(): Promise<boolean> {
  return REQUIRED_FILES.every((file) => existsSync(file));
}

/** For a mocha hook: skips the suite when nfs-ganesha or libnfs-utils is not installed. */
export async function skipUnlessGanesha(context: Mocha.Context): Promise<void> {
  if (!(await ganeshaInstalled())) context.skip();
}

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function waitUntil(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function dbusConfig(socket: string): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
`;
}

// Attr_Expiration_Time = 0: the driver (controller path mode) and the mount shim change the export
// directory beside ganesha, not through it, so ganesha must revalidate instead of serving cached listings.
function ganeshaConfig(exportPath: string, recoveryDir: string): string {
  return `NFS_CORE_PARAM {
  Bind_addr = 127.0.0.1; NFS_Port = ${NFS_PORT}; MNT_Port = ${MOUNTD_PORT}; Protocols = 3, 4;
  Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; Plugins_Dir = ${PLUGINS_DIR};
}
NFSv4 { Graceless = true; RecoveryBackend = fs; RecoveryRoot = ${recoveryDir}; Only_Numeric_Owners = true; }
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
  Export_Id = 1; Path = ${exportPath}; Pseudo = ${PSEUDO_PATH}; Access_Type = RW; Squash = No_Root_Squash;
  Protocols = 3, 4; Transports = TCP; SecType = sys; Attr_Expiration_Time = 0;
  FSAL { Name = VFS; }
}
`;
}

function nfsUrl(server: { exportPath: string }, path: string, version: 3 | 4): string {
  const relative = path.replace(/^\/+|\/+$/g, '');
  const base = version === 4 ? PSEUDO_PATH : server.exportPath;
  return `nfs://127.0.0.1${relative ? `${base}/${relative}` : base}${version === 4 ? '?version=4' : ''}`;
}

/** Parses nfs-ls lines: mode, links, uid, gid, size, name. */
export function parseNfsLs(output: string): NfsEntry[] {
  return output
    .split('\n')
    .map((line) => /^(\S+)\s+\d+\s+\d+\s+\d+\s+\d+ (.*)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ mode: m[1]!, name: m[2]! }))
    .filter((e) => e.name !== '.' && e.name !== '..');
}

async function nfsTool(tool: string, url: string): Promise<string> {
  const result = await execa(tool, [url], {
    reject: false,
    stdin: 'ignore',
    timeout: 15_000,
    stripFinalNewline: false,
  });
  if (result.exitCode !== 0 || result.timedOut) {
    throw new Error(
      `${tool} ${url} failed: ${(result.stderr || result.stdout).trim() || `exit code ${result.exitCode}`}`,
    );
  }
  return result.stdout;
}

/**
 * Takes the host-wide lock (a directory holding the owner's PID), waiting while another live test run
 * holds it, so that two runs never race for port 2049 or stop each other's rpcbind.
 */
async function acquireHostLock(timeoutMs = 45_000): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  const pidFile = join(HOST_LOCK, 'pid');
  for (;;) {
    try {
      await mkdir(HOST_LOCK);
      await writeFile(pidFile, String(process.pid));
      return () => rm(HOST_LOCK, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number(await readFile(pidFile, 'utf8').catch(() => '0'));
    const stale =
      holder > 0
        ? !alive(holder)
        : Date.now() - (await stat(HOST_LOCK).catch(() => ({ mtimeMs: 0 }))).mtimeMs > 10_000;
    if (stale) {
      await rm(HOST_LOCK, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline)
      throw new Error(`another test run (pid ${holder}) is using nfs-ganesha (${HOST_LOCK})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Starts nfs-ganesha (NFSv3 and NFSv4, VFS FSAL) on 127.0.0.1 with a private D-Bus daemon, and
 * rpcbind unless one already answers on 127.0.0.1. Everything lives in a fresh temp dir.
 */
export async function startGanesha(): Promise<Ganesha> {
  const releaseLock = await acquireHostLock();
  for (const port of [NFS_PORT, MOUNTD_PORT]) {
    if (await portAnswers(port)) {
      await releaseLock();
      throw new Error(`port ${port} on 127.0.0.1 is in use; cannot start nfs-ganesha`);
    }
  }
  const dir = await mkdtemp(join(tmpdir(), 'sv-ganesha-'));
  const exportPath = join(dir, 'export1');
  const server = new ProcessGroup();
  const support = new ProcessGroup();
  let ourRpcbindLeftovers: string[] = [];

  const stop = async () => {
    // ganesha first: it unregisters from rpcbind on its way out.
    await server.stopAll();
    await support.stopAll();
    for (const file of ourRpcbindLeftovers) await rm(file, { force: true });
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
    await releaseLock();
  };

  const nfsLs = async (path = '', options: NfsClientOptions = {}) =>
    parseNfsLs(await nfsTool(NFS_LS, nfsUrl({ exportPath }, path, options.version ?? 3)));
  const nfsCat = (path: string, options: NfsClientOptions = {}) =>
    nfsTool(NFS_CAT, nfsUrl({ exportPath }, path, options.version ?? 3));

  try {
    await mkdir(exportPath);
    await mkdir(join(dir, 'recovery'));
    const dbusSocket = join(dir, 'dbus.sock');
    await writeFile(join(dir, 'dbus.conf'), dbusConfig(dbusSocket));
    support.spawn('dbus-daemon', DBUS_DAEMON, [`--config-file=${join(dir, 'dbus.conf')}`, '--nofork']);
    await waitUntil(async () => existsSync(dbusSocket), 'the private dbus-daemon');

    if (!(await portAnswers(RPCBIND_PORT))) {
      ourRpcbindLeftovers = RPCBIND_LEFTOVERS.filter((file) => !existsSync(file));
      support.spawn('rpcbind', RPCBIND, ['-f']);
      await waitUntil(() => portAnswers(RPCBIND_PORT), 'rpcbind');
    }

    await writeFile(join(dir, 'ganesha.conf'), ganeshaConfig(exportPath, join(dir, 'recovery')));
    const env = { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${dbusSocket}` };
    const ganesha = server.spawn(
      'ganesha.nfsd',
      GANESHA,
      [
        '-F',
        '-f',
        join(dir, 'ganesha.conf'),
        '-L',
        join(dir, 'ganesha.log'),
        '-p',
        join(dir, 'ganesha.pid'),
        '-N',
        'NIV_EVENT',
      ],
      { env },
    );
    const answers = async (command: string, args: string[]) => {
      if (ganesha.exitCode !== null) throw new Error(`ganesha.nfsd exited with ${ganesha.exitCode}`);
      return (
        (await execa(command, args, { reject: false, stdin: 'ignore', timeout: 5000, env })).exitCode === 0
      );
    };
    const showExports = [
      '--system',
      '--print-reply',
      '--dest=org.ganesha.nfsd',
      '/org/ganesha/nfsd/ExportMgr',
      'org.ganesha.nfsd.exportmgr.ShowExports',
    ];
    await waitUntil(() => answers(DBUS_SEND, showExports), 'ganesha on D-Bus');
    await waitUntil(() => answers(NFS_LS, [nfsUrl({ exportPath }, '', 3)]), 'the export over NFSv3');
    await waitUntil(() => answers(NFS_LS, [nfsUrl({ exportPath }, '', 4)]), 'the export over NFSv4');
  } catch (err) {
    const log = await readFile(join(dir, 'ganesha.log'), 'utf8').catch(() => '');
    await stop();
    throw new Error(
      `nfs-ganesha did not start: ${(err as Error).message}\n${log.split('\n').slice(-15).join('\n')}`,
    );
  }
  return { exportPath, pseudoPath: PSEUDO_PATH, nfsLs, nfsCat, stop };
}
