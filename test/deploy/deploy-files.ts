import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';

/** Repository root; this file runs from dist/test/deploy. */
export const REPO = resolve(fileURLToPath(new URL('../../../', import.meta.url)));
export const DEPLOY = join(REPO, 'deploy');
export const EXAMPLES = join(DEPLOY, 'examples');

/** Every kustomization that must build: the base, each overlay and each add-on. */
export const KUSTOMIZATIONS = [
  'base',
  'overlays/local',
  'overlays/nfs',
  'overlays/nfs-unprivileged',
  'overlays/glusterfs',
  'overlays/monitoring',
  'overlays/source-egress',
  'overlays/webhook',
  'monitoring',
];
/** The overlays that are complete installs (base + a backend, and the add-ons stacked on one). */
export const INSTALL_OVERLAYS = [
  'overlays/local',
  'overlays/nfs',
  'overlays/nfs-unprivileged',
  'overlays/glusterfs',
  'overlays/monitoring',
  'overlays/webhook',
];

/** A manifest object; fields past the type meta are read loosely, as the tests assert their shape. */
/* eslint-disable @typescript-eslint/no-explicit-any */
export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: any };
  [k: string]: any;
};
/* eslint-enable @typescript-eslint/no-explicit-any */

export function listFiles(dir: string, extensions = ['.yaml', '.yml']): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...listFiles(path, extensions));
    else if (extensions.some((e) => entry.endsWith(e))) out.push(path);
  }
  return out;
}

export const rel = (path: string) => relative(REPO, path);

/** All YAML documents of a file or of kustomize output; empty documents are dropped. */
export function parseYamlDocs(text: string, source: string): K8sObject[] {
  return parseAllDocuments(text).flatMap((doc) => {
    if (doc.errors.length > 0) throw new Error(`${source}: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as K8sObject | null;
    return value === null ? [] : [value];
  });
}

export function readYamlFile(path: string): K8sObject[] {
  return parseYamlDocs(readFileSync(path, 'utf8'), rel(path));
}

export interface Kustomization {
  dir: string;
  resources: string[];
  bases: string[];
  patchesStrategicMerge: string[];
  configMapGenerator?: { name: string; namespace?: string; files?: string[] }[];
}

export function readKustomization(dir: string): Kustomization {
  const raw = readYamlFile(join(dir, 'kustomization.yaml'))[0] as unknown as Partial<Kustomization>;
  return {
    dir,
    resources: raw.resources ?? [],
    bases: raw.bases ?? [],
    patchesStrategicMerge: raw.patchesStrategicMerge ?? [],
    configMapGenerator: raw.configMapGenerator,
  };
}

/** Files that kustomizations feed to generators (keys of a ConfigMap), by path; `key=file` allowed. */
export function generatorFiles(k: Kustomization): string[] {
  return (k.configMapGenerator ?? []).flatMap((g) =>
    (g.files ?? []).map((f) => join(k.dir, f.split('=').pop()!)),
  );
}

const run = promisify(execFile);
const builds = new Map<string, Promise<K8sObject[]>>();

/**
 * `kubectl kustomize` of a directory under deploy/. KUBECTL picks the binary (default `kubectl`);
 * Debian's kubernetes-client (kubectl 1.20, kustomize v2) and current kubectl both must work.
 */
export function kustomize(dir: string): Promise<K8sObject[]> {
  const path = resolve(DEPLOY, dir);
  let build = builds.get(path);
  if (!build) {
    build = run(process.env.KUBECTL ?? 'kubectl', ['kustomize', path], { maxBuffer: 32 * 1024 * 1024 }).then(
      ({ stdout }) => parseYamlDocs(stdout, `kubectl kustomize ${rel(path)}`),
      (err: Error & { stderr?: string; code?: unknown }) => {
        if (err.code === 'ENOENT')
          throw new Error('kubectl not found: install it (Debian: apt-get install kubernetes-client)');
        throw new Error(`kubectl kustomize ${rel(path)} failed: ${err.stderr?.trim() || err.message}`);
      },
    );
    builds.set(path, build);
  }
  return build;
}

export function findObject(objects: K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name}`);
  return found;
}

/** The backends file a ConfigMap carries (key backends.yaml), or undefined for other ConfigMaps. */
export function backendsText(object: K8sObject): string | undefined {
  if (object.kind !== 'ConfigMap') return undefined;
  return (object.data as Record<string, string> | undefined)?.['backends.yaml'];
}
