import { connect } from 'node:net';
import { chmod, chown, lstat, unlink, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';

export type Endpoint = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export function parseEndpoint(value: string): Endpoint {
  const unix = /^unix:\/\/(\/.+)$/.exec(value) ?? /^unix:(\/.+)$/.exec(value);
  if (unix) return { kind: 'unix', path: unix[1]! };
  const tcp = /^tcp:\/\/(.+):(\d+)$/.exec(value);
  if (tcp) return { kind: 'tcp', host: tcp[1]!, port: Number(tcp[2]) };
  throw new Error(`endpoint must be unix:///path.sock or tcp://host:port, got "${value}"`);
}

export function grpcAddress(endpoint: Endpoint): string {
  return endpoint.kind === 'unix' ? `unix:${endpoint.path}` : `${endpoint.host}:${endpoint.port}`;
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Clears a stale socket left by a crashed run; refuses a socket that a live process still serves. */
export async function prepareUnixSocket(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  let stats;
  try {
    stats = await lstat(path);
  } catch {
    return;
  }
  if (!stats.isSocket()) throw new Error(`${path} exists and is not a socket`);
  if (await socketAnswers(path)) throw new Error(`${path} is in use by a running process`);
  await unlink(path);
}

/**
 * Hands the socket to a group, read-write for owner and group only, so that sidecars running as that
 * group can connect without being root when the driver itself must be.
 */
export async function shareUnixSocket(path: string, gid: number): Promise<void> {
  await chown(path, -1, gid);
  await chmod(path, 0o660);
}
