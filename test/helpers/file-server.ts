import { createHash } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An HTTP server on 127.0.0.1 serving files the way the populator's http source expects: ETags and
 * conditional GETs, an optional bearer token, and an optional hold that sends half a body and waits
 * for the test to release it (a sync caught mid-download, deterministically). It records every
 * request and the most requests ever in flight at once per path.
 */

export interface ServedFile {
  body: Buffer;
  token?: string;
  /** Send the first half, then wait for `release(path)`. */
  hold?: boolean;
  /** Wait this long before answering, to make each sync take a while. */
  delayMs?: number;
}

export interface FileServer {
  base: string;
  url(path: string): string;
  files: Map<string, ServedFile>;
  set(path: string, body: string | Buffer, options?: Omit<ServedFile, 'body'>): void;
  /** Resolves once a held response for `path` has sent its first half. */
  held(path: string): Promise<void>;
  release(path: string): void;
  requests: { path: string; status: number; authorized: boolean }[];
  maxInFlight: Map<string, number>;
  stop(): Promise<void>;
}

const etagOf = (body: Buffer) => `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`;

export async function startFileServer(): Promise<FileServer> {
  const files = new Map<string, ServedFile>();
  const requests: FileServer['requests'] = [];
  const inFlight = new Map<string, number>();
  const maxInFlight = new Map<string, number>();
  const holds = new Map<
    string,
    { reached: Promise<void>; reach: () => void; release: () => void; gate: Promise<void> }
  >();
  const holdFor = (path: string) => {
    let entry = holds.get(path);
    if (!entry) {
      let reach!: () => void;
      let release!: () => void;
      const reached = new Promise<void>((r) => (reach = r));
      const gate = new Promise<void>((r) => (release = r));
      entry = { reached, reach, release, gate };
      holds.set(path, entry);
    }
    return entry;
  };

  const answer = async (
    path: string,
    file: ServedFile,
    ifNoneMatch: string | undefined,
    res: ServerResponse,
  ) => {
    if (file.delayMs) await new Promise((r) => setTimeout(r, file.delayMs));
    const etag = etagOf(file.body);
    if (ifNoneMatch === etag) return void res.writeHead(304, { etag }).end();
    res.writeHead(200, {
      etag,
      'content-length': file.body.length,
      'content-type': 'application/octet-stream',
    });
    if (!file.hold) return void res.end(file.body);
    const half = Math.floor(file.body.length / 2);
    res.write(file.body.subarray(0, half));
    const hold = holdFor(path);
    hold.reach();
    await hold.gate;
    holds.delete(path);
    res.end(file.body.subarray(half));
  };

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const file = files.get(path);
    const authorized = !file?.token || req.headers.authorization === `Bearer ${file.token}`;
    const record = { path, status: 0, authorized };
    requests.push(record);
    if (!file) return void res.writeHead((record.status = 404)).end();
    if (!authorized) return void res.writeHead((record.status = 401)).end();
    const now = (inFlight.get(path) ?? 0) + 1;
    inFlight.set(path, now);
    maxInFlight.set(path, Math.max(now, maxInFlight.get(path) ?? 0));
    const done = () => inFlight.set(path, (inFlight.get(path) ?? 1) - 1);
    res.once('close', done);
    answer(path, file, req.headers['if-none-match'], res).then(
      () => (record.status = res.statusCode),
      () => res.destroy(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    url: (path) => `${base}${path}`,
    files,
    set: (path, body, options = {}) => void files.set(path, { body: Buffer.from(body), ...options }),
    held: (path) => holdFor(path).reached,
    release: (path) => holdFor(path).release(),
    requests,
    maxInFlight,
    stop: async () => {
      for (const hold of holds.values()) hold.release();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
