import { createHash, createHmac } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { ListObjectsV2Command, S3Client, type _Object } from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import type { SourceCredentials } from '../credentials.js';
import { syncError, SyncError } from '../errors.js';
import type { S3Spec } from '../spec.js';

/**
 * S3 access for the populator. Listing goes through @aws-sdk/client-s3 (one request per 1,000 keys,
 * so its per-request cost does not matter). Object downloads, one request per object, are plain
 * GETs over a keep-alive agent, signed by the SDK's own SigV4 signer (@smithy/signature-v4): the
 * SDK's middleware stack costs about 1 ms of CPU per request, many times the signing, and that CPU
 * is what separates a sync of many small objects from rclone's speed.
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
  private readonly signer: SignatureV4 | undefined;

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
    this.signer = anonymous ? undefined : getSigner(spec.region, credentials);
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

  private async request(key: string, signal: AbortSignal): Promise<IncomingMessage> {
    const { host, path } = this.objectLocation(key);
    const headers = await this.sign(host, path);
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

  private async sign(host: string, path: string): Promise<Record<string, string>> {
    if (!this.signer) return { host };
    const [hostname, port] = host.split(':');
    const signed = await this.signer.sign({
      method: 'GET',
      protocol: this.endpoint.protocol,
      hostname: hostname!,
      ...(port ? { port: Number(port) } : {}),
      path,
      query: {},
      headers: { host, 'x-amz-content-sha256': UNSIGNED_PAYLOAD },
    });
    return signed.headers;
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

function getSigner(region: string, credentials: SourceCredentials): SignatureV4 {
  return new SignatureV4({
    service: 's3',
    region,
    credentials: {
      accessKeyId: credentials.accessKeyId!,
      secretAccessKey: credentials.secretAccessKey ?? '',
      ...(credentials.sessionToken ? { sessionToken: credentials.sessionToken } : {}),
    },
    sha256: NodeSha256,
    // The path is already encoded once, as S3 wants it; S3 does not encode it twice.
    uriEscapePath: false,
    applyChecksum: false,
  });
}

type SourceData = string | ArrayBuffer | ArrayBufferView;

const bytes = (data: SourceData) =>
  typeof data === 'string'
    ? Buffer.from(data)
    : ArrayBuffer.isView(data)
      ? Buffer.from(data.buffer, data.byteOffset, data.byteLength)
      : Buffer.from(data);

/** The hash the signer wants, over node:crypto (the SDK's own adapter is not a direct dependency). */
class NodeSha256 {
  private readonly hash;

  constructor(secret?: SourceData) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }

  update(data: SourceData): void {
    this.hash.update(bytes(data));
  }

  async digest(): Promise<Uint8Array> {
    return this.hash.digest();
  }

  reset(): void {}
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
