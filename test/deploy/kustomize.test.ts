import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseBackendsFile } from '../../src/backends/registry.js';
import { signBody } from '../../src/populator/webhook.js';
import { startDriver, type RunningDriver } from '../helpers/driver.js';
import { freePort } from '../helpers/ports.js';
import {
  INSTALL_OVERLAYS,
  KUSTOMIZATIONS,
  backendsText,
  findObject,
  kustomize,
  type K8sObject,
} from './deploy-files.js';

const NAMESPACE = 'sharedvolume-csi';
const CLUSTER_SCOPED = new Set([
  'Namespace',
  'CSIDriver',
  'ClusterRole',
  'ClusterRoleBinding',
  'PersistentVolume',
  'StorageClass',
]);

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const podSpec = (o: K8sObject): any => o.spec.template.spec;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const driverContainer = (o: K8sObject): any =>
  podSpec(o).containers.find((c: { name: string }) => c.name === 'sharedvolume-csi');
const controller = (objects: K8sObject[]) => findObject(objects, 'Deployment', 'sharedvolume-csi-controller');
const node = (objects: K8sObject[]) => findObject(objects, 'DaemonSet', 'sharedvolume-csi-node');
const podSpecLabels = (o: K8sObject): Record<string, string> => o.spec.template.metadata.labels;
const hostPaths = (o: K8sObject): string[] =>
  podSpec(o)
    .volumes.filter((v: { hostPath?: unknown }) => v.hostPath)
    .map((v: { hostPath: { path: string } }) => v.hostPath.path);

const WEBHOOK_ARGS = [
  '--webhook-address=0.0.0.0:9809',
  '--webhook-secret-file=/etc/sharedvolume-webhook/secret',
];
const WEBHOOK_SECRET_DIR = '/etc/sharedvolume-webhook';
const CONTROLLER_LABELS = {
  'app.kubernetes.io/name': 'sharedvolume-csi',
  'app.kubernetes.io/component': 'controller',
};
const selects = (selector: Record<string, string> = {}, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

/** Whether an IPv4 address lies in a CIDR block. */
function inCidr(address: string, cidr: string): boolean {
  const [base, bits] = cidr.split('/') as [string, string];
  const toInt = (ip: string) => ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
  const size = 2 ** (32 - Number(bits));
  return Math.floor(toInt(address) / size) === Math.floor(toInt(base) / size);
}

function backendServers(objects: K8sObject[]): string[] {
  const text = objects.map(backendsText).find((t) => t !== undefined)!;
  return parseBackendsFile(text, 'ConfigMap').flatMap((b) => (b.kind === 'local' ? [] : [b.server]));
}

function egressCidrs(objects: K8sObject[], podLabels: Record<string, string>): string[] {
  return objects
    .filter((o) => o.kind === 'NetworkPolicy')
    .filter((p) => Object.entries(p.spec.podSelector.matchLabels ?? {}).every(([k, v]) => podLabels[k] === v))
    .flatMap((p) =>
      (p.spec.egress ?? []).flatMap((rule: { to?: { ipBlock?: { cidr: string } }[] }) => rule.to ?? []),
    )
    .flatMap((peer: { ipBlock?: { cidr: string } }) => (peer.ipBlock ? [peer.ipBlock.cidr] : []))
    .filter((cidr: string) => cidr !== '0.0.0.0/0');
}

describe('kubectl kustomize', function () {
  this.timeout(120_000);

  for (const dir of KUSTOMIZATIONS) {
    it(`builds ${dir} into uniquely named objects in the driver's namespace`, async () => {
      const objects = await kustomize(dir);
      const ids = objects.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`);
      assert.deepEqual(
        ids.filter((id, i) => ids.indexOf(id) !== i),
        [],
        'duplicate objects',
      );
      for (const o of objects) {
        if (CLUSTER_SCOPED.has(o.kind))
          assert.equal(o.metadata.namespace, undefined, `${o.kind} ${o.metadata.name} is cluster-scoped`);
        else
          assert.equal(
            o.metadata.namespace,
            NAMESPACE,
            `${o.kind} ${o.metadata.name} is outside ${NAMESPACE}`,
          );
      }
    });
  }

  it('every install overlay carries the whole base', async () => {
    const base = (await kustomize('base')).map((o) => `${o.kind}/${o.metadata.name}`);
    assert.ok(base.length >= 20, `base has only ${base.length} objects`);
    for (const dir of INSTALL_OVERLAYS) {
      const ids = new Set((await kustomize(dir)).map((o) => `${o.kind}/${o.metadata.name}`));
      assert.deepEqual(
        base.filter((id) => !ids.has(id)),
        [],
        `${dir} drops base objects`,
      );
    }
  });

  it('local: controller and node plugin see the volume root at the same host path', async () => {
    const objects = await kustomize('overlays/local');
    const configs = parseBackendsFile(objects.map(backendsText).find(Boolean)!, 'local');
    const root =
      configs[0]!.kind === 'local'
        ? configs[0]!.root
        : assert.fail('local overlay must configure a local backend');
    for (const workload of [controller(objects), node(objects)]) {
      assert.ok(hostPaths(workload).includes(root), `${workload.kind} lacks hostPath ${root}`);
      assert.ok(
        driverContainer(workload).volumeMounts.some((m: { mountPath: string }) => m.mountPath === root),
      );
    }
  });

  it('nfs: the mounting controller is privileged and the node plugin uses the host network', async () => {
    const objects = await kustomize('overlays/nfs');
    assert.equal(driverContainer(controller(objects)).securityContext.privileged, true);
    assert.equal(podSpec(node(objects)).hostNetwork, true);
    assert.equal(podSpec(node(objects)).dnsPolicy, 'ClusterFirstWithHostNet');
  });

  it('nfs-unprivileged: kubelet mounts the export for the controller through a bound static PV', async () => {
    const objects = await kustomize('overlays/nfs-unprivileged');
    const configs = parseBackendsFile(objects.map(backendsText).find(Boolean)!, 'nfs-unprivileged');
    const nfs = configs.find((c) => c.kind === 'nfs');
    assert.ok(nfs && nfs.controller.access === 'path', 'the controller must use access: path');
    const pvc = findObject(objects, 'PersistentVolumeClaim', 'sharedvolume-csi-nfs-root');
    const pv = findObject(objects, 'PersistentVolume', pvc.spec.volumeName);
    assert.deepEqual(pv.spec.claimRef, { namespace: NAMESPACE, name: pvc.metadata.name });
    assert.deepEqual(pv.spec.nfs, { server: nfs.server, path: nfs.share });
    const volume = podSpec(controller(objects)).volumes.find(
      (v: { persistentVolumeClaim?: { claimName: string } }) => v.persistentVolumeClaim,
    );
    assert.equal(volume.persistentVolumeClaim.claimName, pvc.metadata.name);
    const mount = driverContainer(controller(objects)).volumeMounts.find(
      (m: { name: string }) => m.name === volume.name,
    );
    assert.equal(mount.mountPath, nfs.controller.path);
    assert.equal(podSpec(node(objects)).hostNetwork, true);
  });

  it('glusterfs: node plugins are replaced on drain only, since a restart kills the FUSE mounts', async () => {
    const objects = await kustomize('overlays/glusterfs');
    assert.deepEqual(node(objects).spec.updateStrategy, { type: 'OnDelete' });
    assert.equal(driverContainer(controller(objects)).securityContext.privileged, true);
  });

  it('storage NetworkPolicies admit every backend server of the overlay', async () => {
    // Only where the traffic leaves the pod network: the mounting controllers, and GlusterFS nodes.
    const cases: [string, 'controller' | 'node'][] = [
      ['overlays/nfs', 'controller'],
      ['overlays/glusterfs', 'controller'],
      ['overlays/glusterfs', 'node'],
    ];
    for (const [dir, component] of cases) {
      const objects = await kustomize(dir);
      const cidrs = egressCidrs(objects, {
        'app.kubernetes.io/name': 'sharedvolume-csi',
        'app.kubernetes.io/component': component,
      });
      for (const server of backendServers(objects)) {
        assert.ok(
          isIPv4(server),
          `${dir}: use an address (not a name) in the example so the policy can be checked`,
        );
        assert.ok(
          cidrs.some((c) => inCidr(server, c)),
          `${dir}: no egress NetworkPolicy lets the ${component} reach ${server}`,
        );
      }
    }
  });

  it('the base controller runs the populator: it acts only on classes with a source', async () => {
    assert.ok(driverContainer(controller(await kustomize('base'))).args.includes('--populator'));
  });

  it('webhook: adds exactly the webhook flags, the Secret mount, port 9809 and its Service to its backend overlay', async () => {
    const objects = await kustomize('overlays/webhook');
    const under = await kustomize('overlays/nfs-unprivileged');
    const driver = driverContainer(controller(objects));
    assert.deepEqual(driver.args, [...driverContainer(controller(under)).args, ...WEBHOOK_ARGS]);

    const mount = driver.volumeMounts.find((m: { mountPath: string }) => m.mountPath === WEBHOOK_SECRET_DIR);
    assert.equal(mount?.readOnly, true, 'the Secret is mounted read-only');
    const volume = podSpec(controller(objects)).volumes.find((v: { name: string }) => v.name === mount.name);
    // Not optional: without the Secret the pod waits instead of serving a webhook nobody can sign.
    assert.deepEqual(volume.secret, {
      secretName: 'sharedvolume-webhook',
      items: [{ key: 'secret', path: 'secret' }],
    });
    assert.deepEqual(
      objects.filter((o) => o.kind === 'Secret'),
      [],
      'no Secret is shipped, so no known HMAC secret is ever deployed',
    );

    const port = driver.ports.find((p: { containerPort: number }) => p.containerPort === 9809);
    assert.deepEqual(port, { name: 'webhook', containerPort: 9809, protocol: 'TCP' });
    const service = findObject(objects, 'Service', 'sharedvolume-csi-webhook');
    assert.ok(
      selects(service.spec.selector, podSpecLabels(controller(objects))),
      'Service selects the controller',
    );
    assert.deepEqual(service.spec.ports, [
      { name: 'webhook', port: 9809, targetPort: 'webhook', protocol: 'TCP' },
    ]);

    // The base NetworkPolicy admits it; the overlay adds nothing else.
    const admits = objects
      .filter((o) => o.kind === 'NetworkPolicy' && selects(o.spec.podSelector.matchLabels, CONTROLLER_LABELS))
      .flatMap((p) => p.spec.ingress ?? [])
      .some(
        (rule: { from?: unknown[]; ports?: { port: number; protocol: string }[] }) =>
          !rule.from && rule.ports?.some((p) => p.port === 9809 && p.protocol === 'TCP'),
      );
    assert.ok(admits, 'no NetworkPolicy admits TCP 9809 to the controller');
    const ids = (list: typeof objects) => list.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    assert.deepEqual(ids(objects), ids([...under, service]));
  });

  it("webhook: the driver serves signed requests with the overlay's flags and refuses unsigned ones", async () => {
    const args: string[] = driverContainer(controller(await kustomize('overlays/webhook'))).args;
    const dir = await mkdtemp(join(tmpdir(), 'sv-webhook-overlay-'));
    let driver: RunningDriver | undefined;
    try {
      // The Secret's volume, as kubelet would project it under a stand-in for the mount path.
      const secret = 'overlay-secret-PLANTED';
      await mkdir(join(dir, WEBHOOK_SECRET_DIR), { recursive: true });
      await writeFile(join(dir, WEBHOOK_SECRET_DIR, 'secret'), secret);
      const address = `127.0.0.1:${await freePort()}`;
      const kept = args.filter((a) => /^--(mode|populator|webhook-)/.test(a));
      assert.deepEqual(kept.slice(-2), WEBHOOK_ARGS);
      driver = await startDriver({
        args: [
          '--local-root',
          join(dir, 'root'),
          '--admin-address',
          'off',
          ...kept.map((a) =>
            a
              .replace('--webhook-address=0.0.0.0:9809', `--webhook-address=${address}`)
              .replace(`=${WEBHOOK_SECRET_DIR}/`, `=${join(dir, WEBHOOK_SECRET_DIR)}/`),
          ),
        ],
      });
      const body = '{}';
      const post = (headers: Record<string, string>) =>
        fetch(`http://${address}/hooks/sync/${encodeURIComponent('local/none')}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers },
          body,
        });
      assert.equal((await post({})).status, 401);
      assert.equal((await post({ 'x-hub-signature-256': signBody('wrong', body) })).status, 401);
      // Signed with the mounted secret: accepted, and answered for the (unknown) volume.
      assert.equal((await post({ 'x-hub-signature-256': signBody(secret, body) })).status, 404);
    } finally {
      await driver?.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('monitoring: adds the ServiceMonitor, both rule groups and the dashboard to a full install', async () => {
    const objects = await kustomize('overlays/monitoring');
    findObject(objects, 'Deployment', 'sharedvolume-csi-controller');
    findObject(objects, 'ServiceMonitor', 'sharedvolume-csi');
    findObject(objects, 'PrometheusRule', 'sharedvolume-csi');
    findObject(objects, 'PrometheusRule', 'sharedvolume-csi-sync');
    const dashboard = findObject(objects, 'ConfigMap', 'sharedvolume-csi-dashboard');
    assert.equal(dashboard.metadata.labels.grafana_dashboard, '1');
    JSON.parse(dashboard.data['sharedvolume-csi.json']);
  });
});
