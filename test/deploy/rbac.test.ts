import assert from 'node:assert/strict';
import { join } from 'node:path';
import ts from 'typescript';
import { REPO, kustomize, type K8sObject } from './deploy-files.js';
import { createSourceProgram, location, sourceFiles, visitCalls, type Located } from './source-scan.js';

/*
 * RBAC follows the code. The driver's ClusterRole must grant exactly the Kubernetes API calls that
 * src/ makes through @kubernetes/client-node: each typed API method maps to one verb on one
 * resource (table below). A call the table does not know fails the test, so a new call cannot slip
 * past without its rule. Untyped access (KubernetesObjectApi, Watch, informers) cannot be mapped
 * and fails too.
 */

/** `<Api class>.<method>` -> [apiGroup, resource, verb]. Extend it when the code calls something new. */
const API_CALLS: Record<string, [string, string, string]> = {
  'CoreV1Api.readNamespacedPersistentVolumeClaim': ['', 'persistentvolumeclaims', 'get'],
  'CoreV1Api.listNamespacedPersistentVolumeClaim': ['', 'persistentvolumeclaims', 'list'],
  'CoreV1Api.patchNamespacedPersistentVolumeClaim': ['', 'persistentvolumeclaims', 'patch'],
  'CoreV1Api.readPersistentVolume': ['', 'persistentvolumes', 'get'],
  'CoreV1Api.readNamespacedSecret': ['', 'secrets', 'get'],
  'CoreV1Api.createNamespacedEvent': ['', 'events', 'create'],
  'CoreV1Api.patchNamespacedEvent': ['', 'events', 'patch'],
  'EventsV1Api.createNamespacedEvent': ['events.k8s.io', 'events', 'create'],
  'StorageV1Api.readStorageClass': ['storage.k8s.io', 'storageclasses', 'get'],
  'CoordinationV1Api.readNamespacedLease': ['coordination.k8s.io', 'leases', 'get'],
  'CoordinationV1Api.createNamespacedLease': ['coordination.k8s.io', 'leases', 'create'],
  'CoordinationV1Api.replaceNamespacedLease': ['coordination.k8s.io', 'leases', 'update'],
};

/** client-node classes whose methods never reach the API server (configuration, loading credentials). */
const LOCAL_ONLY_CLASSES = new Set(['KubeConfig']);

interface ApiCall extends Located {
  call: string;
}

function clientNodeClass(declaration: ts.Declaration): string | undefined {
  if (!declaration.getSourceFile().fileName.includes('/node_modules/@kubernetes/client-node/'))
    return undefined;
  const owner = declaration.parent;
  const name =
    owner && (ts.isClassDeclaration(owner) || ts.isInterfaceDeclaration(owner))
      ? owner.name?.text
      : undefined;
  // The typed APIs are declared as ObjectCoreV1Api etc. and exported as CoreV1Api.
  return (name ?? '<function>').replace(/^(Object|Promise|Observable)(?=\w+Api$)/, '');
}

/** Every call into @kubernetes/client-node in the given files, resolved by the type checker. */
export function kubeApiCalls(program: ts.Program, files: string[]): ApiCall[] {
  const checker = program.getTypeChecker();
  const calls: ApiCall[] = [];
  for (const file of files) {
    visitCalls(program.getSourceFile(file)!, (call) => {
      const callee = ts.isPropertyAccessExpression(call.expression) ? call.expression.name : call.expression;
      const symbol = checker.getSymbolAtLocation(callee);
      const target =
        symbol && symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
      const declaration = target?.declarations?.[0];
      const owner = declaration && clientNodeClass(declaration);
      if (owner && !LOCAL_ONLY_CLASSES.has(owner))
        calls.push({ ...location(call), call: `${owner}.${callee.getText()}` });
    });
  }
  return calls;
}

const ruleKey = (group: string, resource: string, verb: string) => `${group || 'core'}/${resource}:${verb}`;

function requiredRules(calls: ApiCall[]): { rules: Set<string>; unmapped: string[] } {
  const rules = new Set<string>();
  const unmapped: string[] = [];
  for (const c of calls) {
    const mapped = API_CALLS[c.call];
    if (mapped) rules.add(ruleKey(...mapped));
    else unmapped.push(`${c.file}:${c.line} ${c.call}`);
  }
  return { rules, unmapped };
}

function granted(role: K8sObject): Set<string> {
  const out = new Set<string>();
  for (const rule of role.rules ?? []) {
    for (const group of rule.apiGroups ?? []) {
      for (const resource of rule.resources ?? [])
        for (const verb of rule.verbs ?? []) out.add(ruleKey(group, resource, verb));
    }
  }
  return out;
}

const CONTROLLER_SA = {
  kind: 'ServiceAccount',
  name: 'sharedvolume-csi-controller',
  namespace: 'sharedvolume-csi',
};
const ESCALATING_VERBS = ['escalate', 'bind', 'impersonate', '*'];

describe('RBAC', function () {
  this.timeout(120_000);

  it('the scanner maps typed client-node calls and rejects the ones it cannot map', () => {
    const fixture = join(REPO, 'src', '__rbac_scanner_fixture__.ts');
    const program = createSourceProgram([], {
      [fixture]: [
        "import * as k8s from '@kubernetes/client-node';",
        'const kc = new k8s.KubeConfig();',
        'kc.loadFromDefault();',
        'const core = kc.makeApiClient(k8s.CoreV1Api);',
        'export async function f() {',
        "  await core.readNamespacedSecret({ name: 's', namespace: 'n' });",
        "  await core.createNamespacedEvent({ namespace: 'n', body: {} as k8s.CoreV1Event });",
        "  await kc.makeApiClient(k8s.EventsV1Api).createNamespacedEvent({ namespace: 'n', body: {} as k8s.EventsV1Event });",
        "  await k8s.KubernetesObjectApi.makeApiClient(kc).read({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' } });",
        '}',
      ].join('\n'),
    });
    const { rules, unmapped } = requiredRules(kubeApiCalls(program, [fixture]));
    assert.deepEqual([...rules].sort(), [
      'core/events:create',
      'core/secrets:get',
      'events.k8s.io/events:create',
    ]);
    assert.equal(unmapped.length, 2, `KubernetesObjectApi calls must be reported: ${unmapped.join(', ')}`);
    assert.ok(unmapped.every((u) => u.includes('KubernetesObjectApi.')));
  });

  it("the driver's ClusterRole grants exactly the API calls src/ makes", async () => {
    const files = sourceFiles();
    assert.ok(files.length > 20, 'src/ was not found');
    const { rules, unmapped } = requiredRules(kubeApiCalls(createSourceProgram(files), files));
    assert.deepEqual(
      unmapped,
      [],
      'calls without an entry in API_CALLS: add the verb and resource they need',
    );
    const objects = await kustomize('base');
    const driverRoles = objects.filter(
      (o) => (o.kind === 'ClusterRole' || o.kind === 'Role') && o.metadata.name === 'sharedvolume-csi-driver',
    );
    assert.ok(
      driverRoles.length >= 1,
      'deploy/base/rbac-driver.yaml defines the ClusterRole sharedvolume-csi-driver',
    );
    const grants = new Set(driverRoles.flatMap((r) => [...granted(r)]));
    assert.deepEqual([...grants].sort(), [...rules].sort());
  });

  it('every role is bound to the controller ServiceAccount only; the node plugin has no API access', async () => {
    const objects = await kustomize('base');
    const bindings = objects.filter((o) => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding');
    const roles = objects.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role');
    assert.ok(bindings.length >= 5);
    for (const b of bindings)
      assert.deepEqual(b.subjects, [CONTROLLER_SA], `${b.metadata.name} binds someone else`);
    const boundRoles = new Set(bindings.map((b) => `${b.roleRef.kind}/${b.roleRef.name}`));
    for (const r of roles)
      assert.ok(boundRoles.has(`${r.kind}/${r.metadata.name}`), `${r.metadata.name} is not bound`);
    const node = objects.find(
      (o) => o.kind === 'ServiceAccount' && o.metadata.name === 'sharedvolume-csi-node',
    )!;
    assert.equal(node.automountServiceAccountToken, false);
    const daemonSet = objects.find((o) => o.kind === 'DaemonSet')!;
    assert.equal(daemonSet.spec.template.spec.serviceAccountName, 'sharedvolume-csi-node');
    assert.equal(daemonSet.spec.template.spec.automountServiceAccountToken, false);
  });

  it('no role uses wildcards or can grant itself more; leader election is namespaced', async () => {
    const objects = await kustomize('base');
    for (const role of objects.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role')) {
      for (const rule of role.rules ?? []) {
        const where = `${role.metadata.name}: ${JSON.stringify(rule)}`;
        assert.ok(![...rule.apiGroups, ...rule.resources].includes('*'), `wildcard in ${where}`);
        assert.ok(
          !rule.verbs.some((v: string) => ESCALATING_VERBS.includes(v)),
          `escalating verb in ${where}`,
        );
        assert.ok(!rule.apiGroups.includes('rbac.authorization.k8s.io'), `RBAC access in ${where}`);
      }
    }
    const leases = objects.filter((o) => granted(o).has('coordination.k8s.io/leases:update'));
    assert.deepEqual(
      leases.map((r) => `${r.kind}/${r.metadata.name}`),
      ['Role/sharedvolume-csi-leader-election'],
      'leases are only writable in the driver namespace',
    );
  });
});
