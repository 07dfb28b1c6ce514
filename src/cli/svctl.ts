#!/usr/bin/env node
import { status, type ServiceError } from '@grpc/grpc-js';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { createHash } from 'node:crypto';
import { rmdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Volume__Output } from '../generated/csi/v1/Volume.js';
import type { VolumeCondition__Output } from '../generated/csi/v1/VolumeCondition.js';
import { parseEndpoint } from '../rpc/endpoint.js';
import { VERSION } from '../version.js';
import { connectCsi, rpc, type CsiClients } from './csi-client.js';
import { formatBytes, formatFields, formatTable, parseSize } from './format.js';
import { formatSyncDetails, formatSyncTable, progressBar } from './sync-format.js';
import type { VolumeSyncState } from '../populator/service.js';

interface GlobalOptions {
  endpoint: string;
  json: boolean;
  stagingDir: string;
}

/** What a command produced: the CSI response(s) for --json, and the text for people. */
interface Output {
  json: unknown;
  text: string;
}

// ---- argument parsers (their errors are usage errors: exit 2) ----

function usageParser<T>(parse: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return parse(value);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

function collectParameter(pair: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = pair.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`expected key=value, got "${pair}"`);
  return { ...previous, [pair.slice(0, eq)]: pair.slice(eq + 1) };
}

function nonNegativeInteger(what: string): (value: string) => number {
  return (value) => {
    if (!/^\d+$/.test(value))
      throw new InvalidArgumentError(`${what} must be a non-negative integer, got "${value}"`);
    return Number(value);
  };
}

// ---- shared pieces ----

const mountCapability = (group?: number) => ({
  mount: { fs_type: '', mount_flags: [], volume_mount_group: group === undefined ? '' : String(group) },
  access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' as const },
});

/** One staging directory per volume, named so that publish and unpublish agree without any state. */
function stagingPath(stagingDir: string, volumeId: string): string {
  return join(resolve(stagingDir), createHash('sha256').update(volumeId).digest('hex').slice(0, 16));
}

const capacity = (bytes: string) => (Number(bytes) > 0 ? formatBytes(bytes) : 'unspecified');

const context = (ctx: Record<string, string>) =>
  Object.entries(ctx)
    .map(([k, v]) => `${k}=${v}`)
    .join(',') || '-';

const condition = (c: VolumeCondition__Output | null | undefined) =>
  c ? `${c.abnormal ? 'ABNORMAL' : 'healthy'}${c.message ? ` (${c.message})` : ''}` : 'not reported';

const volumeFields = (v: Volume__Output): [string, string][] => [
  ['volume', v.volume_id],
  ['capacity', capacity(v.capacity_bytes)],
  ['context', context(v.volume_context)],
];

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as ServiceError).code === 'number' && 'details' in err;
}

/** Null when the driver does not serve that service (e.g. --mode node has no controller). */
async function unlessUnimplemented<T>(call: Promise<T>): Promise<T | null> {
  try {
    return await call;
  } catch (err) {
    if (isServiceError(err) && err.code === status.UNIMPLEMENTED) return null;
    throw err;
  }
}

// ---- commands ----

const DEFAULT_SIZE = '1Gi';

/** --size, else 1Gi; with only --limit, no required size, so that a small limit alone is not refused. */
function requiredBytes(opts: { size?: number; limit?: number }): number {
  return opts.size ?? (opts.limit === undefined ? parseSize(DEFAULT_SIZE) : 0);
}

async function createVolume(
  csi: CsiClients,
  name: string,
  opts: { size?: number; limit?: number; parameter?: Record<string, string> },
): Promise<Output> {
  const res = await rpc(csi.controller, 'CreateVolume', {
    name,
    capacity_range: { required_bytes: requiredBytes(opts), limit_bytes: opts.limit ?? 0 },
    volume_capabilities: [mountCapability()],
    parameters: opts.parameter ?? {},
  });
  return { json: res, text: formatFields(volumeFields(res.volume!)) };
}

async function deleteVolume(csi: CsiClients, volumeId: string): Promise<Output> {
  const res = await rpc(csi.controller, 'DeleteVolume', { volume_id: volumeId });
  return { json: res, text: `deleted ${volumeId}` };
}

async function listVolumes(csi: CsiClients, opts: { max?: number; token?: string }): Promise<Output> {
  const paging = opts.max !== undefined || opts.token !== undefined;
  const entries = [];
  let token = opts.token ?? '';
  do {
    const page = await rpc(csi.controller, 'ListVolumes', {
      max_entries: opts.max ?? 0,
      starting_token: token,
    });
    entries.push(...page.entries);
    token = page.next_token;
  } while (token && !paging);
  const rows = entries.map(({ volume: v }) => [
    v!.volume_id,
    capacity(v!.capacity_bytes),
    context(v!.volume_context),
  ]);
  let text = rows.length > 0 ? formatTable(['ID', 'CAPACITY', 'CONTEXT'], rows) : 'No volumes.';
  if (token) text += `\n\nMore volumes: svctl list --max ${opts.max ?? 0} --token ${token}`;
  return { json: { entries, next_token: token }, text };
}

async function statVolume(csi: CsiClients, volumeId: string, opts: { path?: string }): Promise<Output> {
  const volume = await rpc(csi.controller, 'ControllerGetVolume', { volume_id: volumeId });
  const json: Record<string, unknown> = { ControllerGetVolume: volume };
  let text = formatFields([
    ...volumeFields(volume.volume!),
    ['condition', condition(volume.status?.volume_condition)],
  ]);
  if (opts.path) {
    const path = resolve(opts.path);
    const stats = await rpc(csi.node, 'NodeGetVolumeStats', { volume_id: volumeId, volume_path: path });
    json.NodeGetVolumeStats = stats;
    const rows = stats.usage.map((u) => {
      const show = u.unit === 'BYTES' ? formatBytes : String;
      return [u.unit.toLowerCase(), show(u.total), show(u.used), show(u.available)];
    });
    text += `\n\n${formatFields([
      ['path', path],
      ['condition', condition(stats.volume_condition)],
    ])}\n\n${formatTable(['USAGE', 'TOTAL', 'USED', 'AVAILABLE'], rows)}`;
  }
  return { json, text };
}

async function publishVolume(
  csi: CsiClients,
  volumeId: string,
  target: string,
  opts: { readonly?: boolean; group?: number; stagingDir: string },
): Promise<Output> {
  // A CO passes the context CreateVolume returned (it holds e.g. NFS mount options); ask the controller for it.
  const volume = await unlessUnimplemented(
    rpc(csi.controller, 'ControllerGetVolume', { volume_id: volumeId }),
  );
  const common = {
    volume_id: volumeId,
    staging_target_path: stagingPath(opts.stagingDir, volumeId),
    volume_capability: mountCapability(opts.group),
    volume_context: volume?.volume?.volume_context ?? {},
  };
  const targetPath = resolve(target);
  const staged = await rpc(csi.node, 'NodeStageVolume', common);
  let published;
  try {
    published = await rpc(csi.node, 'NodePublishVolume', {
      ...common,
      target_path: targetPath,
      readonly: !!opts.readonly,
    });
  } catch (err) {
    // Leave nothing mounted when the publish half fails.
    await rpc(csi.node, 'NodeUnstageVolume', common).catch(() => undefined);
    throw err;
  }
  return {
    json: { NodeStageVolume: staged, NodePublishVolume: published },
    text: formatFields([
      ['published', `${volumeId} at ${targetPath}${opts.readonly ? ' (read-only)' : ''}`],
      ['staged at', common.staging_target_path],
    ]),
  };
}

async function unpublishVolume(
  csi: CsiClients,
  volumeId: string,
  target: string,
  stagingDir: string,
): Promise<Output> {
  const targetPath = resolve(target);
  const staging = stagingPath(stagingDir, volumeId);
  const unpublished = await rpc(csi.node, 'NodeUnpublishVolume', {
    volume_id: volumeId,
    target_path: targetPath,
  });
  const unstaged = await rpc(csi.node, 'NodeUnstageVolume', {
    volume_id: volumeId,
    staging_target_path: staging,
  });
  // The CO owns the staging directory: remove it once nothing is mounted there.
  await rmdir(staging).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  return {
    json: { NodeUnpublishVolume: unpublished, NodeUnstageVolume: unstaged },
    text: `unpublished ${volumeId} from ${targetPath}`,
  };
}

async function pluginInfo(csi: CsiClients): Promise<Output> {
  const json = {
    GetPluginInfo: await rpc(csi.identity, 'GetPluginInfo', {}),
    GetPluginCapabilities: await rpc(csi.identity, 'GetPluginCapabilities', {}),
    Probe: await rpc(csi.identity, 'Probe', {}),
    ControllerGetCapabilities: await unlessUnimplemented(
      rpc(csi.controller, 'ControllerGetCapabilities', {}),
    ),
    NodeGetCapabilities: await unlessUnimplemented(rpc(csi.node, 'NodeGetCapabilities', {})),
    NodeGetInfo: await unlessUnimplemented(rpc(csi.node, 'NodeGetInfo', {})),
  };
  const list = (items: string[] | undefined) => (items ? items.join(', ') || '-' : 'not served');
  const pluginCaps = json.GetPluginCapabilities.capabilities.map(
    (c) => c.service?.type ?? `VOLUME_EXPANSION_${c.volume_expansion?.type}`,
  );
  const topology = json.NodeGetInfo?.accessible_topology?.segments ?? {};
  const text = formatFields([
    ['driver', `${json.GetPluginInfo.name} ${json.GetPluginInfo.vendor_version}`],
    ['ready', String(json.Probe.ready?.value ?? true)],
    ['plugin', list(pluginCaps)],
    ['controller', list(json.ControllerGetCapabilities?.capabilities.map((c) => c.rpc?.type ?? '?'))],
    ['node', list(json.NodeGetCapabilities?.capabilities.map((c) => c.rpc?.type ?? '?'))],
    ['node id', json.NodeGetInfo?.node_id ?? 'not served'],
    ['topology', context(topology)],
  ]);
  return { json, text };
}

// ---- populator: the controller's loopback admin endpoint, not CSI ----

const DEFAULT_ADMIN = '127.0.0.1:9810';
const WAIT_POLL_MS = 250;
const WAIT_LIMIT_MS = 60 * 60_000;

async function admin<T>(address: string, method: 'GET' | 'POST', path: string): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`http://${address}${path}`, { method, signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    const cause = ((err as Error).cause as { code?: string } | undefined)?.code ?? (err as Error).message;
    throw new Error(
      `cannot reach the populator's admin endpoint at ${address} (${cause}): run svctl in the controller pod (kubectl exec) or through kubectl port-forward`,
    );
  }
  const body = (await res.json().catch(() => ({}))) as { error?: string };
  if (!res.ok) throw new Error(body.error ?? `HTTP ${res.status}`);
  return body as T;
}

async function volumeSyncState(address: string, volumeId: string): Promise<VolumeSyncState> {
  const path = `/sync/status/${encodeURIComponent(volumeId)}`;
  return (await admin<{ volumes: VolumeSyncState[] }>(address, 'GET', path)).volumes[0]!;
}

async function syncStatus(address: string, volumeId: string | undefined): Promise<Output> {
  const path = volumeId ? `/sync/status/${encodeURIComponent(volumeId)}` : '/sync/status';
  const res = await admin<{ volumes: VolumeSyncState[] }>(address, 'GET', path);
  const text = volumeId
    ? formatSyncDetails(res.volumes[0]!, Date.now())
    : formatSyncTable(res.volumes, Date.now());
  return { json: res, text };
}

async function syncVolume(
  address: string,
  volumeId: string,
  opts: { wait?: boolean; json: boolean },
): Promise<Output> {
  const before = opts.wait ? (await volumeSyncState(address, volumeId)).status?.lastAttempt : undefined;
  const res = await admin<{ triggered: string[] }>(address, 'POST', `/sync/${encodeURIComponent(volumeId)}`);
  if (!opts.wait) return { json: res, text: `sync of ${volumeId} triggered` };
  const done = await waitForSync(address, volumeId, before, opts.json ? () => undefined : showProgress());
  const error = done.status?.lastError;
  if (error) throw new Error(`sync of ${volumeId} failed: ${error.reason}: ${error.message}`);
  return { json: done, text: formatSyncDetails(done, Date.now()) };
}

/** Polls until an attempt newer than `before` has finished, reporting progress on the way. */
async function waitForSync(
  address: string,
  volumeId: string,
  before: string | undefined,
  report: (line: string) => void,
): Promise<VolumeSyncState> {
  const deadline = Date.now() + WAIT_LIMIT_MS;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, WAIT_POLL_MS));
    const state = await volumeSyncState(address, volumeId);
    if (state.running) report(progressBar(state.running));
    const status = state.status;
    if (status?.lastAttempt && status.lastAttempt !== before && !status.inProgress && !state.running) {
      return state;
    }
  }
  throw new Error(`sync of ${volumeId} did not finish within an hour`);
}

/** Progress lines: redrawn in place on a terminal, one per change otherwise. */
function showProgress(): (line: string) => void {
  let last = '';
  return (line) => {
    if (line === last) return;
    last = line;
    if (process.stdout.isTTY) process.stdout.write(`\r${line}\x1b[K`);
    else console.log(line);
  };
}

async function runAdmin(command: Command, fn: (address: string, json: boolean) => Promise<Output>) {
  const opts = command.optsWithGlobals<{ admin: string; json: boolean }>();
  const out = await fn(opts.admin, opts.json);
  if (process.stdout.isTTY && !opts.json) process.stdout.write('\r\x1b[K');
  console.log(opts.json ? JSON.stringify(out.json, null, 2) : out.text);
}

// ---- wiring ----

type Run = (csi: CsiClients, global: GlobalOptions) => Promise<Output>;

/** Connects, runs one command, prints its output in the chosen form, and always closes the channel. */
async function run(command: Command, fn: Run): Promise<void> {
  const global = command.optsWithGlobals<GlobalOptions>();
  const csi = connectCsi(global.endpoint);
  try {
    const out = await fn(csi, global);
    console.log(global.json ? JSON.stringify(out.json, null, 2) : out.text);
  } finally {
    csi.close();
  }
}

function buildProgram(): Command {
  const program = new Command()
    .name('svctl')
    .description('Operate a sharedvolume-csi driver over its CSI socket')
    .version(VERSION)
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(`svctl: ${str.replace(/^error: /, '')}`) })
    .addOption(
      new Option('--endpoint <url>', 'driver socket: unix:///path.sock or tcp://host:port')
        .env('SHAREDVOLUME_ENDPOINT')
        .default('unix:///run/sharedvolume-csi/csi.sock')
        .argParser(usageParser((value) => (parseEndpoint(value), value))),
    )
    .option('--json', 'print the CSI response as JSON', false)
    .option(
      '--staging-dir <dir>',
      'parent of the staging directories publish creates',
      '/var/lib/sharedvolume/svctl-staging',
    );

  const size = usageParser(parseSize);
  program
    .command('create <name>')
    .description('create a volume (CreateVolume, MULTI_NODE_MULTI_WRITER)')
    .option(
      '--size <size>',
      `required capacity: bytes, or with a suffix Ki/Mi/Gi/Ti or K/M/G/T (default: ${DEFAULT_SIZE} unless --limit is given)`,
      size,
    )
    .option('--limit <size>', 'largest acceptable capacity (limit_bytes)', size)
    .option('-p, --parameter <key=value>', 'StorageClass parameter (repeatable)', collectParameter)
    .action((name: string, opts, cmd: Command) => run(cmd, (csi) => createVolume(csi, name, opts)));

  program
    .command('delete <volume-id>')
    .description('delete a volume (DeleteVolume)')
    .action((id: string, _opts, cmd: Command) => run(cmd, (csi) => deleteVolume(csi, id)));

  program
    .command('list')
    .description('list volumes (ListVolumes; all pages unless --max or --token is given)')
    .option('--max <n>', 'volumes per page', nonNegativeInteger('--max'))
    .option('--token <token>', 'continue from this next_token')
    .action((opts, cmd: Command) => run(cmd, (csi) => listVolumes(csi, opts)));

  program
    .command('stat <volume-id>')
    .description('volume capacity and condition (ControllerGetVolume); usage at --path (NodeGetVolumeStats)')
    .option('--path <target>', 'a path where the volume is published')
    .action((id: string, opts, cmd: Command) => run(cmd, (csi) => statVolume(csi, id, opts)));

  program
    .command('publish <volume-id> <target>')
    .description('mount a volume at target (NodeStageVolume + NodePublishVolume)')
    .option('--readonly', 'mount read-only')
    .option(
      '--group <gid>',
      'make the volume writable by this group (volume_mount_group)',
      nonNegativeInteger('--group'),
    )
    .action((id: string, target: string, opts, cmd: Command) =>
      run(cmd, (csi, global) => publishVolume(csi, id, target, { ...opts, stagingDir: global.stagingDir })),
    );

  program
    .command('unpublish <volume-id> <target>')
    .description('unmount a volume from target (NodeUnpublishVolume + NodeUnstageVolume)')
    .action((id: string, target: string, _opts, cmd: Command) =>
      run(cmd, (csi, global) => unpublishVolume(csi, id, target, global.stagingDir)),
    );

  program
    .command('sync <volume-id|status> [volume-id]')
    .description(
      "populator: 'sync VOLUME' syncs a volume now; 'sync status [VOLUME]' shows revisions, last success, last error and progress",
    )
    .addOption(
      new Option('--admin <host:port>', "the controller's populator admin endpoint (loopback)")
        .env('SHAREDVOLUME_ADMIN_ADDRESS')
        .default(DEFAULT_ADMIN),
    )
    .option('--wait', 'sync VOLUME: follow the sync with a progress bar until it ends')
    .action((first: string, second: string | undefined, opts: { wait?: boolean }, cmd: Command) => {
      if (first !== 'status' && second !== undefined) {
        cmd.error(`usage: svctl sync VOLUME | svctl sync status [VOLUME]`, { exitCode: 2 });
      }
      return runAdmin(cmd, (address, json) =>
        first === 'status' ? syncStatus(address, second) : syncVolume(address, first, { ...opts, json }),
      );
    });

  program
    .command('info')
    .description('plugin identity, capabilities, readiness and node info')
    .action((_opts, cmd: Command) => run(cmd, (csi) => pluginInfo(csi)));

  return program;
}

/** Exit codes: 0 success, 1 the driver or the system refused, 2 the command line was wrong. */
function exitCodeFor(err: unknown): number {
  if (err instanceof CommanderError) {
    // Commander already printed the message (or the help/version it was asked for).
    return err.exitCode === 0 ? 0 : 2;
  }
  // grpc-js ends connection failures with an empty "Resolution note:"; drop it.
  if (isServiceError(err))
    console.error(`svctl: ${status[err.code]}: ${err.details.replace(/\.? Resolution note: ?$/, '')}`);
  else console.error(`svctl: ${(err as Error).message ?? String(err)}`);
  return 1;
}

buildProgram()
  .parseAsync()
  .catch((err: unknown) => {
    process.exitCode = exitCodeFor(err);
  });
