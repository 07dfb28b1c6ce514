import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'winston';
import { HttpError, pathParameter, readBody, sendJson } from './http-server.js';

/**
 * The sync webhook: git hosting (GitHub style) or CI calls it after a push, and the volume syncs
 * within seconds instead of at the next interval.
 *
 *   POST /hooks/sync/<volume id, URL-encoded>  sync that volume
 *   POST /hooks/git                           a push event: sync every git volume whose URL and
 *                                             ref match the payload's repository and ref
 *
 * Every request carries `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>` keyed with the
 * shared secret from --webhook-secret-file (re-read per request, so a rotated secret applies at
 * once). Answers: 202 sync triggered, 401 bad signature, 404 no such volume, 200 for GitHub's ping.
 */

export const SIGNATURE_HEADER = 'x-hub-signature-256';
/** GitHub caps payloads at 25 MB; pushes of that size are not what triggers a sync. */
const MAX_BODY = 5 * 2 ** 20;

export interface WebhookTarget {
  syncNow(volumeId: string): Promise<boolean>;
  gitVolumes(): { id: string; url: string; ref: string }[];
}

export function signBody(secret: Buffer | string, body: Buffer | string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Constant-time comparison of the header with the expected signature. */
export function verifySignature(secret: Buffer, body: Buffer, header: string | undefined): boolean {
  if (!header || secret.length === 0) return false;
  const expected = Buffer.from(signBody(secret, body));
  const given = Buffer.from(header.trim());
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Trailing newlines of the secret file are not part of the secret (`echo secret > file`). */
export async function readWebhookSecret(file: string): Promise<Buffer> {
  const secret = Buffer.from((await readFile(file, 'utf8')).replace(/[\r\n]+$/, ''));
  if (secret.length === 0) throw new Error(`webhook secret file ${file} is empty`);
  return secret;
}

export function webhookHandler(target: WebhookTarget, secretFile: string, logger: Logger) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const { pathname } = new URL(req.url ?? '/', 'http://webhook');
    const volumeId = pathParameter(pathname, '/hooks/sync/');
    if (!volumeId && pathname !== '/hooks/git') throw new HttpError(404, 'not found');
    if (req.method !== 'POST') throw new HttpError(405, 'use POST');
    const body = await readBody(req, MAX_BODY);
    const header = req.headers[SIGNATURE_HEADER];
    if (
      !verifySignature(
        await readWebhookSecret(secretFile),
        body,
        typeof header === 'string' ? header : undefined,
      )
    ) {
      logger.warn('webhook refused: bad or missing signature', { path: pathname });
      throw new HttpError(401, `bad or missing ${SIGNATURE_HEADER}`);
    }
    if (volumeId) return triggerVolume(target, volumeId, res, logger);
    if (req.headers['x-github-event'] === 'ping') return sendJson(res, 200, { ok: true });
    return triggerPush(target, parsePayload(body, req.headers['content-type']), res, logger);
  };
}

async function triggerVolume(target: WebhookTarget, id: string, res: ServerResponse, logger: Logger) {
  if (!(await target.syncNow(id))) throw new HttpError(404, `no populated volume ${id}`);
  logger.info('webhook: sync triggered', { volume: id });
  sendJson(res, 202, { triggered: [id] });
}

async function triggerPush(target: WebhookTarget, payload: PushPayload, res: ServerResponse, logger: Logger) {
  const ids = volumesForPush(target.gitVolumes(), payload);
  if (ids.length === 0) throw new HttpError(404, 'no populated volume follows this repository and ref');
  await Promise.all(ids.map((id) => target.syncNow(id)));
  logger.info('webhook: push', { ref: payload.ref, volumes: ids });
  sendJson(res, 202, { triggered: ids });
}

export interface PushPayload {
  ref?: string;
  repository?: {
    clone_url?: string;
    git_url?: string;
    ssh_url?: string;
    html_url?: string;
    url?: string;
    default_branch?: string;
  };
}

/** JSON, or GitHub's form encoding (`payload=<json>`). */
function parsePayload(body: Buffer, contentType: string | undefined): PushPayload {
  let text = body.toString('utf8');
  if (contentType?.startsWith('application/x-www-form-urlencoded')) {
    text = new URLSearchParams(text).get('payload') ?? '';
  }
  try {
    const payload = JSON.parse(text) as PushPayload;
    if (typeof payload === 'object' && payload !== null) return payload;
  } catch {
    // answered below
  }
  throw new HttpError(400, 'the body is not a push event payload');
}

/** Volumes whose git URL is one of the payload's repository URLs, and whose ref the push moved. */
export function volumesForPush(volumes: { id: string; url: string; ref: string }[], payload: PushPayload) {
  const repo = payload.repository ?? {};
  const urls = new Set(
    [repo.clone_url, repo.git_url, repo.ssh_url, repo.html_url, repo.url]
      .filter((u): u is string => typeof u === 'string')
      .map(normalizeGitUrl)
      .filter((u): u is string => u !== undefined),
  );
  return volumes
    .filter((v) => urls.has(normalizeGitUrl(v.url) ?? ''))
    .filter((v) => pushMovesRef(v.ref, payload.ref, repo.default_branch))
    .map((v) => v.id);
}

/**
 * One repository, whatever the form: `https://Host/org/repo.git`, `git@host:org/repo`,
 * `ssh://git@host:22/org/repo/` -> `host/org/repo` (lower case; a false match only costs a sync).
 */
export function normalizeGitUrl(url: string): string | undefined {
  const scp = /^(?:[^@/]+@)?([^:/]+):(?!\/\/)(.+)$/.exec(url);
  let host: string;
  let path: string;
  if (scp && !url.includes('://')) [host, path] = [scp[1]!, scp[2]!];
  else {
    try {
      const parsed = new URL(url);
      [host, path] = [parsed.hostname, parsed.pathname];
    } catch {
      return undefined;
    }
  }
  const cleaned = path.replace(/^\/+|\/+$/g, '').replace(/\.git$/, '');
  return `${host}/${cleaned}`.toLowerCase();
}

/** Whether a push of `pushed` (refs/heads/x, refs/tags/y) can change what `ref` points at. */
export function pushMovesRef(ref: string, pushed: string | undefined, defaultBranch: string | undefined) {
  if (!pushed) return true;
  if (/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(ref)) return false;
  if (ref === 'HEAD') return !defaultBranch || pushed === `refs/heads/${defaultBranch}`;
  return pushed === ref || pushed === `refs/heads/${ref}` || pushed === `refs/tags/${ref}`;
}
