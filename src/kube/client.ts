import { hostname } from 'node:os';
import type { CoreV1Api, CoreV1Event } from '@kubernetes/client-node';

/**
 * The driver's few Kubernetes API calls: read a PVC, read a Secret, post an Event on a PVC.
 * @kubernetes/client-node costs about 70 MiB of memory once loaded, so it is imported on first use:
 * drivers that never call the API (node plugins, classes without a source) never pay for it.
 * deploy/base/rbac-driver.yaml grants exactly these calls (test/deploy/rbac.test.ts checks it).
 */

export interface PvcRef {
  namespace: string;
  name: string;
  /** Ties Events to this PVC object (not a later one with the same name). */
  uid?: string;
}

export interface Pvc extends PvcRef {
  uid: string;
  annotations: Record<string, string>;
}

export interface KubeEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface KubeClient {
  readPvc(namespace: string, name: string): Promise<Pvc>;
  /** The Secret's data, decoded. */
  readSecret(namespace: string, name: string): Promise<Record<string, Buffer>>;
  createPvcEvent(pvc: PvcRef, event: KubeEvent): Promise<void>;
}

/** A failed API call; `status` is the HTTP status when the server answered. */
export class KubeApiError extends Error {
  constructor(
    message: string,
    readonly status: number | undefined,
  ) {
    super(message);
    this.name = 'KubeApiError';
  }
}

export type KubeClientFactory = () => Promise<KubeClient>;

const CALL_TIMEOUT_MS = 15_000;
// Kubernetes truncates longer Event messages anyway; keep ours readable in `kubectl describe`.
const MAX_EVENT_MESSAGE = 1024;

/**
 * Connects with KUBECONFIG when it is set, else with the pod's service account. Without either
 * there is no API to talk to, and saying so beats the library's fallback to localhost:8080.
 */
export async function connectKube(): Promise<KubeClient> {
  const k8s = await import('@kubernetes/client-node');
  const config = new k8s.KubeConfig();
  if (process.env.KUBECONFIG) config.loadFromDefault();
  else if (process.env.KUBERNETES_SERVICE_HOST) config.loadFromCluster();
  else throw new KubeApiError('no Kubernetes API: set KUBECONFIG or run in a cluster', undefined);
  return new ApiClient(config.makeApiClient(k8s.CoreV1Api));
}

/** One shared client per process, created on the first call that needs it. */
export function lazyKube(factory: KubeClientFactory = connectKube): KubeClientFactory {
  let client: Promise<KubeClient> | undefined;
  return () => {
    client ??= factory().catch((err: unknown) => {
      client = undefined;
      throw err;
    });
    return client;
  };
}

class ApiClient implements KubeClient {
  constructor(private readonly core: CoreV1Api) {}

  async readPvc(namespace: string, name: string): Promise<Pvc> {
    const pvc = await call(`PersistentVolumeClaim ${namespace}/${name}`, () =>
      this.core.readNamespacedPersistentVolumeClaim({ namespace, name }),
    );
    return {
      namespace,
      name,
      uid: pvc.metadata?.uid ?? '',
      annotations: pvc.metadata?.annotations ?? {},
    };
  }

  async readSecret(namespace: string, name: string): Promise<Record<string, Buffer>> {
    const secret = await call(`Secret ${namespace}/${name}`, () =>
      this.core.readNamespacedSecret({ namespace, name }),
    );
    const data: Record<string, Buffer> = {};
    for (const [key, value] of Object.entries(secret.data ?? {})) data[key] = Buffer.from(value, 'base64');
    return data;
  }

  async createPvcEvent(pvc: PvcRef, event: KubeEvent): Promise<void> {
    const body = pvcEvent(pvc, event, new Date());
    await call(`Event on PersistentVolumeClaim ${pvc.namespace}/${pvc.name}`, () =>
      this.core.createNamespacedEvent({ namespace: pvc.namespace, body }),
    );
  }
}

/** A core/v1 Event about a PVC, named the way kubectl names its own (`<object>.<hex time>`). */
export function pvcEvent(pvc: PvcRef, event: KubeEvent, now: Date): CoreV1Event {
  const suffix = `${now.getTime().toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}`;
  return {
    metadata: { name: `${pvc.name}.${suffix}`, namespace: pvc.namespace },
    involvedObject: {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      namespace: pvc.namespace,
      name: pvc.name,
      ...(pvc.uid ? { uid: pvc.uid } : {}),
    },
    type: event.type,
    reason: event.reason,
    message: event.message.slice(0, MAX_EVENT_MESSAGE),
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
    source: { component: 'sharedvolume-csi', host: hostname() },
    reportingComponent: 'sharedvolume-csi',
    reportingInstance: hostname(),
  };
}

/** Runs one API call with a deadline and turns any failure into a short KubeApiError. */
async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new KubeApiError(`${what}: no answer from the API server in 15s`, undefined)),
      CALL_TIMEOUT_MS,
    );
  });
  try {
    return await Promise.race([fn(), deadline]);
  } catch (err) {
    throw describeFailure(what, err);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The library's own message dumps response headers and body; keep the status and the API
 * server's one-line reason (a Status object never carries Secret data).
 */
function describeFailure(what: string, err: unknown): KubeApiError {
  if (err instanceof KubeApiError) return err;
  const status = (err as { code?: unknown }).code;
  if (typeof status === 'number') {
    const body = (err as { body?: unknown }).body;
    const reason = statusMessage(body) ?? `HTTP ${status}`;
    return new KubeApiError(`${what}: ${reason}`, status);
  }
  const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as { code?: string }).code;
  const message = err instanceof Error ? err.message : String(err);
  return new KubeApiError(`${what}: ${cause ?? message}`, undefined);
}

function statusMessage(body: unknown): string | undefined {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  const message = (parsed as { message?: unknown } | undefined)?.message;
  return typeof message === 'string' ? message : undefined;
}
