import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import type { z } from 'zod';
import { glusterParamsSchema } from '../../src/backends/glusterfs/index.js';
import { localParamsSchema } from '../../src/backends/local/index.js';
import { nfsParamsSchema } from '../../src/backends/nfs/index.js';
import { PVC_NAME, PVC_NAMESPACE, PV_NAME } from '../../src/backends/params.js';
import { parseBackendsFile } from '../../src/backends/registry.js';
import { rpc } from '../../src/cli/csi-client.js';
import type { CreateSnapshotResponse__Output as CreateSnapshotResponse } from '../../src/generated/csi/v1/CreateSnapshotResponse.js';
import type { Snapshot__Output } from '../../src/generated/csi/v1/Snapshot.js';
import { SOURCE_ANNOTATION } from '../../src/kube/source.js';
import { splitSourceParameters } from '../../src/populator/spec.js';
import { S3RVER_CREDENTIALS, startS3rver, type S3rverInstance } from '../helpers/s3rver.js';
import { mountCapability, rejectsWith } from '../helpers/csi.js';
import { startDriver, type RunningDriver } from '../helpers/driver.js';
import { startFileServer, type FileServer } from '../helpers/file-server.js';
import { startGitHttpServer, type GitHttpServer } from '../helpers/git-server.js';
import { startKubeApi, type KubeApiStandIn } from '../helpers/kube-api.js';
import { tarGz } from '../populator/archives.js';
import { TestRepo } from '../populator/git-repo.js';
import {
  EXAMPLES,
  INSTALL_OVERLAYS,
  backendsText,
  findObject,
  kustomize,
  listFiles,
  readYamlFile,
  rel,
  type K8sObject,
} from './deploy-files.js';

/*
 * Every StorageClass and VolumeSnapshotClass example must be accepted by the driver. Local-backend
 * classes go through a real CreateVolume on a running driver; NFS and GlusterFS cannot run here (no
 * NFS client in this kernel, GlusterFS needs a server), so their backend keys go through the same
 * zod schemas the backends parse with. Classes with a populator source also fill a real volume: the
 * driver runs with the populator flags of deploy/base, the class's own keys are kept, and only its
 * backend (to local) and the address of its source (to a server on 127.0.0.1 that serves the very
 * path, bucket, prefix and ref the example names) are replaced.
 */

const SCHEMAS: Record<string, z.ZodObject> = {
  local: localParamsSchema,
  nfs: nfsParamsSchema,
  glusterfs: glusterParamsSchema,
};

/** external-snapshotter takes these keys out of the parameters and sends the Secret as the call's secrets. */
function withoutSnapshotterSecrets(parameters: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(parameters).filter(([key]) => !key.startsWith('csi.storage.k8s.io/snapshotter-secret-')),
  );
}

/** CreateSnapshot is repeated by the CO until ready_to_use; so is it here. */
async function eventuallyReady(create: () => Promise<CreateSnapshotResponse>): Promise<Snapshot__Output> {
  for (let i = 0; i < 100; i++) {
    const snapshot = (await create()).snapshot as Snapshot__Output;
    if (snapshot.ready_to_use) return snapshot;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail('snapshot never became ready');
}

const exampleObjects = (files: string[]) =>
  files.flatMap((file) => readYamlFile(file).map((object) => ({ file, object })));
const exampleFiles = () => listFiles(EXAMPLES);

/** What external-provisioner adds with --extra-create-metadata. */
function provisionerMetadata(pvc: string, namespace = 'team-a'): Record<string, string> {
  return { [PVC_NAME]: pvc, [PVC_NAMESPACE]: namespace, [PV_NAME]: `pvc-${pvc}` };
}

/** The directory a subDir template names for the metadata above. */
function renderSubDir(template: string, pvc: string, namespace = 'team-a'): string {
  return template
    .replaceAll('${pvc.metadata.namespace}', namespace)
    .replaceAll('${pvc.metadata.name}', pvc)
    .replaceAll('${pv.metadata.name}', `pvc-${pvc}`);
}

const hasSource = (parameters: Record<string, string> = {}) =>
  Object.keys(splitSourceParameters(parameters).source).length > 0;

/** Backend instance name -> kind, over every install overlay's backends ConfigMap. */
async function backendKinds(): Promise<Map<string, string>> {
  const kinds = new Map<string, string>();
  for (const dir of INSTALL_OVERLAYS) {
    const text = (await kustomize(dir)).map(backendsText).find((t) => t !== undefined)!;
    for (const config of parseBackendsFile(text, dir)) kinds.set(config.name, config.kind);
  }
  return kinds;
}

/** The controller's populator flags as deploy/base passes them, so the driver here runs like it. */
async function basePopulatorArgs(): Promise<string[]> {
  const controller = findObject(await kustomize('base'), 'Deployment', 'sharedvolume-csi-controller');
  const args: string[] = controller.spec.template.spec.containers.find(
    (c: { name: string }) => c.name === 'sharedvolume-csi',
  ).args;
  return args.filter((a) => a === '--populator' || a.startsWith('--sync-'));
}

/** A source as the annotation writes it; StorageClass keys are the same, dotted under `source.`. */
interface NestedSource {
  type: 'git' | 'http' | 's3';
  git?: { url: string; ref?: string };
  http?: { url: string };
  s3?: { bucket: string; prefix?: string; endpoint?: string };
  secretRef?: { name: string; namespace?: string };
  publish?: string;
}

function nestedSource(parameters: Record<string, string>): NestedSource {
  const nested: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(parameters)) {
    if (!key.startsWith('source.')) continue;
    const path = key.slice('source.'.length).split('.');
    let node = nested;
    for (const part of path.slice(0, -1)) node = (node[part] ??= {}) as Record<string, unknown>;
    node[path.at(-1)!] = value;
  }
  return {
    ...(nested as unknown as NestedSource),
    ...(parameters.publish ? { publish: parameters.publish } : {}),
  };
}

const GIT_USER = 'alice';
const GIT_PASSWORD = 'pw-PLANTED-examples-7141';
const HTTP_TOKEN = 'tok-PLANTED-examples-7141';
const MARKER = 'example.txt';

interface SourceServers {
  api: KubeApiStandIn;
  files: FileServer;
  git: GitHttpServer;
  gitRoot: string;
  s3: S3rverInstance;
}

/** The key of a source's address and its value on 127.0.0.1 (same path, bucket and prefix). */
type LocalAddress = { key: 'git.url' | 'http.url' | 's3.endpoint'; value: string };

/**
 * Serves `content` as MARKER where the source points (only the host changes), behind the
 * credentials of its Secret, which goes into the API stand-in. Other refs than the branch get a
 * newer commit on main, so a fill that ignored the ref would show.
 */
async function serveSource(
  source: NestedSource,
  secretNamespace: string,
  content: string,
  servers: SourceServers,
): Promise<LocalAddress> {
  const secret = source.secretRef && {
    namespace: source.secretRef.namespace ?? secretNamespace,
    ...source.secretRef,
  };
  if (source.type === 'http') {
    const path = new URL(source.http!.url).pathname;
    servers.files.set(
      path,
      tarGz([{ type: 'file', name: MARKER, content }]),
      secret ? { token: HTTP_TOKEN } : {},
    );
    if (secret) servers.api.setSecret(secret.namespace, secret.name, { token: HTTP_TOKEN });
    return { key: 'http.url', value: servers.files.url(path) };
  }
  if (source.type === 'git') {
    const path = new URL(source.git!.url).pathname.slice(1);
    const repo = await TestRepo.create(servers.gitRoot, path.replace(/\.git$/, ''));
    await repo.commit({ [MARKER]: content });
    const ref = source.git!.ref ?? 'HEAD';
    if (!['HEAD', 'main'].includes(ref)) {
      await repo.tag(ref);
      await repo.commit({ [MARKER]: 'main moved on after the tag\n' });
    }
    if (secret)
      servers.api.setSecret(secret.namespace, secret.name, { username: GIT_USER, password: GIT_PASSWORD });
    return { key: 'git.url', value: servers.git.url(path) };
  }
  const { bucket, prefix = '' } = source.s3!;
  await servers.s3.put(bucket, `${prefix}${MARKER}`, content);
  await servers.s3.put(bucket, `elsewhere/${MARKER}`, 'outside the prefix\n');
  if (secret) {
    const { accessKeyId, secretAccessKey } = S3RVER_CREDENTIALS;
    servers.api.setSecret(secret.namespace, secret.name, { accessKeyId, secretAccessKey });
  }
  return { key: 's3.endpoint', value: servers.s3.endpoint };
}

function withAddress(source: NestedSource, { key, value }: LocalAddress): NestedSource {
  const [type, field] = key.split('.') as ['git' | 'http' | 's3', string];
  return { ...source, [type]: { ...source[type], [field]: value } };
}

/** The PVC CreateVolume is called for: an example PVC of the class if it has one, else a plain one. */
function claimOf(storageClass: K8sObject): { name: string; namespace: string; source?: NestedSource } {
  const pvc = exampleObjects(exampleFiles())
    .map(({ object }) => object)
    .find(
      (o) => o.kind === 'PersistentVolumeClaim' && o.spec.storageClassName === storageClass.metadata.name,
    );
  if (!pvc) return { name: storageClass.metadata.name, namespace: 'team-a' };
  const annotation = pvc.metadata.annotations?.[SOURCE_ANNOTATION] as string | undefined;
  return {
    name: pvc.metadata.name,
    namespace: pvc.metadata.namespace ?? 'default',
    ...(annotation ? { source: parseYaml(annotation) as NestedSource } : {}),
  };
}

describe('StorageClass and VolumeSnapshotClass examples', function () {
  this.timeout(120_000);
  let dir: string;
  let root: string;
  let api: KubeApiStandIn | undefined;
  let driver: RunningDriver | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-params-'));
    root = join(dir, 'root');
    api = await startKubeApi();
    driver = await startDriver({
      args: ['--local-root', root, ...(await basePopulatorArgs()), '--admin-address', 'off'],
      env: { KUBECONFIG: await api.writeKubeconfig(dir) },
    });
  });

  after(async () => {
    await driver?.stop();
    await api?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('every StorageClass names a backend instance that an overlay defines', async () => {
    const kinds = await backendKinds();
    const classes = exampleObjects(exampleFiles()).filter(({ object }) => object.kind === 'StorageClass');
    assert.ok(classes.length >= 3, 'one StorageClass per backend');
    const covered = new Set<string>();
    for (const { file, object } of classes) {
      assert.equal(object.provisioner, 'csi.sharedvolume.io', rel(file));
      const backend = object.parameters?.backend;
      assert.ok(
        backend,
        `${rel(file)}: set \`backend\` so the class does not depend on the order of backends.yaml`,
      );
      assert.ok(kinds.has(backend), `${rel(file)}: no overlay defines backend "${backend}"`);
      covered.add(kinds.get(backend)!);
    }
    assert.deepEqual(
      [...covered].sort(),
      ['glusterfs', 'local', 'nfs'],
      'a StorageClass example for each backend kind',
    );
  });

  it('local classes provision and delete through a real CreateVolume on the running driver', async () => {
    const kinds = await backendKinds();
    const local = exampleObjects(exampleFiles()).filter(
      ({ object }) => object.kind === 'StorageClass' && kinds.get(object.parameters?.backend) === 'local',
    );
    assert.ok(local.length >= 1);
    for (const { file, object } of local) {
      const pvc = object.metadata.name;
      const response = await rpc(driver!.controller, 'CreateVolume', {
        name: `pvc-${pvc}`,
        capacity_range: { required_bytes: 1 << 20, limit_bytes: 0 },
        volume_capabilities: [mountCapability()],
        parameters: { ...object.parameters, ...provisionerMetadata(pvc) },
      });
      const id = response.volume!.volume_id;
      assert.match(id, /^local\//, `${rel(file)}: volume id ${id}`);
      // The class's subDir template decides where the data lives (default: the PV name).
      const dir = join(root, renderSubDir(object.parameters.subDir ?? '${pv.metadata.name}', pvc));
      assert.ok((await stat(dir)).isDirectory(), `${rel(file)}: ${dir} was not created`);
      if (object.parameters.mountPermissions) {
        assert.equal(
          (await stat(dir)).mode & 0o777,
          parseInt(object.parameters.mountPermissions, 8),
          `${rel(file)}: mode`,
        );
      }
      await rpc(driver!.controller, 'DeleteVolume', { volume_id: id, secrets: {} });
      assert.equal(
        existsSync(dir),
        object.parameters.onDelete === 'retain',
        `${rel(file)}: onDelete ${object.parameters.onDelete}`,
      );
    }
  });

  it('the running driver rejects an unknown parameter, so the check above would catch a typo', async () => {
    await rejectsWith(
      rpc(driver!.controller, 'CreateVolume', {
        name: 'pvc-typo',
        capacity_range: { required_bytes: 0, limit_bytes: 0 },
        volume_capabilities: [mountCapability()],
        parameters: { backend: 'local', subdir: 'x' },
      }),
      status.INVALID_ARGUMENT,
      /subdir/,
    );
  });

  it('NFS and GlusterFS classes are accepted by their backend schemas', async () => {
    const kinds = await backendKinds();
    const remote = exampleObjects(exampleFiles()).filter(
      ({ object }) =>
        object.kind === 'StorageClass' &&
        ['nfs', 'glusterfs'].includes(kinds.get(object.parameters?.backend)!),
    );
    assert.ok(remote.length >= 2);
    for (const { file, object } of remote) {
      const schema = SCHEMAS[kinds.get(object.parameters.backend)!]!;
      // As the provisioner does: the populator's keys are its own; the backend parses the rest.
      const { rest } = splitSourceParameters(object.parameters);
      const parsed = schema.safeParse({ ...rest, ...provisionerMetadata(object.metadata.name) });
      assert.ok(parsed.success, `${rel(file)}: ${parsed.success ? '' : parsed.error.message}`);
      assert.ok(
        !schema.safeParse({ ...rest, onDelte: 'delete' }).success,
        'the schema must reject unknown keys',
      );
    }
  });

  it('every class with a source fills a volume through a real CreateVolume on the driver running the populator', async () => {
    const classes = exampleObjects(exampleFiles()).filter(
      ({ object }) => object.kind === 'StorageClass' && hasSource(object.parameters),
    );
    const buckets = classes.flatMap(({ object }) => object.parameters['source.s3.bucket'] ?? []);
    const gitRoot = join(dir, 'git');
    const started: Partial<SourceServers> = { api: api!, gitRoot };
    const types = new Set<string>();
    const origins = new Set<string>();
    try {
      started.files = await startFileServer();
      started.git = await startGitHttpServer(gitRoot, { [GIT_USER]: GIT_PASSWORD });
      started.s3 = await startS3rver(buckets);
      for (const { file, object } of classes as { file: string; object: K8sObject }[]) {
        const filled = await fillExample(object, started as SourceServers, rel(file));
        types.add(filled.type);
        origins.add(filled.origin);
      }
    } finally {
      await started.files?.stop();
      await started.git?.stop();
      await started.s3?.stop();
    }
    assert.deepEqual([...types].sort(), ['git', 'http', 's3'], 'an example for each source type');
    assert.deepEqual([...origins].sort(), ['PVC annotation', 'StorageClass']);
  });

  /** CreateVolume for the class, checks of what it filled, then DeleteVolume and what it removed. */
  async function fillExample(storageClass: K8sObject, servers: SourceServers, where: string) {
    const parameters: Record<string, string> = storageClass.parameters;
    const claim = claimOf(storageClass);
    const source = claim.source ?? nestedSource(parameters);
    const content = `${storageClass.metadata.name}\n`;
    const local = await serveSource(source, claim.namespace, content, servers);
    // Only the backend and the source's host differ from the example.
    const runnable: Record<string, string> = { ...parameters, backend: 'local' };
    if (claim.source) {
      servers.api.setPvc(claim.namespace, claim.name, {
        [SOURCE_ANNOTATION]: stringifyYaml(withAddress(claim.source, local)),
      });
    } else {
      servers.api.setPvc(claim.namespace, claim.name);
      runnable[`source.${local.key}`] = local.value;
    }
    const syncStates = () => readdir(join(root, '.sharedvolume', 'sync')).catch(() => []);
    const statesBefore = (await syncStates()).length;
    const { volume } = await rpc(driver!.controller, 'CreateVolume', {
      name: `pvc-${claim.name}`,
      capacity_range: { required_bytes: 1 << 20, limit_bytes: 0 },
      volume_capabilities: [mountCapability()],
      parameters: { ...runnable, ...provisionerMetadata(claim.name, claim.namespace) },
    });
    const volumeDir = join(
      root,
      renderSubDir(parameters.subDir ?? '${pv.metadata.name}', claim.name, claim.namespace),
    );
    // publish: symlink serves the tree under `current`, a link swapped at each revision.
    const published = source.publish === 'symlink' ? join(volumeDir, 'current') : volumeDir;
    if (source.publish === 'symlink')
      assert.ok((await lstat(published)).isSymbolicLink(), `${where}: no current link`);
    assert.equal(await readFile(join(published, MARKER), 'utf8'), content, `${where}: content`);
    // Nothing from outside the source's prefix (s3 puts an object there).
    assert.deepEqual(
      (await readdir(published)).filter((n) => !n.startsWith('.')),
      [MARKER],
      `${where}: published tree`,
    );
    assert.equal(
      volume!.volume_context.readOnly,
      parameters.writable === 'true' ? undefined : 'true',
      `${where}: pods get populated volumes read-only unless the class sets writable`,
    );
    if (source.secretRef) {
      const namespace = source.secretRef.namespace ?? claim.namespace;
      const path = `/api/v1/namespaces/${namespace}/secrets/${source.secretRef.name}`;
      assert.ok(
        servers.api.requests.some((r) => r.path === path && r.status === 200),
        `${where}: Secret ${namespace}/${source.secretRef.name} was not read`,
      );
    }
    assert.equal((await syncStates()).length, statesBefore + 1, `${where}: sync state beside the volume`);
    await rpc(driver!.controller, 'DeleteVolume', { volume_id: volume!.volume_id, secrets: {} });
    assert.ok(!existsSync(volumeDir), `${where}: volume left behind`);
    assert.equal((await syncStates()).length, statesBefore, `${where}: sync state left behind`);
    return { type: source.type, origin: claim.source ? 'PVC annotation' : 'StorageClass' };
  }

  it('every VolumeSnapshotClass takes a real snapshot on the running driver (S3 ones into s3rver)', async () => {
    const classes = exampleObjects(exampleFiles()).filter(
      ({ object }) => object.kind === 'VolumeSnapshotClass',
    );
    assert.ok(classes.length >= 2, 'one class per snapshot location');
    const locations = new Set<string>();
    const s3 = await startS3rver(['backups']);
    try {
      const source = await rpc(driver!.controller, 'CreateVolume', {
        name: 'pvc-snapshot-source',
        volume_capabilities: [mountCapability()],
      });
      for (const { file, object } of classes as { file: string; object: K8sObject }[]) {
        assert.equal(object.driver, 'csi.sharedvolume.io', rel(file));
        const parameters = withoutSnapshotterSecrets(object.parameters);
        const location = parameters.snapshotLocation ?? 'backend';
        locations.add(location.startsWith('s3://') ? 's3' : location);
        // external-snapshotter sends the Secret the class names as the call's secrets.
        const secrets: Record<string, string> = location.startsWith('s3://')
          ? { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', endpoint: s3.endpoint }
          : {};
        const snapshot = await eventuallyReady(() =>
          rpc(driver!.controller, 'CreateSnapshot', {
            name: `snap-${object.metadata.name}`,
            source_volume_id: source.volume!.volume_id,
            parameters,
            secrets,
          }),
        );
        assert.equal(snapshot.source_volume_id, source.volume!.volume_id, rel(file));
        await rpc(driver!.controller, 'DeleteSnapshot', { snapshot_id: snapshot.snapshot_id, secrets });
      }
    } finally {
      await s3.stop();
    }
    assert.deepEqual([...locations].sort(), ['backend', 's3']);
  });
});
