import { randomBytes, randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

/**
 * A stand-in for the Kubernetes API server (no real one can run here), serving exactly the three
 * calls the driver makes, the way the API server answers them:
 *
 *   GET  /api/v1/namespaces/{ns}/persistentvolumeclaims/{name}   200 object | 404 Status
 *   GET  /api/v1/namespaces/{ns}/secrets/{name}                  200 object (data base64) | 404 | 403
 *   POST /api/v1/namespaces/{ns}/events                          201 object | 400 (namespace mismatch) | 409
 *
 * Every request needs the bearer token of the kubeconfig it writes (else 401). Anything else is a
 * 404 and is recorded, so a test can assert the driver made no other call. Not covered: TLS, watch,
 * list, patch, field selectors, admission, and every other resource.
 */

export interface RecordedRequest {
  method: string;
  path: string;
  status: number;
  body?: unknown;
}

export interface KubeApiStandIn {
  url: string;
  requests: RecordedRequest[];
  /** Events created, as the driver sent them. */
  events: Record<string, unknown>[];
  setPvc(namespace: string, name: string, annotations?: Record<string, string>): string;
  setSecret(namespace: string, name: string, data: Record<string, string>): void;
  deleteSecret(namespace: string, name: string): void;
  /** Answer 403 for this Secret, as RBAC would. */
  forbidSecret(namespace: string, name: string): void;
  /** A kubeconfig file for this server (written into `dir`). */
  writeKubeconfig(dir: string): Promise<string>;
  stop(): Promise<void>;
}

const PVC_PATH = /^\/api\/v1\/namespaces\/([a-z0-9-]+)\/persistentvolumeclaims\/([a-z0-9.-]+)$/;
const SECRET_PATH = /^\/api\/v1\/namespaces\/([a-z0-9-]+)\/secrets\/([a-z0-9.-]+)$/;
const EVENTS_PATH = /^\/api\/v1\/namespaces\/([a-z0-9-]+)\/events$/;

function status(code: number, reason: string, message: string) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

export async function startKubeApi(): Promise<KubeApiStandIn> {
  const token = randomBytes(16).toString('hex');
  const pvcs = new Map<string, Record<string, unknown>>();
  const secrets = new Map<string, Record<string, string>>();
  const forbidden = new Set<string>();
  const eventNames = new Set<string>();
  const requests: RecordedRequest[] = [];
  const events: Record<string, unknown>[] = [];

  const handle = (req: IncomingMessage, body: unknown): [number, unknown] => {
    if (req.headers.authorization !== `Bearer ${token}`)
      return [401, status(401, 'Unauthorized', 'Unauthorized')];
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    let m: RegExpExecArray | null;
    if (req.method === 'GET' && (m = PVC_PATH.exec(path))) {
      const pvc = pvcs.get(`${m[1]}/${m[2]}`);
      return pvc ? [200, pvc] : [404, status(404, 'NotFound', `persistentvolumeclaims "${m[2]}" not found`)];
    }
    if (req.method === 'GET' && (m = SECRET_PATH.exec(path))) {
      if (forbidden.has(`${m[1]}/${m[2]}`)) {
        const who = 'system:serviceaccount:sharedvolume-csi:sharedvolume-csi-controller';
        return [
          403,
          status(
            403,
            'Forbidden',
            `secrets "${m[2]}" is forbidden: User "${who}" cannot get resource "secrets" in API group "" in the namespace "${m[1]}"`,
          ),
        ];
      }
      const data = secrets.get(`${m[1]}/${m[2]}`);
      if (!data) return [404, status(404, 'NotFound', `secrets "${m[2]}" not found`)];
      const encoded = Object.fromEntries(
        Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
      );
      return [
        200,
        {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: m[2], namespace: m[1] },
          type: 'Opaque',
          data: encoded,
        },
      ];
    }
    if (req.method === 'POST' && (m = EVENTS_PATH.exec(path))) return createEvent(m[1]!, body);
    return [404, status(404, 'NotFound', 'the server could not find the requested resource')];
  };

  const createEvent = (namespace: string, body: unknown): [number, unknown] => {
    const event = body as { metadata?: { name?: string; namespace?: string }; involvedObject?: unknown };
    const name = event?.metadata?.name;
    if (!name || !event.involvedObject)
      return [422, status(422, 'Invalid', 'metadata.name and involvedObject are required')];
    if (event.metadata?.namespace && event.metadata.namespace !== namespace) {
      return [
        400,
        status(
          400,
          'BadRequest',
          'the namespace of the provided object does not match the namespace sent on the request',
        ),
      ];
    }
    if (eventNames.has(`${namespace}/${name}`))
      return [409, status(409, 'AlreadyExists', `events "${name}" already exists`)];
    eventNames.add(`${namespace}/${name}`);
    events.push(event as Record<string, unknown>);
    return [201, { ...event, metadata: { ...event.metadata, namespace, uid: randomUUID() } }];
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        body = text;
      }
      const [code, answer] = handle(req, body);
      requests.push({
        method: req.method ?? '',
        path: req.url ?? '',
        status: code,
        ...(body !== undefined ? { body } : {}),
      });
      res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    requests,
    events,
    setPvc(namespace, name, annotations = {}) {
      const uid = randomUUID();
      pvcs.set(`${namespace}/${name}`, {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name, namespace, uid, annotations },
        spec: { accessModes: ['ReadWriteMany'], resources: { requests: { storage: '1Gi' } } },
      });
      return uid;
    },
    setSecret: (namespace, name, data) => {
      // Fail in the test that passes bad data, not as a request that never gets an answer.
      const bad = Object.entries(data).find(([, v]) => typeof v !== 'string');
      if (bad) throw new TypeError(`Secret ${namespace}/${name}: data "${bad[0]}" is not a string`);
      secrets.set(`${namespace}/${name}`, data);
    },
    deleteSecret: (namespace, name) => void secrets.delete(`${namespace}/${name}`),
    forbidSecret: (namespace, name) => void forbidden.add(`${namespace}/${name}`),
    async writeKubeconfig(dir) {
      const file = join(dir, 'kubeconfig');
      const config = [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        `  - name: stand-in`,
        `    cluster: { server: "${url}", insecure-skip-tls-verify: true }`,
        'users:',
        `  - name: driver`,
        `    user: { token: "${token}" }`,
        'contexts:',
        '  - name: stand-in',
        '    context: { cluster: stand-in, user: driver }',
        'current-context: stand-in',
        '',
      ].join('\n');
      await writeFile(file, config, { mode: 0o600 });
      return file;
    },
    stop: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
