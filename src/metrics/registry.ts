import { createServer, type Server } from 'node:http';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export const METRIC_PREFIX = 'sharedvolume_';

/** The driver's Prometheus metrics; one instance per process. */
export class DriverMetrics {
  readonly registry = new Registry();

  readonly operations = new Counter({
    name: `${METRIC_PREFIX}csi_operations_total`,
    help: 'CSI calls handled, by method and gRPC status code.',
    labelNames: ['method', 'code'] as const,
    registers: [this.registry],
  });

  readonly duration = new Histogram({
    name: `${METRIC_PREFIX}csi_operation_duration_seconds`,
    help: 'Duration of CSI calls, by method.',
    labelNames: ['method'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  observe(method: string, code: string, seconds: number): void {
    this.operations.inc({ method, code });
    this.duration.observe({ method }, seconds);
  }
}

/** Serves /metrics (and /healthz) on host:port. */
export async function serveMetrics(metrics: DriverMetrics, address: string): Promise<Server> {
  const match = /^(.*):(\d+)$/.exec(address);
  if (!match) throw new Error(`--metrics-address must be host:port, got "${address}"`);
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      metrics.registry.metrics().then(
        (body) => res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(body),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    } else if (req.url === '/healthz') {
      res.writeHead(200).end('ok');
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(match[2]), match[1] || '0.0.0.0', resolve);
  });
  return server;
}
