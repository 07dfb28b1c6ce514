import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { detectFormat, extractTar, extractZip } from '../archive.js';
import type { SourceCredentials } from '../credentials.js';
import { syncError } from '../errors.js';
import { safeRelativePath } from '../paths.js';
import { unchanged, type SourceContext, type SourceOutcome } from '../source.js';

/**
 * http source: one URL serving a tar, tar.gz, tar.zst or zip archive (or a single file). A resync
 * sends If-None-Match / If-Modified-Since, so an unchanged archive costs one 304 and no body. A 200
 * whose content hashes the same as the published one is not unpacked again. The archive is
 * downloaded into the state directory, then unpacked through the publisher (safety rules there).
 */

const MAX_REDIRECTS = 5;

export async function syncHttp(ctx: SourceContext): Promise<SourceOutcome> {
  const url = ctx.spec.http!.url;
  ctx.progress({ phase: 'checking' });
  const response = await get(url, ctx.credentials, ctx.previous?.meta, ctx.signal);
  if (response.status === 304 && ctx.previous) {
    await response.body?.cancel();
    return unchanged(ctx.previous);
  }
  if (response.status !== 200) {
    await response.body?.cancel().catch(() => undefined);
    throw statusError(response.status, url);
  }
  const meta: Record<string, string> = {};
  for (const [header, key] of [
    ['etag', 'etag'],
    ['last-modified', 'lastModified'],
  ] as const) {
    const value = response.headers.get(header);
    if (value) meta[key] = value;
  }

  await mkdir(ctx.workDir, { recursive: true });
  const download = join(ctx.workDir, `download-${randomBytes(6).toString('hex')}`);
  try {
    const length = Number(response.headers.get('content-length'));
    ctx.progress({ phase: 'downloading', ...(length > 0 ? { totalBytes: length } : {}) });
    const digest = await saveBody(response, download, downloadCap(ctx), ctx);
    const revision = `sha256:${digest}`;
    if (ctx.previous?.revision === revision) return { ...unchanged(ctx.previous), meta };
    const format = await detectFormat(download);
    const pub = await ctx.openPublication(digest, false);
    try {
      if (format === 'tar') await extractTar(download, pub, ctx.signal);
      else if (format === 'zip') await extractZip(download, pub, ctx.signal);
      else await pub.writeFile(fileNameOf(url), createReadStream(download, { highWaterMark: 256 * 1024 }));
      ctx.progress({ phase: 'publishing' });
      const published = await pub.commit();
      return { revision, changed: true, objects: {}, meta, published };
    } catch (err) {
      await pub.abort();
      throw err;
    }
  } finally {
    await rm(download, { force: true });
  }
}

/** GET with conditional headers; redirects followed by hand so credentials never leave the origin. */
async function get(
  url: string,
  creds: SourceCredentials | undefined,
  previous: Record<string, string> | undefined,
  signal: AbortSignal,
): Promise<Response> {
  const origin = new URL(url).origin;
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    if (previous?.etag) headers['if-none-match'] = previous.etag;
    if (previous?.lastModified) headers['if-modified-since'] = previous.lastModified;
    const auth = authorization(creds);
    if (auth && new URL(current).origin === origin) headers.authorization = auth;
    let response: Response;
    try {
      response = await fetch(current, { headers, redirect: 'manual', signal });
    } catch (err) {
      if (signal.aborted) throw err;
      throw syncError('network', `GET ${url} failed: ${(err as Error).cause ?? (err as Error).message}`, err);
    }
    const location = response.headers.get('location');
    if (response.status < 300 || response.status >= 400 || response.status === 304 || !location)
      return response;
    await response.body?.cancel();
    const next = new URL(location, current);
    if (next.protocol !== 'https:' && next.protocol !== 'http:') {
      throw syncError('invalid', `GET ${url} redirected to a non-HTTP URL`);
    }
    current = next.toString();
  }
  throw syncError('network', `GET ${url}: more than ${MAX_REDIRECTS} redirects`);
}

function authorization(creds: SourceCredentials | undefined): string | undefined {
  if (creds?.token) return `Bearer ${creds.token}`;
  if (creds?.username !== undefined && creds.password !== undefined) {
    return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
  }
  return undefined;
}

function statusError(code: number, url: string) {
  if (code === 401 || code === 403)
    return syncError('auth', `GET ${url}: HTTP ${code} (credentials refused)`);
  if (code === 404 || code === 410) return syncError('not-found', `GET ${url}: HTTP ${code}`);
  return syncError('network', `GET ${url}: HTTP ${code}`);
}

/** The download may not exceed the extraction limit plus room for archive headers. */
function downloadCap(ctx: SourceContext): number {
  const { maxBytes, maxFiles } = ctx.spec.limits;
  return maxBytes === undefined
    ? Number.POSITIVE_INFINITY
    : maxBytes + 1024 * Math.min(maxFiles, 1_000_000) + 2 ** 20;
}

async function saveBody(response: Response, path: string, cap: number, ctx: SourceContext): Promise<string> {
  const hash = createHash('sha256');
  const file = await open(path, 'wx', 0o600);
  let bytes = 0;
  try {
    if (response.body) {
      for await (const chunk of Readable.fromWeb(response.body as WebReadableStream<Uint8Array>)) {
        bytes += (chunk as Buffer).length;
        if (bytes > cap) {
          throw syncError(
            'limit',
            `the download exceeds limits.maxBytes (${ctx.spec.limits.maxBytes}); nothing was published`,
          );
        }
        hash.update(chunk as Buffer);
        await file.write(chunk as Buffer);
        ctx.progress({ bytes });
      }
    }
  } finally {
    await file.close();
  }
  return hash.digest('hex');
}

/** A plain file keeps the last segment of the URL path as its name, if that is a safe name. */
export function fileNameOf(url: string): string {
  try {
    const name = safeRelativePath(decodeURIComponent(new URL(url).pathname.split('/').pop() ?? ''));
    return name.includes('/') ? 'download' : name;
  } catch {
    return 'download';
  }
}
