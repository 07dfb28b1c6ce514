import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import pLimit from 'p-limit';
import { syncError } from '../errors.js';
import { printable, safeRelativePath } from '../paths.js';
import type { Publication } from '../publish.js';
import { unchanged, type SourceContext, type SourceOutcome } from '../source.js';
import type { ObjectState } from '../state.js';
import { S3Access, type ListedObject } from './s3-client.js';

/**
 * s3 source: list the prefix, compare ETag and size of each object with the manifest, download only
 * what changed (bounded concurrency, bodies streamed into the publication), and let the publisher
 * delete what disappeared (mirror mode). A resync with no change is the listing and nothing else.
 */

const CONCURRENCY = 16;
/** Bodies up to this size are collected and written in one call; larger ones are streamed. */
const SMALL_OBJECT = 1024 * 1024;

interface Wanted {
  key: string;
  path: string;
  etag: string;
  size: number;
}

export async function syncS3(ctx: SourceContext): Promise<SourceOutcome> {
  const spec = ctx.spec.s3!;
  const prefix = spec.prefix === '' || spec.prefix.endsWith('/') ? spec.prefix : `${spec.prefix}/`;
  const access = new S3Access(spec, ctx.credentials, CONCURRENCY);
  try {
    ctx.progress({ phase: 'checking' });
    const listing = await listTree(access, prefix, ctx);
    const previous = ctx.previous?.objects ?? {};
    const changed = listing.files.filter((o) => {
      const before = previous[o.path];
      return !(before && before.id === o.etag && before.size === o.size);
    });
    const removed = Object.keys(previous).some((path) => !listing.paths.has(path));
    if (ctx.previous && changed.length === 0 && !removed) return unchanged(ctx.previous);

    const objects: Record<string, ObjectState> = {};
    for (const o of listing.files) objects[o.path] = { id: o.etag, size: o.size };
    // Additive mode keeps what the source dropped: a deletion alone changes nothing in the volume.
    if (ctx.previous && changed.length === 0 && ctx.spec.syncMode === 'additive') {
      return { revision: listing.revision, changed: false, objects, meta: {} };
    }
    ctx.progress({ phase: 'downloading', totalFiles: changed.length, totalBytes: sum(changed) });
    const pub = await ctx.openPublication(listing.revision.slice(0, 12), ctx.previous !== undefined);
    try {
      const changedPaths = new Set(changed.map((o) => o.path));
      for (const o of listing.files) if (!changedPaths.has(o.path)) pub.keep(o.path, 'file', o.size);
      for (const dir of listing.dirs) await pub.addDirectory(dir);
      await download(access, pub, changed, objects, ctx.signal);
      ctx.progress({ phase: 'publishing' });
      const published = await pub.commit();
      return { revision: listing.revision, changed: true, objects, meta: {}, published };
    } catch (err) {
      await pub.abort();
      throw err;
    }
  } finally {
    access.destroy();
  }
}

interface Listing {
  files: Wanted[];
  paths: Set<string>;
  dirs: string[];
  /** Digest of every key, ETag and size: the "revision" of a prefix. */
  revision: string;
}

async function listTree(access: S3Access, prefix: string, ctx: SourceContext): Promise<Listing> {
  const { maxFiles, maxBytes } = ctx.spec.limits;
  const files: Wanted[] = [];
  const dirs: string[] = [];
  const paths = new Set<string>();
  const digest = createHash('sha256');
  let bytes = 0;
  for await (const object of access.list(prefix, ctx.signal)) {
    digest.update(`${object.key}\0${object.etag}\0${object.size}\n`);
    const rel = object.key.slice(prefix.length);
    if (rel === '') continue;
    if (rel.endsWith('/')) {
      dirs.push(safeRelativePath(rel, 'S3 object key'));
      continue;
    }
    const path = safeRelativePath(rel, 'S3 object key');
    if (paths.has(path)) throw duplicate(object);
    paths.add(path);
    files.push({ key: object.key, path, etag: object.etag, size: object.size });
    bytes += object.size;
    if (files.length > maxFiles) {
      throw syncError(
        'limit',
        `s3://${ctx.spec.s3!.bucket}/${prefix} has more than ${maxFiles} objects (limits.maxFiles)`,
      );
    }
    if (maxBytes !== undefined && bytes > maxBytes) {
      throw syncError(
        'limit',
        `s3://${ctx.spec.s3!.bucket}/${prefix} holds more than ${maxBytes} bytes (limits.maxBytes)`,
      );
    }
  }
  return { files, paths, dirs, revision: digest.digest('hex') };
}

function duplicate(object: ListedObject): Error {
  return syncError(
    'invalid',
    `S3 object key "${printable(object.key)}" maps to the same file as another key`,
  );
}

async function download(
  access: S3Access,
  pub: Publication,
  wanted: Wanted[],
  objects: Record<string, ObjectState>,
  signal: AbortSignal,
): Promise<void> {
  const limit = pLimit(CONCURRENCY);
  let failure: unknown;
  await Promise.all(
    wanted.map((object) =>
      limit(async () => {
        if (failure !== undefined) return;
        try {
          await downloadOne(access, pub, object, objects, signal);
        } catch (err) {
          failure ??= err;
        }
      }),
    ),
  );
  if (failure !== undefined) throw failure;
}

async function downloadOne(
  access: S3Access,
  pub: Publication,
  object: Wanted,
  objects: Record<string, ObjectState>,
  signal: AbortSignal,
): Promise<void> {
  const response = await access.get(object.key, signal);
  if (!response) {
    // Deleted since the listing: the mirror drops it now, the next sync sees the new listing.
    delete objects[object.path];
    return;
  }
  const etag = response.headers.etag ?? object.etag;
  const expected = Number(response.headers['content-length'] ?? object.size);
  let size: number;
  if (expected <= SMALL_OBJECT) {
    const body = await readBody(response);
    size = body.length;
    await pub.writeFile(object.path, body);
  } else {
    size = await pub.writeFile(object.path, response);
  }
  if (size !== expected) {
    throw syncError('network', `GET s3://…/${printable(object.key)}: got ${size} of ${expected} bytes`);
  }
  objects[object.path] = { id: etag, size };
}

/** One buffer for a small body; a single-chunk body is used as it is. */
async function readBody(response: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of response) {
    chunks.push(chunk as Buffer);
    length += (chunk as Buffer).length;
  }
  if (chunks.length === 1) return chunks[0]!;
  return Buffer.concat(chunks, length);
}

function sum(objects: Wanted[]): number {
  return objects.reduce((total, o) => total + o.size, 0);
}
