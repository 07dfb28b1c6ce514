import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PutObjectCommand, DeleteObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort } from './ports.js';
import { ProcessGroup } from './processes.js';

/**
 * s3rver in a child process on 127.0.0.1 (see s3rver-main.ts for why a child), with an optional
 * counting proxy in front that records every request's method and query: tests prove a resync made
 * no GET or HEAD per object.
 */

export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface S3rverInstance {
  endpoint: string;
  client: S3Client;
  put(bucket: string, key: string, body: string | Buffer): Promise<void>;
  remove(bucket: string, key: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startS3rver(buckets: string[]): Promise<S3rverInstance> {
  const dir = await mkdtemp(join(tmpdir(), 'sv-s3rver-'));
  const processes = new ProcessGroup();
  try {
    const port = await freePort();
    const main = join(dirname(fileURLToPath(import.meta.url)), 's3rver-main.js');
    const child = processes.spawn(
      's3rver',
      process.execPath,
      ['--openssl-legacy-provider', main, String(port), dir, ...buckets],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
      child.once('exit', (code) => reject(new Error(`s3rver exited with ${code}`)));
    });
    const endpoint = `http://127.0.0.1:${port}`;
    const client = s3Client(endpoint);
    return {
      endpoint,
      client,
      put: async (bucket, key, body) => {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
      },
      remove: async (bucket, key) => {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      },
      stop: async () => {
        client.destroy();
        await processes.stopAll();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await processes.stopAll();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** A client for seeding: the two checksum settings keep s3rver from storing aws-chunked framing. */
export function s3Client(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

export interface RecordedRequest {
  method: string;
  url: string;
  authorization: boolean;
}

export interface CountingProxy {
  endpoint: string;
  requests: RecordedRequest[];
  /** Requests for single objects (GET or HEAD of a key, not a bucket listing). */
  objectRequests(): RecordedRequest[];
  listRequests(): RecordedRequest[];
  stop(): Promise<void>;
}

/** Forwards to `target` unchanged (the Host header too, so signatures stay valid) and records. */
export async function startCountingProxy(target: string): Promise<CountingProxy> {
  const { hostname, port } = new URL(target);
  const requests: RecordedRequest[] = [];
  const server: Server = createServer((req, res) => {
    requests.push({
      method: req.method ?? '',
      url: req.url ?? '',
      authorization: Boolean(req.headers.authorization),
    });
    const upstream = request(
      { hostname, port, method: req.method, path: req.url, headers: req.headers },
      (response) => {
        res.writeHead(response.statusCode ?? 502, response.headers);
        response.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  const listenPort = await freePort();
  await new Promise<void>((resolve) => server.listen(listenPort, '127.0.0.1', resolve));
  const isObject = (r: RecordedRequest) => {
    const path = new URL(r.url, 'http://x').pathname.split('/').filter(Boolean);
    return (r.method === 'GET' || r.method === 'HEAD') && path.length >= 2;
  };
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    objectRequests: () => requests.filter(isObject),
    listRequests: () => requests.filter((r) => r.method === 'GET' && !isObject(r)),
    stop: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
