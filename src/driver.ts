import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { Server as HttpServer } from 'node:http';
import type { Logger } from 'winston';
import { BackendRegistry, createBackend, type BackendConfig } from './backends/registry.js';
import { controllerService } from './controller/service.js';
import { identityService } from './identity/service.js';
import { DriverMetrics, serveMetrics } from './metrics/registry.js';
import { VolumeMounts } from './mount/volume-mounts.js';
import { nodeService } from './node/service.js';
import type { PopulatorFlags } from './populator/flags.js';
import type { PopulatorRuntime } from './populator/runtime.js';
import { grpcAddress, parseEndpoint, prepareUnixSocket, shareUnixSocket } from './rpc/endpoint.js';
import { wrapService, type RpcRuntime } from './rpc/handler.js';
import { VolumeLocks } from './rpc/locks.js';
import { loadCsi } from './rpc/proto.js';
import { ContentSources } from './volumes/content.js';
import { snapshotHandlers } from './controller/snapshots.js';
import { Snapshotter } from './snapshots/snapshotter.js';
import type { ControllerHandlers } from './generated/csi/v1/Controller.js';
import { Provisioner } from './volumes/provisioner.js';
import { VERSION } from './version.js';
import { unlink } from 'node:fs/promises';

export type Mode = 'controller' | 'node' | 'all';

export interface DriverOptions {
  endpoint: string;
  nodeId: string;
  driverName: string;
  mode: Mode;
  metricsAddress: string | undefined;
  backends: BackendConfig[];
  stateDir: string;
  topology: Record<string, string>;
  /** Group that may use the unix socket (mode 0660); undefined: the driver's own user only. */
  endpointGroup?: number;
  logger: Logger;
  /** Runs the populator (controller side) when set. */
  populator?: PopulatorFlags;
}

/** Assembles the services for the chosen mode and serves them on one endpoint. */
export class Driver {
  // Channelz (gRPC's introspection service) is never served here; left on, it does per-call bookkeeping.
  private readonly server = new Server({ 'grpc.enable_channelz': 0 });
  private readonly registry: BackendRegistry;
  private readonly metrics = new DriverMetrics();
  private metricsServer: HttpServer | undefined;
  populator: PopulatorRuntime | undefined;
  private provisioner: Provisioner | undefined;
  private socketPath: string | undefined;

  constructor(private readonly options: DriverOptions) {
    this.registry = new BackendRegistry(
      options.backends.map((c) => createBackend(c, { stateDir: options.stateDir })),
    );
    const runtime: RpcRuntime = { logger: options.logger, metrics: this.metrics, locks: new VolumeLocks() };
    const csi = loadCsi().csi.v1;
    const controller = options.mode !== 'node';
    this.server.addService(
      csi.Identity.service,
      wrapService(
        identityService(
          this.registry,
          {
            driverName: options.driverName,
            version: VERSION,
            controller,
            topology: Object.keys(options.topology).length > 0,
            probeTimeoutMs: 5000,
          },
          options.logger,
        ),
        runtime,
      ),
    );
    if (controller) {
      const snapshotter = new Snapshotter(this.registry, options.logger);
      const provisioner = new Provisioner(this.registry, new ContentSources(this.registry, snapshotter));
      this.provisioner = provisioner;
      this.server.addService(
        csi.Controller.service,
        wrapService<ControllerHandlers>(
          { ...controllerService(provisioner), ...snapshotHandlers(snapshotter) },
          runtime,
        ),
      );
    }
    if (options.mode !== 'controller') {
      const identity = { nodeId: options.nodeId, topology: options.topology };
      this.server.addService(
        csi.Node.service,
        wrapService(nodeService(this.registry, new VolumeMounts(), identity), runtime),
      );
    }
  }

  async start(): Promise<void> {
    const endpoint = parseEndpoint(this.options.endpoint);
    if (this.options.endpointGroup !== undefined && endpoint.kind !== 'unix')
      throw new Error('--endpoint-group applies to a unix:// endpoint only');
    if (this.options.mode !== 'node') await Promise.all(this.registry.all().map((b) => b.init?.()));
    // Before the socket exists: a CreateVolume must never find the populator still loading.
    await this.startPopulator();
    if (endpoint.kind === 'unix') {
      await prepareUnixSocket(endpoint.path);
      this.socketPath = endpoint.path;
    }
    await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(grpcAddress(endpoint), ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(err) : resolve(port),
      ),
    );
    if (this.socketPath && this.options.endpointGroup !== undefined) {
      // A socket the sidecars cannot use is a failed start, and nothing of it stays behind.
      await shareUnixSocket(this.socketPath, this.options.endpointGroup).catch(async (err: Error) => {
        await this.stop();
        throw new Error(`--endpoint-group ${this.options.endpointGroup}: ${err.message}`);
      });
    }
    if (this.options.metricsAddress)
      this.metricsServer = await serveMetrics(this.metrics, this.options.metricsAddress);
    this.options.logger.info('serving', {
      endpoint: this.options.endpoint,
      mode: this.options.mode,
      backends: this.registry.all().map((b) => `${b.instance}(${b.kind})`),
      version: VERSION,
    });
  }

  /** The populator and its SDKs load only when enabled: a driver without it does not pay their memory. */
  private async startPopulator(): Promise<void> {
    if (this.options.mode === 'node' || !this.options.populator) return;
    const { PopulatorRuntime } = await import('./populator/runtime.js');
    const deps = {
      logger: this.options.logger,
      metrics: this.metrics.registry,
      backends: () => this.registry.all(),
    };
    this.populator = new PopulatorRuntime(this.options.populator, deps);
    await this.populator.start();
    this.provisioner?.attachPopulation(await this.populator.volumes());
  }

  /** Lets in-flight calls finish, then releases mounts the controller made and removes the socket. */
  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    await new Promise<void>((resolve) =>
      this.metricsServer ? this.metricsServer.close(() => resolve()) : resolve(),
    );
    await this.populator?.stop();
    await this.registry.close();
    if (this.socketPath) await unlink(this.socketPath).catch(() => undefined);
  }
}
