import { spawn } from 'node:child_process';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * git smart HTTP on 127.0.0.1: `git http-backend` (the CGI program shipped with git) behind a Node
 * http server that demands basic auth. Every request is recorded so tests can check what a client
 * sent (never a password in a URL).
 */

export interface GitHttpRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  status: number;
}

export interface GitHttpServer {
  /** http://127.0.0.1:PORT/<name> for a bare repository `<projectRoot>/<name>`. */
  url(name: string): string;
  requests: GitHttpRequest[];
  stop(): Promise<void>;
}

const HTTP_BACKEND = '/usr/lib/git-core/git-http-backend';

export async function startGitHttpServer(
  projectRoot: string,
  users: Record<string, string>,
): Promise<GitHttpServer> {
  const requests: GitHttpRequest[] = [];
  const children = new Set<ReturnType<typeof spawn>>();
  const server: Server = createServer((req, res) => {
    const record: GitHttpRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      status: 0,
    };
    requests.push(record);
    const user = authorizedUser(req.headers.authorization, users);
    if (!user) {
      record.status = 401;
      res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' }).end();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const child = spawn(HTTP_BACKEND, [], {
      env: {
        PATH: process.env.PATH,
        GIT_PROJECT_ROOT: projectRoot,
        GIT_HTTP_EXPORT_ALL: '1',
        GIT_CONFIG_NOSYSTEM: '1',
        GIT_CONFIG_GLOBAL: '/dev/null',
        REQUEST_METHOD: req.method,
        PATH_INFO: decodeURIComponent(url.pathname),
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        REMOTE_USER: user,
        REMOTE_ADDR: '127.0.0.1',
        GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
        HTTP_CONTENT_ENCODING: String(req.headers['content-encoding'] ?? ''),
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    children.add(child);
    child.on('exit', () => children.delete(child));
    req.pipe(child.stdin);
    relayCgiResponse(child.stdout, (status, headers) => {
      record.status = status;
      res.writeHead(status, headers);
    }).then(
      (rest) => rest.pipe(res),
      () => res.destroy(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (name) => `http://127.0.0.1:${port}/${name}`,
    requests,
    stop: async () => {
      for (const child of children) child.kill('SIGKILL');
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function authorizedUser(header: string | undefined, users: Record<string, string>): string | undefined {
  const match = /^Basic (.+)$/.exec(header ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const [user, password] = [decoded.slice(0, colon), decoded.slice(colon + 1)];
  return users[user] !== undefined && users[user] === password ? user : undefined;
}

/** Reads the CGI header block ("Status: 200 OK", "Content-Type: ...") and hands back the body stream. */
function relayCgiResponse(
  stdout: NodeJS.ReadableStream,
  writeHead: (status: number, headers: Record<string, string>) => void,
): Promise<NodeJS.ReadableStream> {
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      stdout.off('data', onData);
      stdout.pause();
      const headers: Record<string, string> = {};
      let status = 200;
      for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === 'status') status = Number(value.split(' ')[0]);
        else headers[name] = value;
      }
      writeHead(status, headers);
      const rest = head.subarray(end + 4);
      if (rest.length > 0) stdout.unshift(rest);
      resolve(stdout);
    };
    stdout.on('data', onData);
    stdout.on('error', reject);
  });
}
