import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { Logger } from 'winston';
import type { Backend } from '../backends/backend.js';
import { SyncMetrics } from '../metrics/registry.js';
import { adminHandler } from './admin.js';
import type { PopulatorFlags } from './flags.js';
import { closeServer, isLoopbackHost, listen, parseListenAddress } from './http-server.js';
import { syncStateRoot } from './registration.js';
import { PopulatorService } from './service.js';
import type { PopulatedVolumes } from './volumes.js';
import { lazyKube } from '../kube/client.js';
import { readWebhookSecret, webhookHandler } from './webhook.js';

export { DEFAULT_ADMIN_ADDRESS, type PopulatorFlags } from './flags.js';

/**
 * The populator as the driver runs it (--populator, controller side): the service, its metrics,
 * the loopback admin endpoint for svctl and the optional public webhook.
 */

export interface PopulatorDeps {
  logger: Logger;
  metrics: Registry;
  backends: () => Backend[];
}

export class PopulatorRuntime {
  readonly service: PopulatorService;
  private readonly kube = lazyKube();
  private readonly servers: Server[] = [];

  constructor(
    private readonly flags: PopulatorFlags,
    private readonly deps: PopulatorDeps,
  ) {
    checkFlags(flags);
    this.service = new PopulatorService({
      logger: deps.logger,
      metrics: new SyncMetrics(deps.metrics),
      stateRoots: () => this.stateRoots(),
      kube: this.kube,
      ...(flags.leaseDurationMs ? { leaseDurationMs: flags.leaseDurationMs } : {}),
    });
  }

  /** What CreateVolume and DeleteVolume call; loaded with the Kubernetes client only when used. */
  async volumes(): Promise<PopulatedVolumes> {
    const { PopulatedVolumes } = await import('./volumes.js');
    return new PopulatedVolumes(this.service, this.kube);
  }

  async start(): Promise<void> {
    if (this.flags.webhookSecretFile) await readWebhookSecret(this.flags.webhookSecretFile);
    await this.service.start();
    if (this.flags.adminAddress) {
      const address = parseListenAddress(this.flags.adminAddress, '--admin-address');
      this.servers.push(await listen(address, adminHandler(this.service)));
    }
    if (this.flags.webhookAddress) {
      const address = parseListenAddress(this.flags.webhookAddress, '--webhook-address');
      const handler = webhookHandler(this.service, this.flags.webhookSecretFile!, this.deps.logger);
      this.servers.push(await listen(address, handler));
    }
    this.deps.logger.info('populator started', {
      admin: this.flags.adminAddress ?? 'off',
      webhook: this.flags.webhookAddress ?? 'off',
    });
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map(closeServer));
    await this.service.stop();
  }

  /** One state root per backend that answers; the others are retried at the next rescan. */
  private async stateRoots(): Promise<string[]> {
    const backends = this.deps.backends();
    const settled = await Promise.allSettled(backends.map((b) => b.metadataDirectory()));
    return settled.flatMap((result, i) => {
      if (result.status === 'fulfilled') return [syncStateRoot(result.value)];
      this.deps.logger.warn('backend unreachable for the populator', {
        backend: backends[i]!.instance,
        error: (result.reason as Error).message,
      });
      return [];
    });
  }
}

/** Fails fast at start on flags that cannot work. */
function checkFlags(flags: PopulatorFlags): void {
  if (flags.adminAddress) {
    const { host } = parseListenAddress(flags.adminAddress, '--admin-address');
    if (!isLoopbackHost(host)) {
      throw new Error(
        `--admin-address must be a loopback address (127.0.0.1, ::1, localhost): it has no authentication; got "${flags.adminAddress}"`,
      );
    }
  }
  if (flags.webhookAddress) {
    parseListenAddress(flags.webhookAddress, '--webhook-address');
    if (!flags.webhookSecretFile) throw new Error('--webhook-address needs --webhook-secret-file');
  }
}
