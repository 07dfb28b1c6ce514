import { createRequire } from 'node:module';
import ts from 'typescript';
import type { K8sObject } from './deploy-files.js';

/**
 * Validation of manifests against the Kubernetes schemas shipped by the `kubernetes-models` npm
 * package, plus two things its validate() does not do:
 * - unknown fields: validate() accepts `mountPropogation: Bidirectional` silently, and Kubernetes
 *   would drop it. We walk each object along the package's TypeScript types and report any field
 *   the type does not have;
 * - custom resources it has no schema for (Prometheus Operator, snapshots, Argo CD, Flux): their
 *   required fields are checked by hand below.
 */

const require = createRequire(import.meta.url);

interface ModelClass {
  new (data: unknown): { validate(): void };
}

async function modelClass(apiVersion: string, kind: string): Promise<ModelClass | undefined> {
  try {
    const mod = (await import(`kubernetes-models/${apiVersion}`)) as Record<string, ModelClass | undefined>;
    return mod[kind];
  } catch {
    return undefined;
  }
}

/** The `.d.ts` module that declares I<Kind> for an apiVersion, e.g. kubernetes-models/apps/v1/Deployment. */
function typeModule(apiVersion: string, kind: string): string {
  return `kubernetes-models/${apiVersion}/${kind}`;
}

interface KindType {
  checker: ts.TypeChecker;
  type: ts.Type;
}
const typeCache = new Map<string, KindType>();
const VIRTUAL = '/__sharedvolume_k8s_types__.ts';

/** Resolves I<Kind> through a small virtual TypeScript file that imports it (program built once per kind set). */
function interfaceType(apiVersion: string, kind: string): KindType {
  const key = `${apiVersion}/${kind}`;
  const cached = typeCache.get(key);
  if (cached) return cached;
  const source = `import type { I${kind} } from '${typeModule(apiVersion, kind)}';\nexport type T = I${kind};\n`;
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    baseUrl: '/',
  };
  const host = ts.createCompilerHost(options);
  const packageDir = require
    .resolve('kubernetes-models/package.json')
    .replace(/\/kubernetes-models\/package\.json$/, '');
  const original = {
    fileExists: host.fileExists,
    readFile: host.readFile,
    getSourceFile: host.getSourceFile,
  };
  host.fileExists = (f) => f === VIRTUAL || original.fileExists(f);
  host.readFile = (f) => (f === VIRTUAL ? source : original.readFile(f));
  host.getSourceFile = (f, lang, ...rest) =>
    f === VIRTUAL ? ts.createSourceFile(f, source, lang) : original.getSourceFile(f, lang, ...rest);
  host.resolveModuleNames = (names, containing) =>
    names.map((name) => {
      const from = containing === VIRTUAL ? `${packageDir}/__virtual__.ts` : containing;
      return ts.resolveModuleName(name, from, options, host).resolvedModule;
    });
  const program = ts.createProgram([VIRTUAL], options, host);
  const checker = program.getTypeChecker();
  const file = program.getSourceFile(VIRTUAL)!;
  const alias = file.statements.find(ts.isTypeAliasDeclaration)!;
  const type = checker.getTypeAtLocation(alias.name);
  if (checker.getPropertiesOfType(type).length === 0) throw new Error(`no TypeScript type for ${key}`);
  const found = { checker, type };
  typeCache.set(key, found);
  return found;
}

function objectMember(checker: ts.TypeChecker, type: ts.Type): ts.Type | undefined {
  const t = checker.getNonNullableType(type);
  if (!t.isUnion()) return t.flags & ts.TypeFlags.Object ? t : undefined;
  return t.types.find((m) => m.flags & ts.TypeFlags.Object);
}

function walk(checker: ts.TypeChecker, value: unknown, type: ts.Type, path: string, out: string[]): void {
  if (value === null || typeof value !== 'object') return;
  const objectType = objectMember(checker, type);
  if (!objectType) return;
  if (Array.isArray(value)) {
    const element = checker.getIndexTypeOfType(objectType, ts.IndexKind.Number);
    if (element) value.forEach((v, i) => walk(checker, v, element, `${path}[${i}]`, out));
    return;
  }
  const anyIndex = checker.getIndexTypeOfType(objectType, ts.IndexKind.String);
  for (const [key, child] of Object.entries(value)) {
    const property = checker.getPropertyOfType(objectType, key);
    if (property) {
      const decl = property.valueDeclaration ?? property.declarations?.[0];
      if (decl)
        walk(checker, child, checker.getTypeOfSymbolAtLocation(property, decl), `${path}.${key}`, out);
    } else if (anyIndex) {
      walk(checker, child, anyIndex, `${path}.${key}`, out);
    } else {
      out.push(`${path}.${key}`);
    }
  }
}

/** Field paths in `object` that its Kubernetes type does not define. */
export function unknownFields(object: K8sObject): string[] {
  const out: string[] = [];
  const { checker, type } = interfaceType(object.apiVersion, object.kind);
  walk(checker, object, type, object.kind, out);
  return out;
}

type Check = (o: K8sObject) => string[];
const need = (cond: unknown, message: string) => (cond ? [] : [message]);
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

/** Required fields of the custom resources kubernetes-models has no schema for, from their CRDs. */
const CUSTOM_RESOURCES: Record<string, Check> = {
  'monitoring.coreos.com/v1/ServiceMonitor': (o: Any) => [
    ...need(isObject(o.spec?.selector), 'spec.selector is required'),
    ...need(
      Array.isArray(o.spec?.endpoints) && o.spec.endpoints.length > 0,
      'spec.endpoints must not be empty',
    ),
    ...(o.spec?.endpoints ?? []).flatMap((e: Any, i: number) =>
      need(e.port || e.targetPort, `spec.endpoints[${i}] needs port`),
    ),
  ],
  'monitoring.coreos.com/v1/PrometheusRule': (o: Any) => [
    ...need(Array.isArray(o.spec?.groups) && o.spec.groups.length > 0, 'spec.groups must not be empty'),
    ...(o.spec?.groups ?? []).flatMap((g: Any, i: number) => [
      ...need(typeof g.name === 'string' && g.name, `spec.groups[${i}].name is required`),
      ...need(Array.isArray(g.rules) && g.rules.length > 0, `spec.groups[${i}].rules must not be empty`),
      ...(g.rules ?? []).flatMap((r: Any, j: number) => [
        ...need(
          Boolean(r.alert) !== Boolean(r.record),
          `groups[${i}].rules[${j}] needs exactly one of alert, record`,
        ),
        ...need(typeof r.expr === 'string' && r.expr.trim(), `groups[${i}].rules[${j}].expr is required`),
      ]),
    ]),
  ],
  'snapshot.storage.k8s.io/v1/VolumeSnapshotClass': (o: Any) => [
    ...need(typeof o.driver === 'string' && o.driver, 'driver is required'),
    ...need(['Delete', 'Retain'].includes(o.deletionPolicy), 'deletionPolicy must be Delete or Retain'),
    ...need(
      o.parameters === undefined || Object.values(o.parameters).every((v) => typeof v === 'string'),
      'parameters must be strings',
    ),
  ],
  'snapshot.storage.k8s.io/v1/VolumeSnapshot': (o: Any) => [
    ...need(
      Boolean(o.spec?.source?.persistentVolumeClaimName) !==
        Boolean(o.spec?.source?.volumeSnapshotContentName),
      'spec.source needs exactly one of persistentVolumeClaimName, volumeSnapshotContentName',
    ),
  ],
  'argoproj.io/v1alpha1/Application': (o: Any) => [
    ...need(typeof o.spec?.project === 'string', 'spec.project is required'),
    ...need(o.spec?.source?.repoURL && o.spec?.source?.path, 'spec.source.repoURL and path are required'),
    ...need(
      o.spec?.destination?.server || o.spec?.destination?.name,
      'spec.destination.server or name is required',
    ),
  ],
  'kustomize.toolkit.fluxcd.io/v1/Kustomization': (o: Any) => [
    ...need(typeof o.spec?.interval === 'string', 'spec.interval is required'),
    ...need(typeof o.spec?.prune === 'boolean', 'spec.prune is required'),
    ...need(o.spec?.sourceRef?.kind && o.spec?.sourceRef?.name, 'spec.sourceRef.kind and name are required'),
  ],
  'source.toolkit.fluxcd.io/v1/GitRepository': (o: Any) => [
    ...need(typeof o.spec?.url === 'string', 'spec.url is required'),
    ...need(typeof o.spec?.interval === 'string', 'spec.interval is required'),
  ],
};

/** Problems with one manifest object; empty when it is valid. */
export async function validateObject(object: K8sObject): Promise<string[]> {
  const name = `${object.kind}/${object.metadata?.name}`;
  if (!object.apiVersion || !object.kind || !object.metadata?.name)
    return [`${name}: apiVersion, kind and metadata.name are required`];
  const custom = CUSTOM_RESOURCES[`${object.apiVersion}/${object.kind}`];
  if (custom) return custom(object).map((m) => `${name}: ${m}`);
  const Model = await modelClass(object.apiVersion, object.kind);
  if (!Model)
    return [
      `${name}: ${object.apiVersion} ${object.kind} is neither a Kubernetes kind nor a known custom resource`,
    ];
  const problems: string[] = [];
  try {
    new Model(object).validate();
  } catch (err) {
    problems.push(`${name}: ${(err as Error).message}`);
  }
  for (const field of unknownFields(object)) problems.push(`${name}: unknown field ${field}`);
  return problems;
}
