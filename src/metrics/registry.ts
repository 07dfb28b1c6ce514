import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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
    // Event-loop lag sampled once a second: the default (every 10 ms) woke an idle driver 100 times a
    // second and cost it about 1% of a core.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 1000 });
  }

  observe(method: string, code: string, seconds: number): void {
    this.operations.inc({ method, code });
    this.duration.observe({ method }, seconds);
  }
}

/**
 * The populator's metrics, one series per volume (label `volume` = the CSI volume id). Every
 * replica exports the last success it knows from the shared status, so alerts take the max.
 * deploy/monitoring/sync-alerts.yaml and the dashboard use exactly these names.
 */
export class SyncMetrics {
  readonly duration: Histogram<'volume'>;
  readonly syncs: Counter<'volume' | 'result'>;
  readonly bytes: Counter<'volume'>;
  readonly lastSuccess: Gauge<'volume'>;
  readonly interval: Gauge<'volume'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.duration = new Histogram({
      name: `${METRIC_PREFIX}sync_duration_seconds`,
      help: 'Duration of populator syncs, by volume.',
      labelNames: ['volume'],
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers,
    });
    this.syncs = new Counter({
      name: `${METRIC_PREFIX}syncs_total`,
      help: 'Populator syncs, by volume and result (success or failure).',
      labelNames: ['volume', 'result'],
      registers,
    });
    this.bytes = new Counter({
      name: `${METRIC_PREFIX}sync_bytes_total`,
      help: 'Bytes written into volumes by populator syncs.',
      labelNames: ['volume'],
      registers,
    });
    this.lastSuccess = new Gauge({
      name: `${METRIC_PREFIX}sync_last_success_timestamp_seconds`,
      help: 'Unix time of the last successful sync of the volume.',
      labelNames: ['volume'],
      registers,
    });
    this.interval = new Gauge({
      name: `${METRIC_PREFIX}sync_interval_seconds`,
      help: 'Configured sync interval of the volume (0: filled once).',
      labelNames: ['volume'],
      registers,
    });
  }

  /** A volume this replica schedules: its interval and the last success recorded on the backend. */
  track(volume: string, intervalMs: number, lastSuccess: string | undefined): void {
    this.interval.set({ volume }, intervalMs / 1000);
    if (lastSuccess) this.lastSuccess.set({ volume }, Date.parse(lastSuccess) / 1000);
  }

  observe(volume: string, ok: boolean, seconds: number, bytes: number): void {
    this.duration.observe({ volume }, seconds);
    this.syncs.inc({ volume, result: ok ? 'success' : 'failure' });
    if (ok) {
      this.bytes.inc({ volume }, bytes);
      this.lastSuccess.set({ volume }, Date.now() / 1000);
    }
  }

  /** Drops a deleted volume's series. */
  forget(volume: string): void {
    this.duration.remove({ volume });
    this.syncs.remove({ volume, result: 'success' });
    this.syncs.remove({ volume, result: 'failure' });
    this.bytes.remove({ volume });
    this.lastSuccess.remove({ volume });
    this.interval.remove({ volume });
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
