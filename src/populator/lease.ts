import { randomBytes } from 'node:crypto';
import { link, mkdir, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Which controller replica may sync a volume now. The lease lives beside the volume's sync state
 * on the shared backend, so replicas need nothing but the backend to agree.
 *
 * `<stateDir>/lease/<generation>` files, one per holder in turn. A replica takes generation n+1
 * by creating that file with link(2), which fails if it exists: of two replicas that both saw
 * generation n expired, exactly one wins. The holder renews by rewriting its own file (temp file +
 * rename) and releases by marking it expired. Time decides only between a holder and a taker: a
 * lease is taken over `graceMs` after it expired, and its holder stops renewing (and syncing) once
 * it is past its own expiry.
 */

export interface LeaseRecord {
  owner: string;
  generation: number;
  acquiredAt: number;
  expiresAt: number;
}

export interface LeaseOptions {
  /** Unique per process: host, pid and a random part. */
  owner: string;
  durationMs: number;
  /** Tolerated clock difference between replicas. */
  graceMs?: number;
  now?: () => number;
}

const GENERATION = /^\d{12}$/;
const name = (generation: number) => String(generation).padStart(12, '0');

export class Lease {
  private held: LeaseRecord | undefined;
  private readonly dir: string;
  private readonly now: () => number;
  private readonly graceMs: number;

  constructor(
    stateDir: string,
    private readonly options: LeaseOptions,
  ) {
    this.dir = join(stateDir, 'lease');
    this.now = options.now ?? Date.now;
    this.graceMs = options.graceMs ?? 5000;
  }

  /** The newest lease record, whoever holds it; undefined if nobody ever held one. */
  async current(): Promise<LeaseRecord | undefined> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const generation = await this.newestGeneration();
      if (generation === undefined) return undefined;
      const record = await this.read(generation);
      // The file may have been cleaned up between readdir and read: look again.
      if (record) return record;
    }
    return undefined;
  }

  /** True when this process holds the lease now (it may just have taken it). */
  async tryAcquire(): Promise<boolean> {
    if (this.held && (await this.renew())) return true;
    const current = await this.current();
    if (current && this.now() <= current.expiresAt + this.graceMs) return false;
    const generation = (current?.generation ?? 0) + 1;
    const record: LeaseRecord = {
      owner: this.options.owner,
      generation,
      acquiredAt: this.now(),
      expiresAt: this.now() + this.options.durationMs,
    };
    if (!(await this.create(record))) return false;
    // A decision made on a stale listing could create an old generation again after cleanup.
    if ((await this.newestGeneration()) !== generation) {
      await unlink(join(this.dir, name(generation))).catch(() => undefined);
      return false;
    }
    this.held = record;
    await this.removeOlderThan(generation - 1);
    return true;
  }

  /** Extends the lease; false when it was lost (expired, or taken over), and then it is not ours. */
  async renew(): Promise<boolean> {
    const held = this.held;
    if (!held) return false;
    const stillOurs = this.now() < held.expiresAt && (await this.newestGeneration()) === held.generation;
    if (!stillOurs) {
      this.held = undefined;
      return false;
    }
    const renewed = { ...held, expiresAt: this.now() + this.options.durationMs };
    await this.replace(renewed);
    this.held = renewed;
    return true;
  }

  /** Marks our lease expired so another replica may take it at once. */
  async release(): Promise<void> {
    const held = this.held;
    this.held = undefined;
    if (!held || (await this.newestGeneration()) !== held.generation) return;
    await this.replace({ ...held, expiresAt: 0 }).catch(() => undefined);
  }

  get holding(): boolean {
    return this.held !== undefined;
  }

  private async newestGeneration(): Promise<number | undefined> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const generations = names.filter((n) => GENERATION.test(n)).map(Number);
    return generations.length > 0 ? Math.max(...generations) : undefined;
  }

  private async read(generation: number): Promise<LeaseRecord | undefined> {
    try {
      return JSON.parse(await readFile(join(this.dir, name(generation)), 'utf8')) as LeaseRecord;
    } catch {
      return undefined;
    }
  }

  /** Exclusive creation of a whole file: written aside, then linked into place. */
  private async create(record: LeaseRecord): Promise<boolean> {
    await mkdir(this.dir, { recursive: true });
    const tmp = await this.writeTemp(record);
    try {
      await link(tmp, join(this.dir, name(record.generation)));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  }

  private async replace(record: LeaseRecord): Promise<void> {
    const tmp = await this.writeTemp(record);
    try {
      await rename(tmp, join(this.dir, name(record.generation)));
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
  }

  private async writeTemp(record: LeaseRecord): Promise<string> {
    const tmp = join(this.dir, `.tmp-${randomBytes(6).toString('hex')}`);
    await writeFile(tmp, JSON.stringify(record), { flag: 'wx', mode: 0o600 });
    return tmp;
  }

  private async removeOlderThan(generation: number): Promise<void> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    await Promise.all(
      names
        .filter((n) => GENERATION.test(n) && Number(n) < generation)
        .map((n) => unlink(join(this.dir, n)).catch(() => undefined)),
    );
  }
}
