import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { syncStateDir, syncStateRoot, writeRegistration } from '../../src/populator/registration.js';
import { parseSourceSpec } from '../../src/populator/spec.js';
import { alive } from '../helpers/processes.js';
import { startFileServer, type FileServer } from '../helpers/file-server.js';
import { eventually } from '../helpers/eventually.js';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'replica-child.js');

interface SyncRecord {
  owner: string;
  volume: string;
  start: number;
  end: number;
  message: string;
  reason?: string;
}

/** A replica process: its log lines, parsed, and the syncs it finished. */
class Replica {
  readonly records: SyncRecord[] = [];
  readonly log: string[] = [];
  private readonly child: ChildProcessWithoutNullStreams;
  readonly ready: Promise<void>;
  readonly exited: Promise<unknown>;

  constructor(
    readonly owner: string,
    stateRoot: string,
    leaseDurationMs: number,
  ) {
    this.child = spawn(process.execPath, [CHILD], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.stdin.write(`${JSON.stringify({ stateRoot, owner, leaseDurationMs })}\n`);
    let buffer = '';
    let markReady!: () => void;
    this.ready = new Promise((resolve) => (markReady = resolve));
    this.child.stderr.on('data', (d: Buffer) => this.log.push(d.toString()));
    this.child.stdout.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop()!;
      for (const line of lines) {
        this.log.push(line);
        if (line === 'ready') markReady();
        else this.parse(line);
      }
    });
  }

  private parse(line: string): void {
    const entry = JSON.parse(line) as {
      message: string;
      volume?: string;
      durationMs?: number;
      timestamp: string;
      reason?: string;
    };
    if (!['synced', 'sync unchanged', 'sync failed'].includes(entry.message) || !entry.volume) return;
    const end = Date.parse(entry.timestamp);
    this.records.push({
      owner: this.owner,
      volume: entry.volume,
      start: end - (entry.durationMs ?? 0),
      end,
      message: entry.message,
      ...(entry.reason ? { reason: entry.reason } : {}),
    });
  }

  finished(volume: string): number {
    return this.records.filter((r) => r.volume === volume && r.message !== 'sync failed').length;
  }

  send(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  get pid(): number {
    return this.child.pid!;
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.send('stop');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Two finished syncs of one volume by different replicas whose times overlap (1 ms rounding allowed). */
function overlaps(records: SyncRecord[]): string[] {
  const found: string[] = [];
  for (const a of records) {
    for (const b of records) {
      if (a === b || a.volume !== b.volume || a.start > b.start) continue;
      if (b.start < a.end - 2)
        found.push(`${a.volume}: ${a.owner} ${a.start}-${a.end} and ${b.owner} ${b.start}-${b.end}`);
    }
  }
  return found;
}

/** Fails at once (rather than waiting) when a sync failed, e.g. ran into another one: busy. */
function noFailures(...replicas: Replica[]): boolean {
  const failed = replicas.flatMap((r) => r.records.filter((x) => x.message === 'sync failed'));
  assert.deepEqual(
    failed.map((r) => `${r.owner} ${r.volume} ${r.reason}`),
    [],
    'no sync failed',
  );
  return true;
}

describe('populator: two controller replicas on one backend', function () {
  this.timeout(120_000);
  let files: FileServer;
  let dir: string;
  let stateRoot: string;
  let replicas: Replica[] = [];
  const volumes = ['local/v0', 'local/v1', 'local/v2', 'local/v3'];

  before(async () => {
    files = await startFileServer();
  });
  after(() => files?.stop());
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-replicas-'));
    stateRoot = syncStateRoot(join(dir, 'root', '.sharedvolume'));
  });
  afterEach(async function () {
    if (this.currentTest?.state === 'failed')
      for (const r of replicas) console.log(r.owner, r.log.join('\n'));
    await Promise.all(replicas.map((r) => r.stop()));
    replicas = [];
    await rm(dir, { recursive: true, force: true });
  });

  async function register(id: string, content: string, delayMs: number): Promise<void> {
    const path = `/${id.split('/')[1]}/data.txt`;
    files.set(path, content, { delayMs });
    const stateDir = syncStateDir(join(dir, 'root', '.sharedvolume'), id);
    await mkdir(stateDir, { recursive: true });
    await mkdir(join(dir, 'root', id.split('/')[1]!), { recursive: true });
    const spec = parseSourceSpec({ type: 'http', http: { url: files.url(path) }, syncInterval: '10s' });
    await writeRegistration({ id, volumeDir: join(dir, 'root', id.split('/')[1]!), stateDir, spec });
  }

  async function startReplicas(leaseDurationMs: number): Promise<[Replica, Replica]> {
    const pair: [Replica, Replica] = [
      new Replica('replica-a', stateRoot, leaseDurationMs),
      new Replica('replica-b', stateRoot, leaseDurationMs),
    ];
    replicas.push(...pair);
    await Promise.all(pair.map((r) => r.ready));
    return pair;
  }

  it('each volume is synced by one replica at a time, while both keep being asked to sync everything', async () => {
    for (const id of volumes) await register(id, `${id} round 0\n`, 120);
    const [a, b] = await startReplicas(10_000);
    // Both rebuild the schedule from the backend at start: each volume is filled once, by one of them.
    await eventually(
      () => volumes.every((v) => a.finished(v) + b.finished(v) >= 1),
      'the initial fills',
      30_000,
    );
    for (let round = 1; round <= 4; round++) {
      for (const id of volumes)
        files.set(`/${id.split('/')[1]}/data.txt`, `${id} round ${round}\n`, { delayMs: 120 });
      const before = volumes.map((v) => [a.finished(v), b.finished(v)]);
      // A webhook and svctl hit both replicas at once: both want to sync every volume now.
      for (const id of volumes) {
        a.send(`sync ${id}`);
        b.send(`sync ${id}`);
      }
      await eventually(
        () =>
          noFailures(a, b) &&
          volumes.every((v, i) => a.finished(v) > before[i]![0]! && b.finished(v) > before[i]![1]!),
        `round ${round}: both replicas synced every volume`,
        30_000,
      );
    }
    const records = [...a.records, ...b.records];
    noFailures(a, b);
    assert.deepEqual(overlaps(records), [], 'no two syncs of one volume overlapped');
    for (const id of volumes) {
      const path = `/${id.split('/')[1]}/data.txt`;
      assert.equal(files.maxInFlight.get(path), 1, `${path} was never fetched twice at once`);
      assert.equal(
        await readFile(join(dir, 'root', id.split('/')[1]!, 'data.txt'), 'utf8'),
        `${id} round 4\n`,
      );
    }
    assert.ok(records.length >= volumes.length * 9, `both replicas worked: ${records.length} syncs`);
  });

  it('a replica killed with SIGKILL mid-sync: its lease expires and the other replica takes over', async () => {
    await register('local/v0', 'first\n', 0);
    const [a, b] = await startReplicas(1500);
    await eventually(() => a.finished('local/v0') + b.finished('local/v0') >= 1, 'the initial fill');
    files.set('/v0/data.txt', 'second\n', { hold: true });
    a.send('sync local/v0');
    await files.held('/v0/data.txt');
    a.kill();
    await a.exited;
    assert.equal(alive(a.pid), false);
    files.set('/v0/data.txt', 'third\n');
    const before = b.finished('local/v0');
    b.send('sync local/v0');
    await eventually(() => b.finished('local/v0') > before, 'the takeover', 30_000);
    files.release('/v0/data.txt');
    assert.equal(await readFile(join(dir, 'root', 'v0', 'data.txt'), 'utf8'), 'third\n');
    assert.deepEqual(
      b.records.filter((r) => r.message === 'sync failed'),
      [],
    );
  });
});
