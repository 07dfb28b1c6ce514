import assert from 'node:assert/strict';
import { findObject, kustomize, type K8sObject } from './deploy-files.js';

/*
 * The Pod Security Standards (baseline and restricted profiles), checked on the pod templates the
 * overlays really produce. Where a pod needs more than a profile allows, the exception is listed
 * below with the reason, and the test fails if an exception is missing or no longer used.
 */

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const BASELINE_CAPABILITIES = new Set([
  'AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE',
  'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT',
]); // prettier-ignore
const SAFE_SYSCTLS = new Set([
  'kernel.shm_rmid_forced', 'net.ipv4.ip_local_port_range', 'net.ipv4.ip_unprivileged_port_start',
  'net.ipv4.tcp_syncookies', 'net.ipv4.ping_group_range', 'net.ipv4.ip_local_reserved_ports',
  'net.ipv4.tcp_keepalive_time', 'net.ipv4.tcp_fin_timeout', 'net.ipv4.tcp_keepalive_intvl', 'net.ipv4.tcp_keepalive_probes',
]); // prettier-ignore
const SELINUX_TYPES = new Set([
  '',
  'container_t',
  'container_init_t',
  'container_kvm_t',
  'container_engine_t',
]);
const RESTRICTED_VOLUMES = [
  'configMap',
  'csi',
  'downwardAPI',
  'emptyDir',
  'ephemeral',
  'persistentVolumeClaim',
  'projected',
  'secret',
];

/** What a pod may do beyond the baseline profile, and why. */
export interface Exceptions {
  /** Containers that must be privileged. */
  privileged?: string[];
  /** hostPath volumes the pod may use. */
  hostPaths?: string[];
  hostNetwork?: boolean;
}

const allContainers = (pod: Any): Any[] => [
  ...(pod.initContainers ?? []),
  ...(pod.containers ?? []),
  ...(pod.ephemeralContainers ?? []),
];

/** Violations of the baseline profile, minus the declared exceptions. */
export function baselineViolations(pod: Any, exceptions: Exceptions = {}): string[] {
  const out: string[] = [];
  if (pod.hostNetwork && !exceptions.hostNetwork) out.push('hostNetwork');
  if (pod.hostPID) out.push('hostPID');
  if (pod.hostIPC) out.push('hostIPC');
  if (pod.securityContext?.windowsOptions?.hostProcess) out.push('hostProcess');
  if (pod.securityContext?.seccompProfile?.type === 'Unconfined') out.push('pod seccomp Unconfined');
  if (pod.securityContext?.appArmorProfile?.type === 'Unconfined') out.push('pod AppArmor Unconfined');
  for (const s of pod.securityContext?.sysctls ?? [])
    if (!SAFE_SYSCTLS.has(s.name)) out.push(`unsafe sysctl ${s.name}`);
  out.push(...seLinuxViolations(pod.securityContext?.seLinuxOptions, 'pod'));
  for (const v of pod.volumes ?? []) {
    if (v.hostPath && !(exceptions.hostPaths ?? []).includes(v.hostPath.path))
      out.push(`hostPath ${v.hostPath.path}`);
  }
  for (const c of allContainers(pod)) {
    const sc = c.securityContext ?? {};
    if (sc.privileged && !(exceptions.privileged ?? []).includes(c.name)) out.push(`${c.name}: privileged`);
    if (sc.windowsOptions?.hostProcess) out.push(`${c.name}: hostProcess`);
    for (const cap of sc.capabilities?.add ?? [])
      if (!BASELINE_CAPABILITIES.has(cap)) out.push(`${c.name}: adds ${cap}`);
    if (sc.procMount && sc.procMount !== 'Default') out.push(`${c.name}: procMount ${sc.procMount}`);
    if (sc.seccompProfile?.type === 'Unconfined') out.push(`${c.name}: seccomp Unconfined`);
    if (sc.appArmorProfile?.type === 'Unconfined') out.push(`${c.name}: AppArmor Unconfined`);
    out.push(...seLinuxViolations(sc.seLinuxOptions, c.name));
    for (const p of c.ports ?? []) {
      // With hostNetwork the API server sets hostPort = containerPort; that is the hostNetwork exception.
      const implied = exceptions.hostNetwork && pod.hostNetwork && p.hostPort === p.containerPort;
      if (p.hostPort && !implied) out.push(`${c.name}: hostPort ${p.hostPort}`);
    }
    for (const m of c.volumeMounts ?? []) {
      if (m.mountPropagation === 'Bidirectional' && !sc.privileged)
        out.push(`${c.name}: Bidirectional without privileged`);
    }
  }
  return out;
}

function seLinuxViolations(options: Any, where: string): string[] {
  if (!options) return [];
  const out: string[] = [];
  if (!SELINUX_TYPES.has(options.type ?? '')) out.push(`${where}: SELinux type ${options.type}`);
  if (options.user || options.role) out.push(`${where}: SELinux user/role set`);
  return out;
}

/** Violations of the restricted profile (which includes baseline, without exceptions). */
export function restrictedViolations(pod: Any): string[] {
  const out = baselineViolations(pod);
  for (const v of pod.volumes ?? []) {
    const type = Object.keys(v).find((k) => k !== 'name');
    if (!type || !RESTRICTED_VOLUMES.includes(type)) out.push(`volume ${v.name} of type ${type}`);
  }
  const podSc = pod.securityContext ?? {};
  for (const c of allContainers(pod)) out.push(...restrictedContainerViolations(c, podSc));
  return out;
}

/** The container-level part of restricted, plus the read-only root file system we claim. */
export function restrictedContainerViolations(c: Any, podSc: Any = {}): string[] {
  const sc = c.securityContext ?? {};
  const out: string[] = [];
  if (sc.privileged) out.push(`${c.name}: privileged`);
  if (sc.allowPrivilegeEscalation !== false) out.push(`${c.name}: allowPrivilegeEscalation is not false`);
  if (!(sc.capabilities?.drop ?? []).includes('ALL')) out.push(`${c.name}: does not drop ALL capabilities`);
  for (const cap of sc.capabilities?.add ?? [])
    if (cap !== 'NET_BIND_SERVICE') out.push(`${c.name}: adds ${cap}`);
  if ((sc.runAsNonRoot ?? podSc.runAsNonRoot) !== true) out.push(`${c.name}: runAsNonRoot is not true`);
  if ((sc.runAsUser ?? podSc.runAsUser) === 0) out.push(`${c.name}: runAsUser 0`);
  const seccomp = sc.seccompProfile?.type ?? podSc.seccompProfile?.type;
  if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost')
    out.push(`${c.name}: seccomp is not RuntimeDefault/Localhost`);
  if (sc.readOnlyRootFilesystem !== true) out.push(`${c.name}: root file system is writable`);
  return out;
}

/**
 * The sidecars need no privilege anywhere: restricted at container level, whatever the pod. The
 * controller's run as non-root even beside a root driver (it hands them its socket); the node's run as
 * root only to write the registration socket into root's /var/lib/kubelet/plugins_registry.
 */
function sidecarViolations(pod: Any, component: 'controller' | 'node'): string[] {
  return allContainers(pod)
    .filter((c) => c.name !== 'sharedvolume-csi')
    .flatMap((c) =>
      restrictedContainerViolations(c, {
        ...pod.securityContext,
        seccompProfile: { type: 'RuntimeDefault' },
      }),
    )
    .filter((v) => component === 'controller' || !/runAsNonRoot|runAsUser/.test(v));
}

/**
 * A root driver beside non-root sidecars must hand them its socket (SHAREDVOLUME_ENDPOINT_GROUP), and
 * without CAP_CHOWN it may only give it to a group it belongs to.
 */
function socketProblems(pod: Any): string[] {
  const driver = allContainers(pod).find((c) => c.name === 'sharedvolume-csi');
  const sidecarGroup = pod.securityContext?.runAsGroup;
  if ((driver.securityContext?.runAsUser ?? pod.securityContext?.runAsUser) !== 0) return [];
  if (sidecarGroup === undefined) return []; // root sidecars (the node plugin's)
  const group = (driver.env ?? []).find((e: Any) => e.name === 'SHAREDVOLUME_ENDPOINT_GROUP')?.value;
  if (group !== String(sidecarGroup))
    return [`the root driver hands its socket to ${group}, not ${sidecarGroup}`];
  const member = (pod.securityContext.supplementalGroups ?? []).includes(sidecarGroup);
  return driver.securityContext?.privileged || member ? [] : [`the driver is not in group ${group}`];
}

const KUBELET_PATHS = [
  '/var/lib/kubelet',
  '/var/lib/kubelet/plugins/csi.sharedvolume.io',
  '/var/lib/kubelet/plugins_registry',
];
const LOCAL_ROOT = '/var/lib/sharedvolume-csi/volumes';

type Expectation = { profile: 'restricted' } | { profile: 'baseline'; exceptions: Exceptions; why: string };
const NODE_WHY = 'mounts into kubelet directories with Bidirectional propagation, which requires privileged';
const NFS_NODE_WHY = `${NODE_WHY}; host network so NFS mounts survive a plugin restart`;
const MOUNTING_CONTROLLER_WHY =
  'mounts the share itself (access: mount): mount(2) needs a privileged container';

/** The profile each workload of each build must meet. */
const EXPECTED: Record<string, { controller: Expectation; node: Expectation }> = {
  base: {
    controller: { profile: 'restricted' },
    node: {
      profile: 'baseline',
      exceptions: { privileged: ['sharedvolume-csi'], hostPaths: KUBELET_PATHS },
      why: NODE_WHY,
    },
  },
  'overlays/nfs-unprivileged': {
    controller: { profile: 'restricted' },
    node: {
      profile: 'baseline',
      exceptions: { privileged: ['sharedvolume-csi'], hostPaths: KUBELET_PATHS, hostNetwork: true },
      why: NFS_NODE_WHY,
    },
  },
  'overlays/nfs': {
    controller: {
      profile: 'baseline',
      exceptions: { privileged: ['sharedvolume-csi'] },
      why: MOUNTING_CONTROLLER_WHY,
    },
    node: {
      profile: 'baseline',
      exceptions: { privileged: ['sharedvolume-csi'], hostPaths: KUBELET_PATHS, hostNetwork: true },
      why: NFS_NODE_WHY,
    },
  },
  'overlays/glusterfs': {
    controller: {
      profile: 'baseline',
      exceptions: { privileged: ['sharedvolume-csi'], hostPaths: ['/var/run/glusterd.socket'] },
      why: `${MOUNTING_CONTROLLER_WHY}; quota commands reach glusterd only over its local socket`,
    },
    node: {
      profile: 'baseline',
      exceptions: { privileged: ['sharedvolume-csi'], hostPaths: KUBELET_PATHS },
      why: NODE_WHY,
    },
  },
  'overlays/local': {
    controller: {
      profile: 'baseline',
      exceptions: { hostPaths: [LOCAL_ROOT] },
      why: 'creates volume directories in the host directory',
    },
    node: {
      profile: 'baseline',
      exceptions: { privileged: ['sharedvolume-csi'], hostPaths: [...KUBELET_PATHS, LOCAL_ROOT] },
      why: `${NODE_WHY}; bind-mounts from the local root`,
    },
  },
};
EXPECTED['overlays/monitoring'] = EXPECTED['overlays/nfs']!;
// The webhook adds a Secret volume and a port, no privilege: its controller stays restricted.
EXPECTED['overlays/webhook'] = EXPECTED['overlays/nfs-unprivileged']!;

/** Every declared exception must be needed, so the list cannot grow stale and hide a regression. */
function unusedExceptions(pod: Any, exceptions: Exceptions): string[] {
  const out: string[] = [];
  for (const name of exceptions.privileged ?? []) {
    if (!allContainers(pod).some((c) => c.name === name && c.securityContext?.privileged))
      out.push(`${name} is not privileged`);
  }
  for (const path of exceptions.hostPaths ?? []) {
    if (!(pod.volumes ?? []).some((v: Any) => v.hostPath?.path === path))
      out.push(`hostPath ${path} is not used`);
  }
  if (exceptions.hostNetwork && !pod.hostNetwork) out.push('hostNetwork is not used');
  return out;
}

const LEVELS = ['restricted', 'baseline', 'privileged'] as const;
const levelOf = (pod: Any) =>
  restrictedViolations(pod).length === 0
    ? 'restricted'
    : baselineViolations(pod).length === 0
      ? 'baseline'
      : 'privileged';

describe('Pod Security Standards', function () {
  this.timeout(120_000);

  describe('the checker', () => {
    const restrictedPod = {
      securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'c',
          securityContext: {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
          },
        },
      ],
      volumes: [{ name: 'v', emptyDir: {} }],
    };
    const clone = (): Any => structuredClone(restrictedPod);

    it('passes a restricted pod and flags each restricted rule', () => {
      assert.deepEqual(restrictedViolations(restrictedPod), []);
      const noDrop = clone();
      noDrop.containers[0].securityContext.capabilities.drop = [];
      assert.match(restrictedViolations(noDrop).join(), /drop ALL/);
      const root = clone();
      delete root.securityContext.runAsNonRoot;
      assert.match(restrictedViolations(root).join(), /runAsNonRoot/);
      const escalation = clone();
      delete escalation.containers[0].securityContext.allowPrivilegeEscalation;
      assert.match(restrictedViolations(escalation).join(), /allowPrivilegeEscalation/);
      const nfsVolume = clone();
      nfsVolume.volumes.push({ name: 'n', nfs: { server: 's', path: '/' } });
      assert.match(restrictedViolations(nfsVolume).join(), /of type nfs/);
    });

    it('flags host paths, host namespaces and privilege unless excepted', () => {
      const pod = clone();
      pod.volumes.push({ name: 'etc', hostPath: { path: '/etc' } });
      pod.hostNetwork = true;
      pod.containers[0].securityContext.privileged = true;
      pod.containers[0].volumeMounts = [
        { name: 'etc', mountPath: '/etc', mountPropagation: 'Bidirectional' },
      ];
      assert.deepEqual(baselineViolations(pod).sort(), ['c: privileged', 'hostNetwork', 'hostPath /etc']);
      assert.deepEqual(
        baselineViolations(pod, { privileged: ['c'], hostPaths: ['/etc'], hostNetwork: true }),
        [],
      );
      pod.containers[0].securityContext.privileged = false;
      assert.match(
        baselineViolations(pod, { hostPaths: ['/etc'], hostNetwork: true }).join(),
        /Bidirectional without privileged/,
      );
    });
  });

  for (const [dir, expected] of Object.entries(EXPECTED)) {
    describe(dir, () => {
      for (const component of ['controller', 'node'] as const) {
        const expectation = expected[component];
        const title =
          expectation.profile === 'restricted'
            ? `the ${component} meets restricted`
            : `the ${component} meets baseline except: ${expectation.why}`;
        it(title, async () => {
          const objects = await kustomize(dir);
          const workload =
            component === 'controller'
              ? findObject(objects, 'Deployment', 'sharedvolume-csi-controller')
              : findObject(objects, 'DaemonSet', 'sharedvolume-csi-node');
          const pod = workload.spec.template.spec;
          if (expectation.profile === 'restricted') {
            assert.deepEqual(restrictedViolations(pod), []);
          } else {
            assert.deepEqual(baselineViolations(pod, expectation.exceptions), []);
            assert.deepEqual(unusedExceptions(pod, expectation.exceptions), [], 'stale exception');
          }
          assert.deepEqual(sidecarViolations(pod, component), [], 'sidecars need no privilege');
          assert.deepEqual(socketProblems(pod), [], 'the sidecars can open the socket');
        });
      }

      it('the namespace enforces the least permissive level that admits its pods', async () => {
        const objects = await kustomize(dir);
        const pods = objects
          .filter((o: K8sObject) => ['Deployment', 'DaemonSet'].includes(o.kind))
          .map((o) => o.spec.template.spec);
        const needed = LEVELS[Math.max(...pods.map((p) => LEVELS.indexOf(levelOf(p))))];
        const ns = findObject(objects, 'Namespace', 'sharedvolume-csi');
        assert.equal(ns.metadata.labels['pod-security.kubernetes.io/enforce'], needed);
      });
    });
  }
});
