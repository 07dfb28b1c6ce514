import type { CompletedPart, S3Client } from '@aws-sdk/client-s3';
import { createReadStream } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { Writable, type Readable } from 'node:stream';
import { invalidArgument, notFound } from '../rpc/errors.js';
import type { SnapshotRecord } from './catalog.js';
import type { S3Location } from './params.js';
import type { SnapshotStore, StoredSnapshot, WriteJob } from './store.js';
import { ARCHIVE_SUFFIX, extractArchive, writeArchive } from './stream.js';

/**
 * Archives in an S3 bucket, off the storage system: `<prefix>/<token>.tar.zst` plus a manifest
 * `<prefix>/<token>.json` (the snapshot record) written only after the archive is complete and its size
 * checked, so a restore can find and verify it even when the backend that recorded it is gone.
 * Credentials come from the call's secrets (`accessKeyId`, `secretAccessKey`, optional
 * `sessionToken`), never from the driver's own environment, and are held only for the call or job.
 */

/** Parts are spooled on disk, not in memory: they can be large, which lets large volumes fit in S3's 10,000 parts. */
const MIN_PART_BYTES = 64 * 1024 * 1024;
const MAX_PARTS = 10_000;
const QUEUE_SIZE = 2;
/** Used to size parts when the source has no capacity to go by: up to 4 TiB of archive. */
const UNKNOWN_SIZE_HINT = 4 * 1024 ** 4;

type Sdk = typeof import('@aws-sdk/client-s3');
let sdkModule: Promise<Sdk> | undefined;
/** The SDK is large: loaded on the first S3 snapshot, never by a driver that makes none. */
const sdk = () => (sdkModule ??= import('@aws-sdk/client-s3'));

export function objectKey(location: S3Location, name: string): string {
  return location.prefix ? `${location.prefix}/${name}` : name;
}

/** Endpoint and region from the secret win over the record: a restore after the loss of a backend has only the secret. */
async function client(location: S3Location, secrets: Record<string, string>): Promise<S3Client> {
  const { accessKeyId, secretAccessKey, sessionToken } = secrets;
  if (!accessKeyId || !secretAccessKey) {
    throw invalidArgument(
      'S3 snapshots need credentials: set the snapshotter (and, for restores, provisioner) secret with accessKeyId and secretAccessKey',
    );
  }
  const endpoint = secrets.endpoint || location.endpoint;
  const { S3Client } = await sdk();
  return new S3Client({
    region: secrets.region || location.region,
    ...(endpoint ? { endpoint } : {}),
    forcePathStyle: location.forcePathStyle || Boolean(secrets.endpoint),
    // Current SDKs otherwise send streamed bodies aws-chunked, which some S3-compatible servers store
    // framing and all; the archive's own sha256 is checked on every restore instead.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 5,
    credentials: { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) },
  });
}

/** Room for an archive a quarter larger than the volume's capacity (which NFS does not enforce). */
function partSize(record: SnapshotRecord): number {
  const hint = record.sizeBytes ? record.sizeBytes * 1.25 : UNKNOWN_SIZE_HINT;
  return Math.max(MIN_PART_BYTES, Math.ceil(hint / MAX_PARTS));
}

async function upload(job: WriteJob, s3: S3Client, key: string) {
  const spool = new PartSpool(
    s3,
    await sdk(),
    job.record.s3!.bucket,
    key,
    job.catalog.tmpPath(`${job.record.token}.spool`),
    partSize(job.record),
  );
  try {
    return await writeArchive(job.sourceDir, job.record.compression ?? 'zstd', spool, job.signal);
  } catch (err) {
    await spool.abandon();
    throw err;
  }
}

export const s3Store: SnapshotStore = {
  async write(job: WriteJob): Promise<SnapshotRecord> {
    const location = job.record.s3!;
    const s3 = await client(location, job.secrets);
    const { HeadObjectCommand, PutObjectCommand } = await sdk();
    try {
      const name = `${job.record.token}${ARCHIVE_SUFFIX[job.record.compression ?? 'zstd']}`;
      const key = objectKey(location, name);
      const digest = await upload(job, s3, key);
      const head = await s3.send(new HeadObjectCommand({ Bucket: location.bucket, Key: key }));
      if (head.ContentLength !== digest.bytes) {
        throw new Error(
          `s3://${location.bucket}/${key} holds ${head.ContentLength} bytes, ${digest.bytes} were sent`,
        );
      }
      const ready: SnapshotRecord = {
        ...job.record,
        state: 'ready',
        sizeBytes: job.record.sizeBytes || digest.dataBytes,
        archive: { name: key, bytes: digest.bytes, sha256: digest.sha256, dataBytes: digest.dataBytes },
      };
      await s3.send(
        new PutObjectCommand({
          Bucket: location.bucket,
          Key: objectKey(location, `${job.record.token}.json`),
          Body: JSON.stringify(ready),
          ContentType: 'application/json',
        }),
      );
      return ready;
    } finally {
      s3.destroy();
    }
  },

  async filling({ record, secrets }: StoredSnapshot) {
    const location = record.s3!;
    const archive = record.archive!;
    const s3 = await client(location, secrets);
    const { HeadObjectCommand, GetObjectCommand } = await sdk();
    try {
      await s3.send(new HeadObjectCommand({ Bucket: location.bucket, Key: archive.name }));
    } catch (err) {
      s3.destroy();
      throw missing(err, `s3://${location.bucket}/${archive.name}`);
    }
    return {
      kind: 'write' as const,
      write: async (dir: string) => {
        try {
          const object = await s3.send(new GetObjectCommand({ Bucket: location.bucket, Key: archive.name }));
          await extractArchive(object.Body as Readable, record.compression ?? 'zstd', dir, archive);
        } finally {
          s3.destroy();
        }
      },
    };
  },

  async remove({ record, secrets }: StoredSnapshot) {
    const location = record.s3!;
    const s3 = await client(location, secrets);
    const { DeleteObjectCommand } = await sdk();
    try {
      const keys = [
        objectKey(location, `${record.token}${ARCHIVE_SUFFIX[record.compression ?? 'zstd']}`),
        objectKey(location, `${record.token}.json`),
      ];
      for (const key of keys) await s3.send(new DeleteObjectCommand({ Bucket: location.bucket, Key: key }));
    } finally {
      s3.destroy();
    }
  },
};

function missing(err: unknown, what: string): unknown {
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return status === 404 ? notFound(`${what} does not exist`) : err;
}

/** The manifest of an S3 snapshot, for a restore whose backend no longer has the record. */
export async function readManifest(
  location: S3Location,
  token: string,
  secrets: Record<string, string>,
): Promise<SnapshotRecord | undefined> {
  const s3 = await client(location, secrets);
  const { GetObjectCommand } = await sdk();
  try {
    const object = await s3.send(
      new GetObjectCommand({ Bucket: location.bucket, Key: objectKey(location, `${token}.json`) }),
    );
    return JSON.parse(await object.Body!.transformToString()) as SnapshotRecord;
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404)
      return undefined;
    throw err;
  } finally {
    s3.destroy();
  }
}

/**
 * Multipart upload of a stream of unknown length, spooled through part files on disk: each part is
 * written to a file, uploaded from it (with its length known) and removed, with at most `QUEUE_SIZE`
 * parts uploading while the next one fills. Memory stays that of the streams, whatever the part size;
 * the spool takes at most (QUEUE_SIZE + 1) parts of disk. Writes wait while the queue is full, which
 * slows tar down instead of buffering.
 */
class PartSpool extends Writable {
  private part: FileHandle | undefined;
  private partBytes = 0;
  private partNumber = 0;
  private readonly uploads: Promise<CompletedPart>[] = [];
  private readonly inFlight = new Set<Promise<CompletedPart>>();
  private uploadId: string | undefined;

  constructor(
    private readonly s3: S3Client,
    private readonly sdk: Sdk,
    private readonly bucket: string,
    private readonly key: string,
    private readonly spoolPrefix: string,
    private readonly partBytesLimit: number,
  ) {
    super({ highWaterMark: 1024 * 1024 });
  }

  override _write(chunk: Buffer, _: BufferEncoding, done: (err?: Error | null) => void): void {
    this.append(chunk).then(() => done(), done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.finishPart()
      .then(() => this.complete())
      .then(() => done(), done);
  }

  private async append(chunk: Buffer): Promise<void> {
    for (let at = 0; at < chunk.length;) {
      if (!this.part) await this.openPart();
      const take = Math.min(chunk.length - at, this.partBytesLimit - this.partBytes);
      await writeFully(this.part!, chunk.subarray(at, at + take));
      this.partBytes += take;
      at += take;
      if (this.partBytes >= this.partBytesLimit) await this.finishPart();
    }
  }

  private partFile(number: number): string {
    return `${this.spoolPrefix}.part${number}`;
  }

  private async openPart(): Promise<void> {
    while (this.inFlight.size >= QUEUE_SIZE) await Promise.race(this.inFlight);
    if (!this.uploadId) {
      const created = await this.s3.send(
        new this.sdk.CreateMultipartUploadCommand({
          Bucket: this.bucket,
          Key: this.key,
          ContentType: 'application/octet-stream',
        }),
      );
      this.uploadId = created.UploadId!;
    }
    this.partNumber++;
    if (this.partNumber > MAX_PARTS) throw new Error(`the archive needs more than ${MAX_PARTS} parts`);
    this.part = await open(this.partFile(this.partNumber), 'w', 0o600);
    this.partBytes = 0;
  }

  private async finishPart(): Promise<void> {
    if (!this.part) return;
    await this.part.close();
    this.part = undefined;
    const upload = this.uploadPart(this.partNumber, this.partBytes);
    this.uploads.push(upload);
    this.inFlight.add(upload);
    void upload.then(
      () => this.inFlight.delete(upload),
      () => this.inFlight.delete(upload),
    );
  }

  private async uploadPart(number: number, bytes: number): Promise<CompletedPart> {
    const file = this.partFile(number);
    try {
      const sent = await this.s3.send(
        new this.sdk.UploadPartCommand({
          Bucket: this.bucket,
          Key: this.key,
          UploadId: this.uploadId,
          PartNumber: number,
          ContentLength: bytes,
          Body: createReadStream(file, { highWaterMark: 1024 * 1024 }),
        }),
      );
      return { PartNumber: number, ETag: sent.ETag };
    } finally {
      await rm(file, { force: true });
    }
  }

  private async complete(): Promise<void> {
    const parts = await Promise.all(this.uploads);
    await this.s3.send(
      new this.sdk.CompleteMultipartUploadCommand({
        Bucket: this.bucket,
        Key: this.key,
        UploadId: this.uploadId,
        MultipartUpload: { Parts: parts },
      }),
    );
  }

  /** Aborts the upload (S3 drops its parts) and removes the spool files; for failures. */
  async abandon(): Promise<void> {
    await this.part?.close().catch(() => undefined);
    this.part = undefined;
    await Promise.allSettled(this.uploads);
    for (let n = 1; n <= this.partNumber; n++) await rm(this.partFile(n), { force: true });
    if (this.uploadId) {
      await this.s3
        .send(
          new this.sdk.AbortMultipartUploadCommand({
            Bucket: this.bucket,
            Key: this.key,
            UploadId: this.uploadId,
          }),
        )
        .catch(() => undefined);
    }
  }
}

async function writeFully(file: FileHandle, data: Buffer): Promise<void> {
  for (let at = 0; at < data.length;) at += (await file.write(data, at, data.length - at)).bytesWritten;
}
