import { status, type Client, type ServiceError } from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rpc } from '../../src/cli/csi-client.js';
import type { CreateVolumeRequest } from '../../src/generated/csi/v1/CreateVolumeRequest.js';
import type { Volume__Output } from '../../src/generated/csi/v1/Volume.js';
import type { VolumeCapability } from '../../src/generated/csi/v1/VolumeCapability.js';
import { startDriver, type RunningDriver } from '../helpers/driver.js';
import { allFixtures } from './all-fixtures.js';
import type { BackendFixture, StartedBackend } from './fixtures.js';
import { unmountUnder } from './mounts.js';

/** Real servers (glusterd, ganesha) take seconds to start and stop. */
const SETUP_TIMEOUT_MS = 300_000;

export const ACCESS_MODES = [
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_READER_ONLY',
  'MULTI_NODE_READER_ONLY',
  'MULTI_NODE_SINGLE_WRITER',
  'MULTI_NODE_MULTI_WRITER',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
] as const;
export type AccessMode = (typeof ACCESS_MODES)[number];

export function mountCap(
  mode: AccessMode = 'MULTI_NODE_MULTI_WRITER',
  mount: { mount_flags?: string[]; volume_mount_group?: string } = {},
): VolumeCapability {
  return {
    mount: {
      fs_type: '',
      mount_flags: mount.mount_flags ?? [],
      volume_mount_group: mount.volume_mount_group ?? '',
    },
    access_mode: { mode },
  };
}

export function blockCap(mode: AccessMode = 'SINGLE_NODE_WRITER'): VolumeCapability {
  return { block: {}, access_mode: { mode } };
}

export const MiB = 1024 * 1024;

/** The gRPC status a call ended with, OK included, for assertions over several concurrent calls. */
export async function codeOf(call: Promise<unknown>): Promise<status> {
  try {
    await call;
    return status.OK;
  } catch (err) {
    return (err as ServiceError).code;
  }
}

type UnaryMethod = (request: object, callback: (err: ServiceError | null) => void) => unknown;

/** Calls a unary method by its proto name, for walking capability tables that name RPCs. */
export function callByName(client: Client, method: string, request: object = {}): Promise<unknown> {
  const fn = (client as unknown as Record<string, UnaryMethod | undefined>)[method];
  if (!fn) return Promise.reject(new Error(`the generated client has no method ${method}`));
  return new Promise((resolve, reject) =>
    fn.call(client, request, (err) => (err ? reject(err) : resolve(undefined))),
  );
}

interface Started {
  backend: StartedBackend;
  driver: RunningDriver;
  scratch: string;
}

/**
 * One backend fixture plus one real driver process pointed at it, for one describe block. Tracks the
 * volumes the tests create and the temp dirs they mount into, so that stop() leaves nothing behind.
 */
export class FixtureSession {
  private started: Partial<Started> = {};
  private startAttempted = false;
  private readonly volumes = new Set<string>();
  private counter = 0;
  private instanceName: string | undefined;

  constructor(readonly fixture: BackendFixture) {}

  private get ready(): Started {
    const { backend, driver, scratch } = this.started;
    if (!backend || !driver || !scratch) throw new Error(`fixture ${this.fixture.name} is not started`);
    return { backend, driver, scratch };
  }

  get driver(): RunningDriver {
    return this.ready.driver;
  }

  get backend(): StartedBackend {
    return this.ready.backend;
  }

  /** A temp dir outside every backend root, for staging and target paths. */
  get scratch(): string {
    return this.ready.scratch;
  }

  async start(): Promise<void> {
    this.startAttempted = true;
    this.started.scratch = await mkdtemp(join(tmpdir(), `sv-conformance-${this.fixture.name}-`));
    this.started.backend = await this.fixture.start();
    this.started.driver = await startDriver({
      args: this.started.backend.driverArgs,
      env: this.started.backend.env,
    });
  }

  /** Undoes start() step by step; every step runs even when an earlier one failed. */
  async stop(): Promise<void> {
    const errors: unknown[] = [];
    const step = async (action: () => Promise<unknown>) => {
      try {
        await action();
      } catch (err) {
        errors.push(err);
      }
    };
    const { driver, scratch } = this.started;
    if (scratch) await step(() => unmountUnder(scratch));
    if (driver) {
      const exited = driver.process.exitCode !== null || driver.process.signalCode !== null;
      if (!exited) await step(() => this.deleteTrackedVolumes());
      // A dead driver cannot release its controller mounts; stop() would otherwise recurse into them.
      if (exited) await step(() => unmountUnder(driver.dir));
      await step(() => driver.stop());
      await step(() => unmountUnder(driver.dir));
      await step(() => rm(driver.dir, { recursive: true, force: true }));
    }
    if (this.startAttempted) await step(() => this.fixture.stop());
    if (scratch) await step(() => rm(scratch, { recursive: true, force: true }));
    this.started = {};
    if (errors.length > 0) throw errors[0];
  }

  private async deleteTrackedVolumes(): Promise<void> {
    for (const id of this.volumes) {
      await rpc(this.driver.controller, 'DeleteVolume', { volume_id: id }).catch(() => undefined);
    }
    this.volumes.clear();
  }

  parameters(extra: Record<string, string> = {}): Record<string, string> {
    return { ...this.backend.parameters, ...extra };
  }

  /** A volume name no other test in this session uses. */
  volumeName(label: string): string {
    return `${label}-${++this.counter}-${randomBytes(3).toString('hex')}`;
  }

  /** CreateVolume with this fixture's parameters; the volume is deleted in stop() if a test does not. */
  async createVolume(label: string, request: CreateVolumeRequest = {}): Promise<Volume__Output> {
    const response = await rpc(this.driver.controller, 'CreateVolume', {
      name: this.volumeName(label),
      volume_capabilities: [mountCap()],
      ...request,
      parameters: this.parameters(request.parameters),
    });
    this.track(response.volume!.volume_id);
    return response.volume!;
  }

  track(volumeId: string): void {
    this.volumes.add(volumeId);
  }

  /** The backend instance name, as the driver writes it in volume ids (`<instance>/<path>`). */
  async instance(): Promise<string> {
    if (!this.instanceName) {
      const volume = await this.createVolume('instance-probe');
      this.instanceName = volume.volume_id.slice(0, volume.volume_id.indexOf('/'));
    }
    return this.instanceName;
  }

  /** A well-formed id of this fixture's instance that names no volume. */
  async unknownVolumeId(): Promise<string> {
    return `${await this.instance()}/nope-${randomBytes(4).toString('hex')}`;
  }

  async tempDir(label: string): Promise<string> {
    return mkdtemp(join(this.scratch, `${label}-`));
  }

  /** The host directory of the local backend, when this fixture runs one; undefined for network backends. */
  localRoot(): string | undefined {
    const args = this.backend.driverArgs;
    const flag = args.indexOf('--local-root');
    return flag >= 0 ? args[flag + 1] : undefined;
  }

  /** All volume ids the driver lists, following next_token. */
  async listVolumeIds(): Promise<string[]> {
    const ids: string[] = [];
    let token = '';
    do {
      const page = await rpc(this.driver.controller, 'ListVolumes', { starting_token: token });
      ids.push(...page.entries.map((e) => e.volume!.volume_id));
      token = page.next_token;
    } while (token);
    return ids;
  }
}

/**
 * Declares the suite body once per backend fixture: a `describe(<fixture name>)` that starts the backend
 * and the driver before its tests and always stops both afterwards. Unavailable fixtures are skipped.
 */
export function describeEachFixture(body: (session: FixtureSession) => void): void {
  for (const fixture of allFixtures()) {
    describe(`${fixture.name}`, function () {
      const session = new FixtureSession(fixture);
      before(async function () {
        this.timeout(SETUP_TIMEOUT_MS);
        if (!(await fixture.available())) this.skip();
        await session.start();
      });
      after(async function () {
        this.timeout(SETUP_TIMEOUT_MS);
        await session.stop();
      });
      afterEach(function () {
        if (this.currentTest?.state !== 'failed') return;
        try {
          const tail = session.driver.log().trim().split('\n').slice(-15).join('\n');
          console.error(`--- last driver log lines (${fixture.name}) ---\n${tail}`);
        } catch {
          // the driver never started; before() already reported why
        }
      });
      body(session);
    });
  }
}
