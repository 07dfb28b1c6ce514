import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';

/** Small pieces shared by the populator's two HTTP listeners (admin and webhook). */

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** "host:port", "[::1]:port" or ":port" (all interfaces) -> listen arguments. */
export function parseListenAddress(address: string, flag: string): { host: string; port: number } {
  const match = /^(.*):(\d+)$/.exec(address);
  if (!match || Number(match[2]) > 65535) throw new Error(`${flag} must be host:port, got "${address}"`);
  const host = match[1]!.replace(/^\[(.*)\]$/, '$1');
  return { host: host || '0.0.0.0', port: Number(match[2]) };
}

export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

export async function listen(
  address: { host: string; port: number },
  handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
): Promise<Server> {
  const server = createServer((req, res) => {
    handler(req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      if (!res.headersSent) sendJson(res, status, { error: (err as Error).message ?? String(err) });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** The whole request body, refused with 413 beyond `limit` bytes. */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpError(413, `request body larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The rest of the path after `prefix`, URL-decoded (volume ids contain "/", sent as %2F or not). */
export function pathParameter(pathname: string, prefix: string): string | undefined {
  if (!pathname.startsWith(prefix) || pathname.length === prefix.length) return undefined;
  try {
    return decodeURIComponent(pathname.slice(prefix.length));
  } catch {
    throw new HttpError(400, 'malformed percent-encoding in the path');
  }
}
