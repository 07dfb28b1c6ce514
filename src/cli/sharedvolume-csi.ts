#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from 'commander';
import { hostname } from 'node:os';
import { loadBackendConfigs } from '../backends/registry.js';
import { Driver, type Mode } from '../driver.js';
import { createLogger, logProcessWarnings, type LogFormat } from '../logging/logger.js';
import { DEFAULT_ADMIN_ADDRESS, type PopulatorFlags } from '../populator/flags.js';
import { parseDuration } from '../populator/spec.js';
import { VERSION } from '../version.js';

function parseTopology(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of value.split(',').filter(Boolean)) {
    const [key, val] = pair.split('=');
    if (!key || val === undefined) throw new Error(`--topology expects key=value[,key=value], got "${pair}"`);
    out[key] = val;
  }
  return out;
}

const env = (flag: string) => `SHAREDVOLUME_${flag.toUpperCase().replace(/-/g, '_')}`;
const option = (flags: string, description: string, name: string) =>
  new Option(flags, description).env(env(name));

function parseGroupId(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('a numeric group id, such as 65532');
  return Number(value);
}

const program = new Command()
  .name('sharedvolume-csi')
  .description('CSI driver for shared file volumes')
  .version(VERSION)
  .addOption(
    option('--endpoint <url>', 'unix:///path.sock or tcp://host:port', 'endpoint').makeOptionMandatory(),
  )
  .addOption(
    option(
      '--endpoint-group <gid>',
      'unix socket: owned by this numeric group, mode 0660, so sidecars of that group need not be root',
      'endpoint-group',
    ).argParser(parseGroupId),
  )
  .addOption(option('--node-id <id>', "this node's id (default: host name)", 'node-id'))
  .addOption(option('--driver-name <name>', 'CSI driver name', 'driver-name').default('csi.sharedvolume.io'))
  .addOption(
    option('--mode <mode>', 'services to serve', 'mode')
      .choices(['controller', 'node', 'all'])
      .default('all'),
  )
  .addOption(
    option('--log-level <level>', 'error, warn, info or debug', 'log-level')
      .choices(['error', 'warn', 'info', 'debug'])
      .default('info'),
  )
  .addOption(
    option('--log-format <format>', 'json or text', 'log-format').choices(['json', 'text']).default('json'),
  )
  .addOption(option('--metrics-address <host:port>', 'serve Prometheus metrics here', 'metrics-address'))
  .addOption(option('--backends <file>', 'YAML file naming backend instances and their settings', 'backends'))
  .addOption(option('--local-root <dir>', 'add a local backend instance "local" rooted here', 'local-root'))
  .addOption(
    option('--state-dir <dir>', 'where the driver keeps its own mounts', 'state-dir').default(
      '/run/sharedvolume-csi',
    ),
  )
  .addOption(
    option(
      '--topology <pairs>',
      'topology segments reported by NodeGetInfo, key=value,...',
      'topology',
    ).default(''),
  )
  .addOption(
    option('--populator', 'controller: keep volumes with a source in sync (docs/populator.md)', 'populator'),
  )
  .addOption(
    option(
      '--admin-address <host:port>',
      'populator: loopback address for svctl sync; "off" disables it',
      'admin-address',
    ).default(DEFAULT_ADMIN_ADDRESS),
  )
  .addOption(
    option('--webhook-address <host:port>', 'populator: serve the sync webhook here', 'webhook-address'),
  )
  .addOption(
    option(
      '--webhook-secret-file <file>',
      'populator: file holding the webhook HMAC secret',
      'webhook-secret-file',
    ),
  )
  .addOption(
    option(
      '--sync-lease <duration>',
      "populator: how long a replica's claim on a volume's sync lasts unrenewed; a crashed replica's volumes move after it",
      'sync-lease',
    ).default('60s'),
  );

/** The populator's flags, or undefined when it is off. */
function populatorFlags(opts: {
  populator?: boolean;
  adminAddress: string;
  webhookAddress?: string;
  webhookSecretFile?: string;
  syncLease: string;
}): PopulatorFlags | undefined {
  if (!opts.populator) {
    if (opts.webhookAddress) throw new Error('--webhook-address needs --populator');
    return undefined;
  }
  const leaseMs = parseDuration(opts.syncLease);
  if (leaseMs === undefined || leaseMs < 2000) {
    throw new Error(`--sync-lease must be a duration of at least 2s, such as "60s"; got "${opts.syncLease}"`);
  }
  return {
    leaseDurationMs: leaseMs,
    ...(opts.adminAddress !== 'off' ? { adminAddress: opts.adminAddress } : {}),
    ...(opts.webhookAddress ? { webhookAddress: opts.webhookAddress } : {}),
    ...(opts.webhookSecretFile ? { webhookSecretFile: opts.webhookSecretFile } : {}),
  };
}

async function main(): Promise<void> {
  program.parse();
  const opts = program.opts<{
    endpoint: string;
    endpointGroup?: number;
    nodeId?: string;
    driverName: string;
    mode: Mode;
    logLevel: string;
    logFormat: LogFormat;
    metricsAddress?: string;
    backends?: string;
    localRoot?: string;
    stateDir: string;
    topology: string;
    populator?: boolean;
    adminAddress: string;
    webhookAddress?: string;
    webhookSecretFile?: string;
    syncLease: string;
  }>();
  const logger = createLogger(opts.logLevel, opts.logFormat);
  logProcessWarnings(logger);
  const driver = new Driver({
    endpoint: opts.endpoint,
    nodeId: opts.nodeId ?? hostname(),
    driverName: opts.driverName,
    mode: opts.mode,
    metricsAddress: opts.metricsAddress,
    backends: await loadBackendConfigs(opts.backends, opts.localRoot),
    stateDir: opts.stateDir,
    topology: parseTopology(opts.topology),
    ...(opts.endpointGroup !== undefined ? { endpointGroup: opts.endpointGroup } : {}),
    logger,
    populator: populatorFlags(opts),
  });
  await driver.start();
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('stopping', { signal });
    driver.stop().then(
      () => process.exit(0),
      (err: Error) => {
        logger.error('stop failed', { error: err.message });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: Error) => {
  console.error(`sharedvolume-csi: ${err.message}`);
  process.exit(1);
});
