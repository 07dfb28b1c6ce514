import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseBackendsFile } from '../../src/backends/registry.js';
import {
  DEPLOY,
  EXAMPLES,
  INSTALL_OVERLAYS,
  KUSTOMIZATIONS,
  REPO,
  backendsText,
  findObject,
  generatorFiles,
  kustomize,
  listFiles,
  readKustomization,
  readYamlFile,
  rel,
  type K8sObject,
} from './deploy-files.js';
import { unknownFields, validateObject } from './k8s-schema.js';

/** How each YAML file under deploy/ is used, from the kustomization.yaml files that reference it. */
function classifyDeployFiles() {
  const kustomizationDirs = listFiles(DEPLOY)
    .filter((f) => f.endsWith('/kustomization.yaml'))
    .map(dirname);
  const resources = new Set<string>();
  const patches = new Set<string>();
  const data = new Set<string>();
  for (const dir of kustomizationDirs) {
    const k = readKustomization(dir);
    for (const r of k.resources) if (/\.ya?ml$/.test(r)) resources.add(join(dir, r));
    for (const p of k.patchesStrategicMerge) patches.add(join(dir, p));
    for (const f of generatorFiles(k)) data.add(f);
  }
  const examples = listFiles(EXAMPLES);
  return { kustomizationDirs, resources, patches, data, examples };
}

async function problemsOf(objects: K8sObject[]): Promise<string[]> {
  return (await Promise.all(objects.map(validateObject))).flat();
}

const controllerOf = (objects: K8sObject[]) =>
  findObject(objects, 'Deployment', 'sharedvolume-csi-controller');
const nodeOf = (objects: K8sObject[]) => findObject(objects, 'DaemonSet', 'sharedvolume-csi-node');
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const containers = (workload: K8sObject): any[] => workload.spec.template.spec.containers;
const container = (workload: K8sObject, name: string) => {
  const found = containers(workload).find((c) => c.name === name);
  assert.ok(found, `${workload.metadata.name} has no container ${name}`);
  return found;
};

describe('deploy/ manifests', function () {
  this.timeout(120_000);
  const files = classifyDeployFiles();

  it('the schema check itself rejects a bad type and an unknown field', async () => {
    const typo = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p' },
      spec: {
        containers: [
          {
            name: 'c',
            image: 'i',
            volumeMounts: [{ name: 'v', mountPath: '/x', mountPropogation: 'Bidirectional' }],
          },
        ],
      },
    };
    assert.deepEqual(unknownFields(typo), ['Pod.spec.containers[0].volumeMounts[0].mountPropogation']);
    const badType = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'd' },
      spec: { replicas: 'two' },
    };
    assert.ok((await validateObject(badType)).some((p) => /replicas/.test(p)));
    const badCrd = {
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'PrometheusRule',
      metadata: { name: 'r' },
      spec: { groups: [] },
    };
    assert.ok((await validateObject(badCrd)).length > 0);
  });

  it('every YAML file is a resource, a patch or generator data of some kustomization, or an example', () => {
    const orphans = listFiles(DEPLOY).filter(
      (f) =>
        !f.endsWith('/kustomization.yaml') &&
        !files.resources.has(f) &&
        !files.patches.has(f) &&
        !files.data.has(f) &&
        !files.examples.includes(f),
    );
    assert.deepEqual(
      orphans.map(rel),
      [],
      'files not referenced by any kustomization.yaml are never deployed',
    );
    for (const f of [...files.resources, ...files.patches, ...files.data])
      assert.ok(existsSync(f), `${rel(f)} is referenced but missing`);
  });

  it('every resource file and every example validates against the Kubernetes schemas', async () => {
    const sources = [...files.resources, ...files.examples];
    assert.ok(
      sources.length >= 20,
      `expected the base, overlays and examples, found ${sources.length} files`,
    );
    const problems: string[] = [];
    for (const file of sources) {
      const docs = readYamlFile(file);
      assert.ok(docs.length > 0, `${rel(file)} holds no object`);
      problems.push(...(await problemsOf(docs)).map((p) => `${rel(file)}: ${p}`));
    }
    assert.deepEqual(problems, []);
  });

  for (const dir of KUSTOMIZATIONS) {
    it(`the build of ${dir} validates against the Kubernetes schemas`, async () => {
      const objects = await kustomize(dir);
      assert.ok(objects.length > 0);
      assert.deepEqual(await problemsOf(objects), []);
    });
  }

  it('every backends file and backends ConfigMap is accepted by the driver (parseBackendsFile)', async () => {
    let checked = 0;
    for (const file of files.data) {
      if (!file.endsWith('backends.yaml')) continue;
      parseBackendsFile(readFileSync(file, 'utf8'), rel(file));
      checked++;
    }
    for (const dir of INSTALL_OVERLAYS) {
      const objects = await kustomize(dir);
      const configMaps = objects.filter((o) => backendsText(o) !== undefined);
      assert.equal(configMaps.length, 1, `${dir} must generate exactly one backends ConfigMap`);
      const configs = parseBackendsFile(backendsText(configMaps[0]!)!, `${dir} ConfigMap`);
      assert.ok(configs.length > 0);
      // Both workloads mount that very ConfigMap (kustomize rewrites the hashed name).
      for (const workload of [controllerOf(objects), nodeOf(objects)]) {
        const volume = workload.spec.template.spec.volumes.find(
          (v: { name: string }) => v.name === 'backends',
        );
        assert.equal(
          volume.configMap.name,
          configMaps[0]!.metadata.name,
          `${dir} ${workload.kind} mounts another ConfigMap`,
        );
      }
      checked++;
    }
    assert.ok(checked >= 8, `only ${checked} backends configurations checked`);
  });

  it('the CSIDriver object declares what the driver implements', async () => {
    const driver = findObject(await kustomize('base'), 'CSIDriver', 'csi.sharedvolume.io');
    assert.deepEqual(driver.spec, {
      attachRequired: false,
      podInfoOnMount: true,
      fsGroupPolicy: 'File',
      volumeLifecycleModes: ['Persistent'],
    });
  });

  it('the controller runs two replicas with leader-elected sidecars and a disruption budget', async () => {
    const objects = await kustomize('base');
    const controller = controllerOf(objects);
    assert.equal(controller.spec.replicas, 2);
    assert.deepEqual(
      containers(controller).map((c) => c.name),
      ['sharedvolume-csi', 'csi-provisioner', 'csi-resizer', 'csi-snapshotter', 'liveness-probe'],
    );
    const provisioner = container(controller, 'csi-provisioner');
    for (const flag of ['--extra-create-metadata', '--leader-election', '--timeout=300s']) {
      assert.ok(provisioner.args.includes(flag), `csi-provisioner lacks ${flag}`);
    }
    for (const name of ['csi-resizer', 'csi-snapshotter']) {
      assert.ok(
        container(controller, name).args.includes('--leader-election'),
        `${name} lacks --leader-election`,
      );
    }
    const driverArgs: string[] = container(controller, 'sharedvolume-csi').args;
    for (const flag of [
      '--mode=controller',
      '--endpoint=unix:///csi/csi.sock',
      '--metrics-address=0.0.0.0:9808',
      '--populator',
    ]) {
      assert.ok(driverArgs.includes(flag), `controller driver lacks ${flag}`);
    }
    const pdb = findObject(objects, 'PodDisruptionBudget', 'sharedvolume-csi-controller');
    assert.equal(pdb.spec.minAvailable, 1);
    assert.deepEqual(pdb.spec.selector.matchLabels, controller.spec.selector.matchLabels);
  });

  it('the node plugin registers with kubelet and propagates its mounts back to the host', async () => {
    const node = nodeOf(await kustomize('base'));
    assert.deepEqual(
      containers(node).map((c) => c.name),
      ['sharedvolume-csi', 'node-driver-registrar', 'liveness-probe'],
    );
    const driver = container(node, 'sharedvolume-csi');
    assert.ok(driver.args.includes('--mode=node') && driver.args.includes('--node-id=$(NODE_ID)'));
    assert.equal(
      driver.env.find((e: { name: string }) => e.name === 'NODE_ID').valueFrom.fieldRef.fieldPath,
      'spec.nodeName',
    );
    const kubeletMount = driver.volumeMounts.find(
      (m: { mountPath: string }) => m.mountPath === '/var/lib/kubelet',
    );
    assert.equal(kubeletMount?.mountPropagation, 'Bidirectional');
    const registrar = container(node, 'node-driver-registrar');
    assert.ok(
      registrar.args.includes(
        '--kubelet-registration-path=/var/lib/kubelet/plugins/csi.sharedvolume.io/csi.sock',
      ),
    );
    const socketDir = node.spec.template.spec.volumes.find((v: { name: string }) => v.name === 'socket-dir');
    assert.equal(socketDir.hostPath.path, '/var/lib/kubelet/plugins/csi.sharedvolume.io');
  });

  it('every image is pinned: sidecars to a release of registry.k8s.io/sig-storage, the driver to package.json', async () => {
    const version = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string })
      .version;
    for (const dir of INSTALL_OVERLAYS) {
      for (const workload of [controllerOf(await kustomize(dir)), nodeOf(await kustomize(dir))]) {
        for (const c of containers(workload)) {
          if (c.name === 'sharedvolume-csi')
            assert.equal(c.image, `sharedvolume-csi:${version}`, `${dir} driver image`);
          else
            assert.match(
              c.image,
              /^registry\.k8s\.io\/sig-storage\/[a-z-]+:v\d+\.\d+\.\d+$/,
              `${dir} ${c.name}`,
            );
        }
      }
    }
  });

  it('GitOps examples point at a kustomization this repository builds', () => {
    const gitops = listFiles(join(EXAMPLES, 'gitops')).flatMap(readYamlFile);
    const paths = gitops.flatMap((o) => {
      if (o.kind === 'Application') return [o.spec.source.path as string];
      if (o.kind === 'Kustomization') return [(o.spec.path as string).replace(/^\.\//, '')];
      return [];
    });
    assert.equal(paths.length, 2, 'one Argo CD Application and one Flux Kustomization');
    for (const path of paths) {
      assert.ok(path.startsWith('deploy/'), path);
      assert.ok(
        KUSTOMIZATIONS.includes(path.slice('deploy/'.length)),
        `${path} is not one of the tested kustomizations`,
      );
    }
  });

  it('every example PVC names an example StorageClass', () => {
    const known = new Set(
      listFiles(join(EXAMPLES, 'storageclasses'))
        .flatMap(readYamlFile)
        .filter((o) => o.kind === 'StorageClass')
        .map((o) => o.metadata.name),
    );
    for (const file of files.examples) {
      for (const pvc of readYamlFile(file).filter((o) => o.kind === 'PersistentVolumeClaim')) {
        assert.ok(
          known.has(pvc.spec.storageClassName),
          `${rel(file)}: unknown StorageClass ${pvc.spec.storageClassName}`,
        );
        assert.deepEqual(
          pvc.spec.accessModes,
          ['ReadWriteMany'],
          `${rel(file)}: shared volumes are ReadWriteMany`,
        );
      }
    }
  });
});
