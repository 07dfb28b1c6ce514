import { createHash, createHmac } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { ListObjectsV2Command, S3Client, type _Object } from '@aws-sdk/client-s3';
import type { SourceCredentials } from '../credentials.js';
import { syncError, SyncError } from '../errors.js';
import type { S3Spec } from '../spec.js';

/**
 * S3 access for the populator. Listing goes through @aws-sdk/client-s3 (one request per 1,000 keys,
 * so its per-request cost does not matter). Object downloads, one request per object, use a lean
 * SigV4-signed GET over a keep-alive agent instead: the SDK's middleware stack costs about 1 ms of
 * CPU per request, several times the signing itself, and that CPU is what separates a sync of many
 * small objects from rclone's speed.
 *
 * Without credentials every request is anonymous: the driver's own cloud identity (environment,
 * instance metadata) is never used on behalf of a volume.
 */

export interface ListedObject {
  key: string;
  etag: string;
  size: number;
}

const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';

export class S3Access {
  private readonly sdk: S3Client;
  private readonly agent: http.Agent;
  private readonly endpoint: URL;
  private readonly pathStyle: boolean;
  private signingKey?: { day: string; key: Buffer };

  constructor(
    private readonly spec: S3Spec,
    private readonly credentials: SourceCredentials | undefined,
    concurrency: number,
  ) {
    this.pathStyle = spec.forcePathStyle ?? (spec.endpoint !== undefined || spec.bucket.includes('.'));
    this.endpoint = new URL(spec.endpoint ?? `https://s3.${spec.region}.amazonaws.com`);
    const Agent = this.endpoint.protocol === 'https:' ? https.Agent : http.Agent;
    this.agent = new Agent({ keepAlive: true, maxSockets: concurrency, keepAliveMsecs: 10_000 });
    const anonymous = !credentials?.accessKeyId;
    this.sdk = new S3Client({
      region: spec.region,
      ...(spec.endpoint ? { endpoint: spec.endpoint } : {}),
      forcePathStyle: this.pathStyle,
      // Current SDKs otherwise frame bodies as aws-chunked and validate checksums some S3-compatible
      // servers do not implement, which silently corrupts data.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
      requestHandler: { httpAgent: this.agent, httpsAgent: this.agent },
      credentials: anonymous
        ? { accessKeyId: 'anonymous', secretAccessKey: 'anonymous' }
        : {
            accessKeyId: credentials.accessKeyId!,
            secretAccessKey: credentials.secretAccessKey ?? '',
            ...(credentials.sessionToken ? { sessionToken: credentials.sessionToken } : {}),
          },
      ...(anonymous ? { signer: { sign: async (request) => request } } : {}),
    });
  }

  /** Every object under the prefix, in key order. */
  async *list(prefix: string, signal: AbortSignal): AsyncGenerator<ListedObject> {
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.sdk.send(
          new ListObjectsV2Command({ Bucket: this.spec.bucket, Prefix: prefix, ContinuationToken: token }),
          { abortSignal: signal },
        );
      } catch (err) {
        throw this.listFailure(err, signal);
      }
      for (const object of page.Contents ?? []) yield toListed(object);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /**
   * GET of one object: the response stream, or undefined when the object no longer exists. Retries
   * connection failures and server errors.
   */
  async get(key: string, signal: AbortSignal): Promise<IncomingMessage | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        const response = await this.request(key, signal);
        const code = response.statusCode ?? 0;
        if (code === 200) return response;
        const body = await drain(response);
        if (code === 404) return undefined;
        if (code === 401 || code === 403) {
          throw syncError(
            'auth',
            `GET s3://${this.spec.bucket}/${key}: access denied (${errorCode(body) ?? code})`,
          );
        }
        throw syncError(
          'network',
          `GET s3://${this.spec.bucket}/${key}: HTTP ${code} ${errorCode(body) ?? ''}`,
        );
      } catch (err) {
        if (signal.aborted || (err instanceof SyncError && err.permanent) || attempt >= 3) throw err;
        await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
      }
    }
  }

  destroy(): void {
    this.sdk.destroy();
    this.agent.destroy();
  }

  private request(key: string, signal: AbortSignal): Promise<IncomingMessage> {
    const { host, path } = this.objectLocation(key);
    const headers = this.sign(host, path);
    const transport = this.endpoint.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = transport.request(
        {
          protocol: this.endpoint.protocol,
          hostname: this.pathStyle ? this.endpoint.hostname : `${this.spec.bucket}.${this.endpoint.hostname}`,
          port: this.endpoint.port || undefined,
          path,
          method: 'GET',
          agent: this.agent,
          headers,
          signal,
        },
        resolve,
      );
      req.on('error', reject);
      req.end();
    });
  }

  private objectLocation(key: string): { host: string; path: string } {
    const base = this.endpoint.pathname.replace(/\/+$/, '');
    const encodedKey = key.split('/').map(encodeRfc3986).join('/');
    if (this.pathStyle)
      return { host: this.endpoint.host, path: `${base}/${this.spec.bucket}/${encodedKey}` };
    return { host: `${this.spec.bucket}.${this.endpoint.host}`, path: `${base}/${encodedKey}` };
  }

  private sign(host: string, path: string): Record<string, string> {
    const creds = this.credentials;
    if (!creds?.accessKeyId) return { host };
    const now = new Date();
    const day = now.toISOString().slice(0, 10).replace(/-/g, '');
    if (this.signingKey?.day !== day) {
      this.signingKey = { day, key: deriveSigningKey(creds.secretAccessKey ?? '', day, this.spec.region) };
    }
    return signGet({
      host,
      path,
      region: this.spec.region,
      accessKeyId: creds.accessKeyId,
      sessionToken: creds.sessionToken,
      signingKey: this.signingKey.key,
      now,
    });
  }

  private listFailure(err: unknown, signal: AbortSignal): Error {
    if (signal.aborted) return err as Error;
    const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    const where = `s3://${this.spec.bucket}/${this.spec.prefix}`;
    const code = e.$metadata?.httpStatusCode;
    if (e.name === 'NoSuchBucket' || code === 404)
      return syncError('not-found', `${where}: no such bucket`, err);
    if (
      code === 401 ||
      code === 403 ||
      ['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken'].includes(e.name ?? '')
    ) {
      return syncError('auth', `${where}: access denied (${e.name})`, err);
    }
    return syncError('network', `listing ${where} failed: ${e.name ?? ''} ${e.message ?? ''}`.trim(), err);
  }
}

/** The SigV4 signing key of a day; four HMACs, so it is cached for the day. */
export function deriveSigningKey(secretAccessKey: string, day: string, region: string): Buffer {
  const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();
  return hmac(hmac(hmac(hmac(`AWS4${secretAccessKey}`, day), region), 's3'), 'aws4_request');
}

/**
 * Headers of an AWS Signature Version 4 signed GET without query string or body. `path` is the
 * URI-encoded path exactly as sent (S3 does not encode it twice).
 */
export function signGet(request: {
  host: string;
  path: string;
  region: string;
  accessKeyId: string;
  sessionToken?: string | undefined;
  signingKey: Buffer;
  now: Date;
}): Record<string, string> {
  const amzDate = request.now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
  const day = amzDate.slice(0, 8);
  const headers: Record<string, string> = {
    host: request.host,
    'x-amz-content-sha256': UNSIGNED_PAYLOAD,
    'x-amz-date': amzDate,
    ...(request.sessionToken ? { 'x-amz-security-token': request.sessionToken } : {}),
  };
  const names = Object.keys(headers).sort();
  const canonical = [
    'GET',
    request.path,
    '',
    ...names.map((name) => `${name}:${headers[name]}`),
    '',
    names.join(';'),
    UNSIGNED_PAYLOAD,
  ].join('\n');
  const scope = `${day}/${request.region}/s3/aws4_request`;
  const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${createHash('sha256').update(canonical).digest('hex')}`;
  const signature = createHmac('sha256', request.signingKey).update(toSign).digest('hex');
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${request.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
  return headers;
}

function toListed(object: _Object): ListedObject {
  return { key: object.Key ?? '', etag: object.ETag ?? '', size: Number(object.Size ?? 0) };
}

/** URI encoding as SigV4 wants it: everything but A-Z a-z 0-9 - _ . ~ */
function encodeRfc3986(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

async function drain(response: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response) {
    if (size < 64 * 1024) chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return Buffer.concat(chunks).toString('utf8');
}

function errorCode(body: string): string | undefined {
  return /<Code>([^<]*)<\/Code>/.exec(body)?.[1];
}
