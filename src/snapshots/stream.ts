import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { Transform, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Snapshot archives as streams: GNU tar reads or writes the tree and a compressor runs beside it,
 * joined by a pipe. Into and out of files, the tools do all the I/O and the driver only syncs the file
 * (and hashes an uncompressed one with one reused buffer); into and out of other streams (S3), the
 * driver moves the compressed bytes, hashing them on the way. Either way memory stays constant
 * whatever the volume size.
 */

export const COMPRESSIONS = ['zstd', 'gzip', 'none'] as const;
export type Compression = (typeof COMPRESSIONS)[number];

export const ARCHIVE_SUFFIX: Record<Compression, string> = {
  zstd: '.tar.zst',
  gzip: '.tar.gz',
  none: '.tar',
};

/**
 * zstd -3 on all cores: about as small as gzip -6 and many times faster (see docs/snapshots.md). Both
 * formats carry a checksum of the content that decompression verifies (zstd: XXH64, asked for
 * explicitly; gzip: CRC-32 and length), so a damaged or cut archive fails its restore.
 */
const COMPRESS: Record<Exclude<Compression, 'none'>, [string, string[]]> = {
  zstd: ['zstd', ['-q', '-c', '-3', '-T0', '--check']],
  gzip: ['gzip', ['-c', '-6']],
};
const DECOMPRESS: Record<Exclude<Compression, 'none'>, [string, string[]]> = {
  zstd: ['zstd', ['-q', '-d', '-c']],
  gzip: ['gzip', ['-d', '-c']],
};

export interface ArchiveDigest {
  /** Size of the archive as stored (compressed). */
  bytes: number;
  /** Absent for compressed archives in files: their formatChecksum stands in for it. */
  sha256?: string;
  /** A compressed archive's own checksum of its content, as stored at its end (see TRAILERS). */
  formatChecksum?: string;
  /** Size of the tar stream (uncompressed), as tar counted it. */
  dataBytes: number;
}

/**
 * POSIX (pax) format keeps nanosecond mtimes, long names and xattrs; numeric owners survive a restore
 * on a host whose user names differ. atime and ctime are left out: they change on every read.
 */
function tarCreateArgs(dir: string, compression: Compression): string[] {
  return [
    '--create',
    '--file=-',
    // Into a compressor, 1 MiB records instead of 10 KiB ones: a hundredth of the writes through the
    // pipe, about 8% less time for a 1 GiB tree. Not into a plain archive, which would be padded to a
    // whole record. Restores read the same record size (tarExtractArgs).
    ...(compression === 'none' ? [] : ['--blocking-factor=2048']),
    `--directory=${dir}`,
    '--format=posix',
    '--pax-option=delete=atime,delete=ctime',
    '--numeric-owner',
    '--xattrs',
    '--xattrs-include=*',
    '--totals',
    '.',
  ];
}

/**
 * As root, owners and modes are restored as archived; otherwise the files belong to the driver.
 * From a decompressor, tar reads whole 1 MiB records (short ones too, for archives of earlier versions
 * with 10 KiB records), so it consumes the padding after the end-of-archive marker: a decompressor
 * left with unread output would die of SIGPIPE before it checks the content's checksum at the end.
 */
function tarExtractArgs(dir: string, compression: Compression): string[] {
  const owners = process.getuid?.() === 0 ? ['--same-owner', '--numeric-owner'] : ['--no-same-owner'];
  return [
    '--extract',
    '--file=-',
    ...(compression === 'none' ? [] : ['--blocking-factor=2048', '--read-full-records']),
    `--directory=${dir}`,
    '--preserve-permissions',
    '--xattrs',
    '--xattrs-include=*',
    ...owners,
  ];
}

/** A tool's failure; `brokenPipe` when it only died because the next tool in the pipe had gone. */
class ToolFailure extends Error {
  constructor(
    message: string,
    readonly brokenPipe: boolean,
  ) {
    super(message);
  }
}

/** A child process whose exit status and last words are kept for the error message. */
class Tool {
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private stderr = '';

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-4096);
    });
    this.exit = new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) => resolve({ code, signal }));
    });
  }

  get output(): string {
    return this.stderr;
  }

  /** Resolves when the exit code is one of `ok`; otherwise rejects with the tool's own message. */
  async check(ok: number[]): Promise<void> {
    const { code, signal } = await this.exit;
    if (code !== null && ok.includes(code)) return;
    const detail =
      this.stderr.trim().split('\n').slice(-3).join('; ') ||
      (signal ? `killed by ${signal}` : `exit ${code}`);
    throw new ToolFailure(`${this.name} failed: ${detail}`, signal === 'SIGPIPE');
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

function start(
  name: string,
  command: string,
  args: string[],
  stdio: Parameters<typeof spawn>[2]['stdio'],
): Tool {
  // execs: tar, zstd, gzip
  return new Tool(name, spawn(command, args, { stdio }));
}

/**
 * Buffering between the stages: large enough that reading the pipe, hashing and writing the file
 * overlap instead of taking turns (each chunk from a pipe is 64 KiB), small enough to stay constant.
 */
export const STREAM_BUFFER_BYTES = 1024 * 1024;

/** Counts and hashes the bytes that pass through. */
class Digest extends Transform {
  bytes = 0;
  private readonly hash = createHash('sha256');

  constructor() {
    super({ highWaterMark: STREAM_BUFFER_BYTES });
  }

  override _transform(chunk: Buffer, _: BufferEncoding, done: (err?: Error | null, data?: Buffer) => void) {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    done(null, chunk);
  }

  get sha256(): string {
    return this.hash.copy().digest('hex');
  }
}

/** Where a pipeline reads from or writes to: a pipe to the driver, or a file descriptor. */
type End = 'pipe' | number;

/**
 * tar archiving `dir`, and the compressor after it when there is one, joined by a pipe; the last one
 * writes to `output`. The compressor holds its own copy of the pipe; ours would keep tar writing if
 * it died, so it is closed.
 */
function startArchiving(dir: string, compression: Compression, output: End): Tool[] {
  if (compression === 'none')
    return [start('tar', 'tar', tarCreateArgs(dir, compression), ['ignore', output, 'pipe'])];
  const tar = start('tar', 'tar', tarCreateArgs(dir, compression), ['ignore', 'pipe', 'pipe']);
  const [command, args] = COMPRESS[compression];
  const compressor = start(command, command, args, [tar.child.stdout!, output, 'pipe']);
  tar.child.stdout!.destroy();
  return [tar, compressor];
}

/** The decompressor when there is one, then tar extracting into `dir`, joined by a pipe; the first reads `input`. */
function startExtracting(dir: string, compression: Compression, input: End): Tool[] {
  if (compression === 'none')
    return [start('tar', 'tar', tarExtractArgs(dir, compression), [input, 'ignore', 'pipe'])];
  const [command, args] = DECOMPRESS[compression];
  const decompressor = start(command, command, args, [input, 'pipe', 'pipe']);
  const tar = start('tar', 'tar', tarExtractArgs(dir, compression), [
    decompressor.child.stdout!,
    'ignore',
    'pipe',
  ]);
  decompressor.child.stdout!.destroy();
  return [decompressor, tar];
}

/**
 * Runs `tools` and the stream pipeline together; on any failure every tool is killed and the first
 * error wins, except that a tool killed by a broken pipe yields to the tool that broke it.
 */
async function runAll(tools: Tool[], flow: Promise<void>, checks: Promise<void>[], signal?: AbortSignal) {
  const onAbort = () => tools.forEach((t) => t.kill());
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const results = await Promise.allSettled([flow, ...checks]);
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failures.length > 0) {
      tools.forEach((t) => t.kill());
      await Promise.allSettled(tools.map((t) => t.exit));
      if (signal?.aborted) throw new Error('cancelled');
      throw failures.find((e) => !(e instanceof ToolFailure && e.brokenPipe)) ?? failures[0];
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * Writes a tar archive of `dir` into `sink`, compressed. tar's output goes straight into the
 * compressor through a pipe; the driver reads only the compressed stream. tar's exit code 1 ("a file
 * changed while it was read") is accepted: the archive is complete, the file is in one of its states.
 */
export async function writeArchive(
  dir: string,
  compression: Compression,
  sink: Writable,
  signal?: AbortSignal,
): Promise<ArchiveDigest & { sha256: string }> {
  const tools = startArchiving(dir, compression, 'pipe');
  const tar = tools[0]!;
  const output: Readable = tools[tools.length - 1]!.child.stdout!;
  const digest = new Digest();
  const checks = [tar.check([0, 1]), ...tools.slice(1).map((t) => t.check([0]))];
  await runAll(tools, pipeline(output, digest, sink), checks, signal);
  const totals = /Total bytes written: (\d+)/.exec(tar.output);
  return { bytes: digest.bytes, sha256: digest.sha256, dataBytes: totals ? Number(totals[1]) : 0 };
}

/**
 * Extracts an archive read from `source` into `dir` (which exists, and should be empty). The archive
 * is hashed on the way in; a size or checksum that differs from `expected` fails the extraction,
 * after the fact, so the caller must discard `dir` on failure (restores extract into staging).
 */
export async function extractArchive(
  source: Readable,
  compression: Compression,
  dir: string,
  expected: RecordedArchive,
  signal?: AbortSignal,
): Promise<void> {
  const digest = new Digest();
  const tools = startExtracting(dir, compression, 'pipe');
  const flow = pipeline(source, digest, tools[0]!.child.stdin!);
  await runAll(
    tools,
    flow,
    tools.map((t) => t.check([0])),
    signal,
  );
  checkDigest({ bytes: digest.bytes, sha256: digest.sha256 }, expected);
}

/** Sync to disk this often while following a file, so that the final sync does not wait for all of it. */
const SYNC_EVERY_BYTES = 64 * 1024 * 1024;
/** How long to wait when the reader has caught up with a writer that is still running. */
const CAUGHT_UP_PAUSE_MS = 5;
/** How often the size of a file that is not read back is looked at. */
const WATCH_PAUSE_MS = 20;

/**
 * Follows a file that its writer may still be appending to, until `writerDone()` says nothing more
 * comes; with `hash`, reads it from the start with one reused buffer and hashes it, otherwise only
 * watches its size. With `durable`, the file is synced to disk along the way and at the end.
 */
async function followFile(
  path: string,
  writerDone: () => boolean,
  { hash, durable }: { hash: boolean; durable: boolean },
): Promise<{ bytes: number; sha256?: string }> {
  const handle = await open(path, 'r');
  const background = new BackgroundSync(handle, durable);
  try {
    const followed = hash
      ? await hashGrowing(handle, writerDone, background)
      : { bytes: await watchGrowing(handle, writerDone, background) };
    await background.settled();
    if (durable) await handle.sync();
    return followed;
  } finally {
    await background.settled().catch(() => undefined);
    await handle.close();
  }
}

async function hashGrowing(
  handle: FileHandle,
  writerDone: () => boolean,
  background: BackgroundSync,
): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(STREAM_BUFFER_BYTES);
  let bytes = 0;
  for (;;) {
    const done = writerDone(); // asked before the read: an empty read after the writer ended is the end
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, bytes);
    if (bytesRead > 0) {
      hash.update(buffer.subarray(0, bytesRead));
      bytes += bytesRead;
      background.reached(bytes);
    } else if (done) {
      break;
    } else {
      await sleep(CAUGHT_UP_PAUSE_MS);
    }
  }
  return { bytes, sha256: hash.digest('hex') };
}

async function watchGrowing(
  handle: FileHandle,
  writerDone: () => boolean,
  background: BackgroundSync,
): Promise<number> {
  for (;;) {
    const done = writerDone(); // asked before the stat: the size after the writer ended is the last
    const { size } = await handle.stat();
    background.reached(size);
    if (done) return size;
    await sleep(WATCH_PAUSE_MS);
  }
}

/**
 * At most one datasync at a time, started every SYNC_EVERY_BYTES beside the reading, never in its way:
 * a reader that waited for the disk would fall behind a fast writer (tar alone writes faster than a
 * disk syncs) and leave all the catching up until after the writer ends. A failure is kept for `settled`.
 */
class BackgroundSync {
  private syncedAt = 0;
  private running: Promise<void> | undefined;
  private failure: { error: unknown } | undefined;

  constructor(
    private readonly handle: FileHandle,
    private readonly enabled: boolean,
  ) {}

  reached(bytes: number): void {
    if (!this.enabled || this.running || bytes - this.syncedAt < SYNC_EVERY_BYTES) return;
    this.syncedAt = bytes;
    this.running = this.handle.datasync().then(
      () => void (this.running = undefined),
      (error: unknown) => void ((this.failure ??= { error }), (this.running = undefined)),
    );
  }

  async settled(): Promise<void> {
    await this.running;
    if (this.failure) throw this.failure.error;
  }
}

/**
 * Writes a tar archive of `dir` into `file`. tar (and the compressor) write the file themselves; the
 * driver syncs it to disk as it grows, and hashes it (reading it back with one reused buffer) only
 * when it is uncompressed: a compressed archive carries its own checksum. No data passes through the
 * driver's heap, so its memory does not depend on the volume's size.
 */
export async function writeArchiveFile(
  dir: string,
  compression: Compression,
  file: string,
  signal?: AbortSignal,
): Promise<ArchiveDigest> {
  const out = await open(file, 'w', 0o600);
  const tools: Tool[] = [];
  try {
    tools.push(...startArchiving(dir, compression, out.fd));
  } finally {
    await out.close();
  }
  let written = false;
  const last = tools[tools.length - 1]!;
  void last.exit.then(
    () => (written = true),
    () => (written = true),
  );
  let digest: { bytes: number; sha256?: string } = { bytes: 0 };
  const follow = followFile(file, () => written, { hash: compression === 'none', durable: true }).then(
    (d) => void (digest = d),
  );
  const checks = [tools[0]!.check([0, 1]), ...tools.slice(1).map((t) => t.check([0]))];
  await runAll(tools, follow, checks, signal);
  const totals = /Total bytes written: (\d+)/.exec(tools[0]!.output);
  const formatChecksum = compression === 'none' ? undefined : await fileFormatChecksum(file, compression);
  return { ...digest, formatChecksum, dataBytes: totals ? Number(totals[1]) : 0 };
}

/**
 * Where a compressed archive keeps its checksum of the content: zstd the low 32 bits of the XXH64 in
 * the frame's last 4 bytes (when its header says so, which `--check` asks for), gzip the CRC-32 and
 * the length in the last 8. Recorded, and compared with the file's before a restore, it ties the
 * record to the content end to end: the decompressor checks the content against it.
 */
const TRAILERS: Record<Exclude<Compression, 'none'>, { bytes: number; fits(head: Buffer): boolean }> = {
  zstd: { bytes: 4, fits: (head) => head.readUInt32LE(0) === 0xfd2fb528 && (head[4]! & 0x04) !== 0 },
  gzip: { bytes: 8, fits: (head) => head[0] === 0x1f && head[1] === 0x8b },
};

/** The checksum at the end of a compressed archive, in hex (one read at each end of the file). */
async function readFormatChecksum(
  handle: FileHandle,
  compression: Exclude<Compression, 'none'>,
  size: number,
): Promise<string> {
  const { bytes, fits } = TRAILERS[compression];
  const head = Buffer.alloc(5);
  const tail = Buffer.alloc(bytes);
  if (size < head.length + bytes)
    throw new Error(`archive is corrupt: ${size} bytes is no ${compression} file`);
  await handle.read(head, 0, head.length, 0);
  await handle.read(tail, 0, bytes, size - bytes);
  if (!fits(head)) throw new Error(`archive is corrupt: it is not a ${compression} file with a checksum`);
  return tail.toString('hex');
}

async function fileFormatChecksum(file: string, compression: Exclude<Compression, 'none'>): Promise<string> {
  const handle = await open(file, 'r');
  try {
    return await readFormatChecksum(handle, compression, (await handle.stat()).size);
  } finally {
    await handle.close();
  }
}

/** What a record says of its archive. Compressed archives have a sha256 only in older records. */
export interface RecordedArchive {
  bytes: number;
  sha256?: string;
  formatChecksum?: string;
}

/**
 * Extracts the archive `file` into `dir`: the decompressor (or tar) reads the file itself. The size
 * and a compressed archive's recorded checksum are checked first; the content is checked against that
 * checksum by the decompressor, or against a recorded sha256 by hashing the file beside the
 * extraction, both after the fact, so the caller must discard `dir` on failure (restores extract into
 * staging).
 */
export async function extractArchiveFile(
  file: string,
  compression: Compression,
  dir: string,
  expected: RecordedArchive,
  signal?: AbortSignal,
): Promise<void> {
  const input = await open(file, 'r');
  const tools: Tool[] = [];
  try {
    const { size } = await input.stat();
    if (size !== expected.bytes)
      throw new Error(
        `archive is corrupt: it is ${size} bytes on the backend, ${expected.bytes} were recorded`,
      );
    if (compression !== 'none' && expected.formatChecksum) {
      const found = await readFormatChecksum(input, compression, size);
      if (found !== expected.formatChecksum)
        throw new Error(
          `archive is corrupt: its ${compression} checksum is ${found}, ${expected.formatChecksum} was recorded`,
        );
    }
    tools.push(...startExtracting(dir, compression, input.fd));
  } finally {
    await input.close();
  }
  const hashing = expected.sha256
    ? followFile(file, () => true, { hash: true, durable: false }).then((got) => checkDigest(got, expected))
    : Promise.resolve();
  await runAll(
    tools,
    hashing,
    tools.map((t) => t.check([0])),
    signal,
  );
}

function checkDigest(got: RecordedArchive, expected: RecordedArchive) {
  if (got.bytes !== expected.bytes || got.sha256 !== expected.sha256) {
    throw new Error(
      `archive is corrupt: read ${got.bytes} bytes with sha256 ${got.sha256}, recorded ${expected.bytes} bytes with sha256 ${expected.sha256}`,
    );
  }
}
