import { randomBytes } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'winston';
import { lazyKube, type KubeClientFactory, type KubeEvent } from '../kube/client.js';
import { readSourceCredentials } from '../kube/secrets.js';
import type { SecretRef } from '../kube/source.js';
import type { SyncMetrics } from '../metrics/registry.js';
import type { SourceCredentials } from './credentials.js';
import { SyncError, syncError, toSyncError } from './errors.js';
import { Lease } from './lease.js';
import {
  readRegistration,
  registrationExists,
  removeRegistration,
  removeStateDir,
  scanRegistrations,
  stateDirUnder,
  writeRegistration,
  type VolumeRegistration,
} from './registration.js';
import { dueIn, Scheduler } from './scheduler.js';
import type { SyncProgress } from './source.js';
import type { SourceSpec } from './spec.js';
import { readSyncStatus, type SyncStatus } from './state.js';
import { syncOnce, type SyncResult } from './sync.js';

/**
 * Keeps populated volumes in sync: the controller's side of the populator engine.
 *
 * - register/unregister: CreateVolume and DeleteVolume record a volume's source beside its sync
 *   state on the backend; start() rebuilds the schedule from those files (and rescans them, so a
 *   replica also takes over volumes another replica created).
 * - Each sync holds the volume's lease (lease.ts): one replica syncs a volume at a time.
 * - Periodic syncs every syncInterval plus jitter, retries with exponential backoff, all computed
 *   from the shared status (scheduler.ts); syncNow for svctl and the webhook.
 * - Credentials are read from the Secret at every sync; outcomes go to metrics, logs and Events.
 */

export interface PopulatorServiceOptions {
  logger: Logger;
  /** Parents of the volumes' sync state directories, one per backend (`syncStateRoot(metadataDir)`). */
  stateRoots: () => Promise<string[]>;
  metrics?: SyncMetrics;
  kube?: KubeClientFactory;
  /** Unique per process; default `<host>/<pid>/<random>`. */
  owner?: string;
  leaseDurationMs?: number;
  /** How often the state roots are scanned for volumes registered by other replicas. */
  rescanIntervalMs?: number;
  /** Wait between attempts at a lease another replica holds (sync now, initial fill, delete). */
  leaseRetryMs?: number;
}

export interface FillOptions {
  signal?: AbortSignal;
  /** CreateVolume's provisioner secrets, used instead of the Secret for this sync. */
  credentials?: SourceCredentials;
}

/** What `svctl sync status` shows: never a credential, only the Secret's name. */
export interface VolumeSyncState {
  volume: string;
  source: Record<string, string>;
  syncIntervalSeconds: number;
  syncMode: string;
  publish: string;
  secretRef?: SecretRef;
  pvc?: { namespace: string; name: string };
  status?: SyncStatus;
  /** A sync this replica is running now. */
  running?: SyncProgress & { since: string };
  /** The replica holding the lease, while it is valid. */
  lease?: { owner: string; expiresAt: string };
  nextSync?: string;
}

interface Run {
  abort: AbortController;
  done: Promise<SyncResult>;
  since: number;
  progress?: SyncProgress;
}

interface Entry {
  reg: VolumeRegistration;
  root: string;
  run?: Run;
  /** Sync now was asked: sync as soon as the lease is free, whatever the schedule says. */
  forced: boolean;
  /** Sync now was asked while a sync ran: run another right after it. */
  rerun: boolean;
  pvcUid?: string;
}

/** Another replica holds the lease: not a failure of the sync. */
class LeaseHeld extends SyncError {
  constructor() {
    super('busy', 'another controller replica is syncing this volume');
  }
}

const DEFAULT_LEASE_MS = 60_000;
const STOP_GRACE_MS = 5000;

export class PopulatorService {
  private readonly entries = new Map<string, Entry>();
  private readonly scheduler = new Scheduler((id) => this.background(this.tick(id), id));
  private readonly stopping = new AbortController();
  private readonly pending = new Set<Promise<unknown>>();
  private readonly kube: KubeClientFactory;
  private readonly owner: string;
  private readonly leaseMs: number;
  private readonly leaseRetryMs: number;
  private rescanTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: PopulatorServiceOptions) {
    this.kube = options.kube ?? lazyKube();
    this.owner = options.owner ?? `${hostname()}/${process.pid}/${randomBytes(3).toString('hex')}`;
    this.leaseMs = options.leaseDurationMs ?? DEFAULT_LEASE_MS;
    this.leaseRetryMs = options.leaseRetryMs ?? 1000;
  }

  // ---- lifecycle ----

  /** Rebuilds the schedule from the registrations on the backends, then keeps rescanning them. */
  async start(): Promise<void> {
    await this.rescan();
    this.rescanTimer = setInterval(
      () => this.background(this.rescan(), 'rescan'),
      this.options.rescanIntervalMs ?? 60_000,
    );
    this.rescanTimer.unref();
  }

  /** Aborts in-flight syncs (their last good content stays) and releases their leases. */
  async stop(): Promise<void> {
    this.stopping.abort();
    clearInterval(this.rescanTimer);
    this.scheduler.clear();
    for (const entry of this.entries.values()) entry.run?.abort.abort();
    await Promise.allSettled([...this.entries.values()].map((e) => e.run?.done));
    // Events still being posted get a moment, not the API call's full timeout.
    await Promise.race([
      Promise.allSettled([...this.pending]),
      sleep(STOP_GRACE_MS, undefined, { ref: false }),
    ]);
  }

  // ---- the API CreateVolume / DeleteVolume / svctl / the webhook use ----

  /**
   * Records a populated volume on the backend and schedules it. The volume directory must exist
   * (syncs never create it). Call initialFill next; the timer set here only catches a fill that
   * never happened (a controller that died first).
   */
  async register(reg: VolumeRegistration): Promise<void> {
    await mkdir(reg.stateDir, { recursive: true, mode: 0o700 });
    await writeRegistration(reg);
    const entry = this.track(reg, dirname(reg.stateDir));
    const status = await readSyncStatus(reg.stateDir);
    if (!entry.run) this.scheduler.schedule(reg.id, status?.lastAttempt ? 0 : this.leaseMs);
  }

  /**
   * Fills a registered volume now and resolves when it is done: the SyncResult, or a SyncError
   * (`permanent` ones need the user: statusForSyncError gives the gRPC code). Waits for the lease
   * if another replica is syncing the same volume. The schedule continues afterwards either way.
   */
  async initialFill(volumeId: string, options: FillOptions = {}): Promise<SyncResult> {
    const entry = await this.find(volumeId);
    if (!entry) throw syncError('not-found', `volume ${volumeId} is not registered with the populator`);
    this.scheduler.cancel(volumeId);
    try {
      return await this.sync(entry, { waitForLease: true, ...options });
    } finally {
      this.background(this.scheduleNext(entry), volumeId);
    }
  }

  /** Starts a sync as soon as possible. False when no such volume is registered. */
  async syncNow(volumeId: string): Promise<boolean> {
    const entry = await this.find(volumeId);
    if (!entry) return false;
    if (entry.run) entry.rerun = true;
    else {
      entry.forced = true;
      this.scheduler.schedule(volumeId, 0);
    }
    return true;
  }

  /**
   * Stops syncing a volume and removes its sync state. Call it before deleting the volume's
   * directory: it waits until no replica syncs the volume any more (another replica notices the
   * missing registration at its next lease renewal and stops). Throws SyncError `busy` when that
   * takes longer than a lease; the call may simply be retried.
   */
  async unregister(volumeId: string, stateDir?: string): Promise<void> {
    const entry = this.entries.get(volumeId);
    const dir = entry?.reg.stateDir ?? stateDir ?? (await this.existingStateDir(volumeId));
    if (!dir) return;
    await removeRegistration(dir);
    this.forget(volumeId);
    if (entry?.run) {
      entry.run.abort.abort();
      await entry.run.done.catch(() => undefined);
    }
    const lease = new Lease(dir, { owner: this.owner, durationMs: this.leaseMs });
    await this.takeLease(lease, AbortSignal.timeout(this.leaseMs * 2)).catch((err: unknown) => {
      throw err instanceof SyncError && err.reason === 'timeout'
        ? syncError('busy', 'another controller replica is still syncing this volume; retry')
        : err;
    });
    await removeStateDir(dir);
  }

  /** Sync state of one volume (empty if unknown) or of every volume this replica schedules. */
  async status(volumeId?: string): Promise<VolumeSyncState[]> {
    const entries = volumeId ? [await this.find(volumeId)] : [...this.entries.values()];
    const known = entries.filter((e): e is Entry => e !== undefined);
    return Promise.all(known.map((e) => this.describe(e)));
  }

  /** Registered git volumes, for matching a push webhook's repository against. */
  gitVolumes(): { id: string; url: string; ref: string }[] {
    return [...this.entries.values()]
      .filter((e) => e.reg.spec.type === 'git')
      .map((e) => ({ id: e.reg.id, url: e.reg.spec.git!.url, ref: e.reg.spec.git!.ref }));
  }

  // ---- scheduling ----

  private async tick(id: string): Promise<void> {
    const entry = this.entries.get(id);
    if (!entry || !this.live(entry)) return;
    if (!entry.forced) {
      const delay = await this.dueIn(entry);
      if (!this.live(entry)) return;
      // Another replica synced meanwhile: its status moved the due time.
      if (!entry.forced && (delay === undefined || delay > 1000)) return this.scheduleAfter(entry, delay);
    }
    const forced = entry.forced;
    entry.forced = false;
    try {
      await this.sync(entry, { waitForLease: false });
    } catch (err) {
      if (err instanceof LeaseHeld) {
        entry.forced = forced;
        return this.scheduleAfter(entry, forced ? this.leaseRetryMs : this.leaseMs / 2);
      }
    }
    await this.scheduleNext(entry);
  }

  private async scheduleNext(entry: Entry): Promise<void> {
    if (!this.live(entry)) return;
    if (entry.rerun) {
      entry.rerun = false;
      entry.forced = true;
      return this.scheduleAfter(entry, 0);
    }
    const delay = await this.dueIn(entry);
    // A sync now may have been asked (and scheduled) meanwhile: keep it.
    if (this.live(entry) && !entry.forced) this.scheduleAfter(entry, delay);
  }

  /** Still registered here, not syncing, and the service is not stopping. */
  private live(entry: Entry): boolean {
    return !this.stopping.signal.aborted && this.entries.get(entry.reg.id) === entry && !entry.run;
  }

  private scheduleAfter(entry: Entry, delay: number | undefined): void {
    if (delay === undefined) this.scheduler.cancel(entry.reg.id);
    else this.scheduler.schedule(entry.reg.id, delay);
  }

  private async dueIn(entry: Entry): Promise<number | undefined> {
    const status = await readSyncStatus(entry.reg.stateDir).catch(() => undefined);
    return dueIn(status, entry.reg.spec.syncInterval, Date.now());
  }

  // ---- one sync ----

  /** One sync at a time per volume in this process, under the lease across processes. */
  private async sync(entry: Entry, options: FillOptions & { waitForLease: boolean }): Promise<SyncResult> {
    while (entry.run) await entry.run.done.catch(() => undefined);
    const run: Run = { abort: new AbortController(), since: Date.now(), done: Promise.resolve(undefined!) };
    entry.run = run;
    run.done = this.leasedSync(entry, run, options);
    try {
      return await run.done;
    } finally {
      if (entry.run === run) entry.run = undefined;
    }
  }

  private async leasedSync(
    entry: Entry,
    run: Run,
    options: FillOptions & { waitForLease: boolean },
  ): Promise<SyncResult> {
    const signal = AbortSignal.any(
      [run.abort.signal, this.stopping.signal, options.signal].filter((s): s is AbortSignal => !!s),
    );
    const lease = new Lease(entry.reg.stateDir, { owner: this.owner, durationMs: this.leaseMs });
    if (options.waitForLease) await this.takeLease(lease, signal);
    else if (!(await lease.tryAcquire())) throw new LeaseHeld();
    const keeper = this.keepLease(lease, entry, run);
    try {
      if (!(await registrationExists(entry.reg.stateDir))) {
        throw syncError('aborted', 'the volume is no longer registered');
      }
      // Never recreate a volume that was deleted behind the registration's back.
      if (!(await isDirectory(entry.reg.volumeDir))) {
        throw syncError('not-found', `the volume directory ${entry.reg.volumeDir} does not exist`);
      }
      return await this.runEngine(entry, run, signal, options.credentials);
    } finally {
      clearInterval(keeper);
      await lease.release().catch(() => undefined);
    }
  }

  private async takeLease(lease: Lease, signal: AbortSignal): Promise<void> {
    while (!(await lease.tryAcquire())) {
      try {
        await sleep(this.leaseRetryMs, undefined, { signal });
      } catch (err) {
        throw toSyncError(err, signal);
      }
    }
  }

  /** Renews the lease while the sync runs; a lost lease or a removed registration ends the sync. */
  private keepLease(lease: Lease, entry: Entry, run: Run): NodeJS.Timeout {
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      void (async () => {
        const kept =
          (await lease.renew().catch(() => false)) && (await registrationExists(entry.reg.stateDir));
        if (!kept) {
          this.options.logger.warn('sync stopped: lease lost or volume unregistered', {
            volume: entry.reg.id,
          });
          run.abort.abort();
        }
      })().finally(() => (busy = false));
    }, this.leaseMs / 3);
    timer.unref();
    return timer;
  }

  private async runEngine(
    entry: Entry,
    run: Run,
    signal: AbortSignal,
    credentials: SourceCredentials | undefined,
  ): Promise<SyncResult> {
    const { reg } = entry;
    const before = await readSyncStatus(reg.stateDir).catch(() => undefined);
    const started = performance.now();
    try {
      const result = await syncOnce({
        spec: reg.spec,
        volumeDir: reg.volumeDir,
        stateDir: reg.stateDir,
        signal,
        onProgress: (progress) => (run.progress = progress),
        ...this.credentialSource(reg, credentials),
      });
      this.succeeded(entry, result, (performance.now() - started) / 1000, before);
      return result;
    } catch (err) {
      const failure = toSyncError(err, signal);
      if (failure.reason !== 'aborted') this.failed(entry, failure, (performance.now() - started) / 1000);
      throw failure;
    }
  }

  private credentialSource(reg: VolumeRegistration, credentials: SourceCredentials | undefined) {
    if (credentials) return { credentials };
    const ref = reg.secretRef;
    if (!ref) return {};
    return { loadCredentials: () => readSourceCredentials(this.kube, reg.spec.type, ref) };
  }

  private succeeded(entry: Entry, result: SyncResult, seconds: number, before: SyncStatus | undefined): void {
    const volume = entry.reg.id;
    this.options.metrics?.observe(volume, true, seconds, result.bytes);
    const fields = { volume, revision: result.revision, changed: result.changed, durationMs: ms(seconds) };
    if (result.changed)
      this.options.logger.info('synced', { ...fields, bytes: result.bytes, files: result.files });
    else this.options.logger.debug('sync unchanged', fields);
    // One Event per new revision or recovery, not one per unchanged resync.
    if (result.changed || !before?.lastSuccess || before.consecutiveFailures > 0) {
      this.announce(entry, {
        type: 'Normal',
        reason: 'SyncSucceeded',
        message: `Synced revision ${result.revision}: ${result.files} files, ${result.bytes} bytes written`,
      });
    }
  }

  private failed(entry: Entry, failure: SyncError, seconds: number): void {
    const volume = entry.reg.id;
    this.options.metrics?.observe(volume, false, seconds, 0);
    this.options.logger.warn('sync failed', {
      volume,
      reason: failure.reason,
      permanent: failure.permanent,
      error: failure.message,
      durationMs: ms(seconds),
    });
    this.announce(entry, {
      type: 'Warning',
      reason: 'SyncFailed',
      message: `${failure.reason}: ${failure.message}`,
    });
  }

  /** Posts an Event on the volume's PVC, in the background; Events are best effort. */
  private announce(entry: Entry, event: KubeEvent): void {
    const pvc = entry.reg.pvc;
    if (!pvc) return;
    const post = async () => {
      const kube = await this.kube();
      entry.pvcUid ??= pvc.uid ?? (await kube.readPvc(pvc.namespace, pvc.name)).uid;
      await kube.createPvcEvent({ ...pvc, uid: entry.pvcUid }, event);
    };
    this.background(post(), entry.reg.id, 'cannot post event');
  }

  // ---- registrations ----

  private track(reg: VolumeRegistration, root: string): Entry {
    const existing = this.entries.get(reg.id);
    if (existing) {
      existing.reg = reg;
      return existing;
    }
    const entry: Entry = { reg, root, forced: false, rerun: false };
    this.entries.set(reg.id, entry);
    this.options.metrics?.track(reg.id, reg.spec.syncInterval, undefined);
    return entry;
  }

  private forget(volumeId: string): void {
    this.entries.delete(volumeId);
    this.scheduler.cancel(volumeId);
    this.options.metrics?.forget(volumeId);
  }

  /** A volume this replica does not know yet may have been registered by another one. */
  private async find(volumeId: string): Promise<Entry | undefined> {
    const known = this.entries.get(volumeId);
    if (known) return known;
    for (const root of await this.roots()) {
      const reg = await readRegistration(stateDirUnder(root, volumeId)).catch(() => undefined);
      if (reg?.id === volumeId) {
        const entry = this.track(reg, root);
        await this.scheduleNext(entry);
        return entry;
      }
    }
    return undefined;
  }

  private async existingStateDir(volumeId: string): Promise<string | undefined> {
    for (const root of await this.roots()) {
      const dir = stateDirUnder(root, volumeId);
      if (await isDirectory(dir)) return dir;
    }
    return undefined;
  }

  private async roots(): Promise<string[]> {
    return this.options.stateRoots().catch((err: Error) => {
      this.options.logger.warn('cannot list sync state roots', { error: err.message });
      return [];
    });
  }

  /** Adopts new registrations, drops removed ones, refreshes the last-success gauges. */
  private async rescan(): Promise<void> {
    for (const root of await this.roots()) {
      let found: VolumeRegistration[];
      try {
        found = await scanRegistrations(root);
      } catch (err) {
        this.options.logger.warn('cannot scan sync registrations', { root, error: (err as Error).message });
        continue;
      }
      const ids = new Set(found.map((r) => r.id));
      for (const entry of [...this.entries.values()]) {
        if (entry.root === root && !ids.has(entry.reg.id) && !entry.run) this.forget(entry.reg.id);
      }
      await Promise.all(found.map((reg) => this.adopt(reg, root)));
    }
  }

  private async adopt(reg: VolumeRegistration, root: string): Promise<void> {
    const isNew = !this.entries.has(reg.id);
    const entry = this.track(reg, root);
    const status = await readSyncStatus(reg.stateDir).catch(() => undefined);
    this.options.metrics?.track(reg.id, reg.spec.syncInterval, status?.lastSuccess);
    if (isNew) await this.scheduleNext(entry);
  }

  // ---- status ----

  private async describe(entry: Entry): Promise<VolumeSyncState> {
    const { reg } = entry;
    const status = await readSyncStatus(reg.stateDir).catch(() => undefined);
    const lease = await new Lease(reg.stateDir, { owner: this.owner, durationMs: this.leaseMs })
      .current()
      .catch(() => undefined);
    const next = this.scheduler.nextAt(reg.id);
    return {
      volume: reg.id,
      source: describeSource(reg.spec),
      syncIntervalSeconds: reg.spec.syncInterval / 1000,
      syncMode: reg.spec.syncMode,
      publish: reg.spec.publish,
      ...(reg.secretRef ? { secretRef: reg.secretRef } : {}),
      ...(reg.pvc ? { pvc: { namespace: reg.pvc.namespace, name: reg.pvc.name } } : {}),
      ...(status ? { status } : {}),
      ...(entry.run ? { running: runningState(entry.run) } : {}),
      ...(lease && lease.expiresAt > Date.now()
        ? { lease: { owner: lease.owner, expiresAt: new Date(lease.expiresAt).toISOString() } }
        : {}),
      ...(next !== undefined ? { nextSync: new Date(next).toISOString() } : {}),
    };
  }

  /** Runs a promise nobody awaits, logging its failure; stop() waits for it. */
  private background(promise: Promise<unknown>, volume: string, what = 'populator task failed'): void {
    const tracked = promise.catch((err: Error) =>
      this.options.logger.warn(what, { volume, error: err?.message ?? String(err) }),
    );
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
  }
}

const ms = (seconds: number) => Math.round(seconds * 1000);

const isDirectory = (path: string) =>
  stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );

function runningState(run: Run): SyncProgress & { since: string } {
  return {
    phase: 'checking',
    files: 0,
    bytes: 0,
    ...run.progress,
    since: new Date(run.since).toISOString(),
  };
}

/** Where the data comes from, in a few fields (never credentials: specs cannot hold any). */
export function describeSource(spec: SourceSpec): Record<string, string> {
  if (spec.type === 'git') return { type: 'git', url: spec.git!.url, ref: spec.git!.ref };
  if (spec.type === 'http') return { type: 'http', url: spec.http!.url };
  const s3 = spec.s3!;
  return {
    type: 's3',
    bucket: s3.bucket,
    prefix: s3.prefix,
    ...(s3.endpoint ? { endpoint: s3.endpoint } : {}),
    region: s3.region,
  };
}
