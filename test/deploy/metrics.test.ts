import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rpc } from '../../src/cli/csi-client.js';
import { syncStateDir, writeRegistration } from '../../src/populator/registration.js';
import { parseSourceSpec } from '../../src/populator/spec.js';
import { mountCapability } from '../helpers/csi.js';
import { startDriverWithMetrics, type RunningDriverWithMetrics } from '../helpers/driver.js';
import { eventually } from '../helpers/eventually.js';
import { startFileServer, type FileServer } from '../helpers/file-server.js';
import { DEPLOY, findObject, kustomize, readYamlFile } from './deploy-files.js';

/*
 * A dashboard or alert may not silently point at a metric nobody exports. This starts the real
 * driver, scrapes its real /metrics and checks every metric name the PrometheusRules and the
 * Grafana dashboard use.
 */

/** Names that are not ours, and who exports them. */
const NOT_OURS = new Set([
  // kubelet, from the driver's NodeGetVolumeStats answers.
  'kubelet_volume_stats_capacity_bytes',
  'kubelet_volume_stats_used_bytes',
  // Prometheus itself, one series per scrape target.
  'up',
]);

/**
 * The populator's metrics, as it promises to export them. The driver below runs the
 * populator with one volume that has synced, so the sync rules and panels are checked against the
 * real scrape; this list is the contract they must also stay within.
 */
const PROMISED_SYNC_METRICS = [
  'sharedvolume_sync_duration_seconds_bucket',
  'sharedvolume_sync_duration_seconds_sum',
  'sharedvolume_sync_duration_seconds_count',
  'sharedvolume_syncs_total',
  'sharedvolume_sync_bytes_total',
  'sharedvolume_sync_last_success_timestamp_seconds',
  'sharedvolume_sync_interval_seconds',
];
const isSyncMetric = (name: string) => name.startsWith('sharedvolume_sync');

/** Labels Prometheus attaches to every scraped series (ServiceMonitor target labels), not in /metrics. */
const TARGET_LABELS = new Set([
  'job',
  'instance',
  'namespace',
  'pod',
  'service',
  'endpoint',
  'container',
  'node',
]);

const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'inf',
  'nan',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
]);

/** Metric names in a PromQL expression: identifiers that are not functions, keywords, labels or durations. */
export function metricNames(expr: string): Set<string> {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\boffset\s+\S+/g, ' ')
    .replace(/(?<![\w:])\d+(?:\.\d+)?(?:e[+-]?\d+)?/gi, ' ');
  const names = new Set<string>();
  for (const match of stripped.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    if (!match[2] && !KEYWORDS.has(match[1]!)) names.add(match[1]!);
  }
  return names;
}

/** `metric{label="..."}` selectors: the label names used with each metric. */
function selectorLabels(expr: string): [string, string[]][] {
  return [...expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}/g)].map((m) => [
    m[1]!,
    [...m[2]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1]!),
  ]);
}

function ruleExpressions(file: string): string[] {
  return readYamlFile(join(DEPLOY, 'monitoring', file)).flatMap((rule) =>
    rule.spec.groups.flatMap((g: { rules: { expr: string }[] }) => g.rules.map((r) => r.expr)),
  );
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function dashboardExpressions(panels: any[]): string[] {
  return panels.flatMap((p) => [
    ...(p.targets ?? []).map((t: { expr: string }) => t.expr),
    ...dashboardExpressions(p.panels ?? []),
  ]);
}

/** Sample names and the label names each carries, from the Prometheus text format. */
function parseScrape(text: string): Map<string, Set<string>> {
  const samples = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s/.exec(line);
    if (!match) continue;
    const labels = samples.get(match[1]!) ?? new Set<string>();
    for (const l of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) labels.add(l[1]!);
    samples.set(match[1]!, labels);
  }
  return samples;
}

const union = (sets: Set<string>[]) => new Set(sets.flatMap((s) => [...s]));

/** A volume as CreateVolume registers it with the populator: filled from a local HTTP server. */
async function registerPopulatedVolume(root: string, files: FileServer): Promise<void> {
  files.set('/metrics/data.txt', 'populated\n');
  const id = 'local/populated';
  const stateDir = syncStateDir(join(root, '.sharedvolume'), id);
  await mkdir(stateDir, { recursive: true });
  await mkdir(join(root, 'populated'));
  await writeRegistration({
    id,
    volumeDir: join(root, 'populated'),
    stateDir,
    spec: parseSourceSpec({
      type: 'http',
      http: { url: files.url('/metrics/data.txt') },
      syncInterval: '1h',
    }),
  });
}

describe('monitoring: alerts and dashboard use metrics that exist', function () {
  this.timeout(60_000);
  let root: string;
  let files: FileServer | undefined;
  let driver: RunningDriverWithMetrics | undefined;
  let scrape: Map<string, Set<string>>;

  const dashboard = JSON.parse(readFileSync(join(DEPLOY, 'monitoring', 'dashboard.json'), 'utf8'));
  const mainExprs = [
    ...ruleExpressions('alerts.yaml'),
    ...dashboardExpressions(dashboard.panels).filter((e) => ![...metricNames(e)].some(isSyncMetric)),
  ];
  const syncExprs = [
    ...ruleExpressions('sync-alerts.yaml'),
    ...dashboardExpressions(dashboard.panels).filter((e) => [...metricNames(e)].some(isSyncMetric)),
  ];

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'sv-metrics-'));
    files = await startFileServer();
    await registerPopulatedVolume(root, files);
    driver = await startDriverWithMetrics({
      args: ['--local-root', root, '--populator', '--admin-address', 'off'],
    });
    // Counters and histograms only show samples once observed: make real calls first.
    await rpc(driver.identity, 'GetPluginInfo', {});
    const created = await rpc(driver.controller, 'CreateVolume', {
      name: 'pvc-metrics',
      capacity_range: { required_bytes: 0, limit_bytes: 0 },
      volume_capabilities: [mountCapability()],
      parameters: {},
    });
    await rpc(driver.controller, 'DeleteVolume', { volume_id: created.volume!.volume_id, secrets: {} });
    // The populator fills its volume at start; its sync series appear once that sync is done.
    await eventually(async () => {
      const response = await fetch(`http://${driver!.metricsAddress}/metrics`);
      assert.equal(response.status, 200);
      scrape = parseScrape(await response.text());
      return scrape.has('sharedvolume_sync_last_success_timestamp_seconds');
    }, 'the populated volume to sync');
  });

  after(async () => {
    await driver?.stop();
    await files?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('the PromQL name extraction ignores functions, labels, keywords and durations', () => {
    const names = metricNames(
      'histogram_quantile(0.9, sum by (le, method) (rate(a_bucket{code!~"OK|x"}[$__rate_interval]))) / ignoring(pod) b offset 5m > 1e3 and on(volume) absent(up{job="x"} == 1)',
    );
    assert.deepEqual([...names].sort(), ['a_bucket', 'b', 'up']);
  });

  it('the driver serves /metrics and /healthz', async () => {
    assert.ok(scrape.size > 10);
    assert.equal(await (await fetch(`http://${driver!.metricsAddress}/healthz`)).text(), 'ok');
  });

  it("every metric in alerts.yaml and the non-sync dashboard panels is in the scrape (or is kubelet's or Prometheus')", () => {
    const used = union(mainExprs.map(metricNames));
    // Guard against an extraction that silently finds nothing: the CSI metrics are always checked.
    for (const name of [
      'sharedvolume_csi_operations_total',
      'sharedvolume_csi_operation_duration_seconds_bucket',
    ]) {
      assert.ok(used.has(name), `${name} is no longer used by any alert or panel`);
    }
    const missing = [...used].filter((n) => !NOT_OURS.has(n) && !scrape.has(n));
    assert.deepEqual(missing, [], 'metrics used but not exported');
    for (const expr of mainExprs) {
      for (const [metric, labels] of selectorLabels(expr)) {
        if (!scrape.has(metric)) continue;
        for (const label of labels.filter((l) => !TARGET_LABELS.has(l)))
          assert.ok(scrape.get(metric)!.has(label), `${metric} has no label ${label}: ${expr}`);
      }
    }
  });

  it("sync rules and panels use the populator's metrics, all in the scrape of a driver running it", () => {
    const used = union(syncExprs.map(metricNames));
    assert.ok(used.size >= 4, 'the sync alerts and panels exist');
    const ours = [...used].filter((n) => !NOT_OURS.has(n));
    assert.deepEqual(
      ours.filter((n) => !isSyncMetric(n)),
      [],
      'sync-alerts.yaml holds sync rules only',
    );
    assert.deepEqual(
      ours.filter((n) => !PROMISED_SYNC_METRICS.includes(n)),
      [],
      'not among the promised sync metrics',
    );
    assert.deepEqual(
      PROMISED_SYNC_METRICS.filter((n) => !scrape.has(n)),
      [],
      'promised sync metrics not exported',
    );
    for (const expr of syncExprs) {
      for (const [metric, labels] of selectorLabels(expr)) {
        for (const label of labels.filter((l) => !TARGET_LABELS.has(l)))
          assert.ok(scrape.get(metric)?.has(label), `${metric} has no label ${label}: ${expr}`);
      }
    }
    for (const [metric, labels] of [...scrape].filter(([name]) => isSyncMetric(name))) {
      assert.ok(labels.has('volume'), `${metric} is per volume`);
    }
    assert.deepEqual(
      [...union(ruleExpressions('alerts.yaml').map(metricNames))].filter(isSyncMetric),
      [],
      'alerts.yaml holds no sync rule',
    );
  });

  it('job matchers name the Services the ServiceMonitor scrapes', async () => {
    const objects = [...(await kustomize('base')), ...(await kustomize('monitoring'))];
    const monitor = findObject(objects, 'ServiceMonitor', 'sharedvolume-csi');
    const scraped = objects
      .filter((o) => o.kind === 'Service')
      .filter((s) =>
        Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => s.metadata.labels?.[k] === v),
      )
      .filter((s) =>
        s.spec.ports.some((p: { name: string }) =>
          monitor.spec.endpoints.some((e: { port: string }) => e.port === p.name),
        ),
      )
      .map((s) => s.metadata.name);
    assert.deepEqual(scraped.sort(), ['sharedvolume-csi-controller', 'sharedvolume-csi-node']);
    const matchers = [...mainExprs, ...syncExprs].flatMap((e) => [
      ...e.matchAll(/\bjob\s*(=~|=)\s*"([^"]+)"/g),
    ]);
    assert.ok(matchers.length > 0);
    for (const [, op, value] of matchers) {
      const matches =
        op === '=' ? scraped.includes(value!) : scraped.some((n) => new RegExp(`^(?:${value})$`).test(n));
      assert.ok(matches, `job${op}"${value}" matches no scraped Service`);
    }
  });
});
