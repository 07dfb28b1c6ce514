import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import ts from 'typescript';
import { REPO } from './deploy-files.js';
import { location, readSource, sourceFiles, visitCalls } from './source-scan.js';

/*
 * The image must carry every program the driver runs. The list is derived from src/: each
 * execa/child_process call with its first argument resolved to a literal (through local wrapper
 * functions like mounter's `run(command, args)`), plus `mount -t <type>` helpers from `fsType`
 * literals. A first argument that cannot be resolved fails the test unless the line above the call
 * says what it runs: `// execs: git, ssh`.
 */

/** Executable -> the Debian (bookworm) package that ships it. `node` comes from the official node image. */
const PACKAGE_OF: Record<string, string> = {
  mount: 'mount',
  umount: 'mount',
  losetup: 'mount',
  findmnt: 'util-linux',
  mountpoint: 'util-linux',
  nsenter: 'util-linux',
  stat: 'coreutils',
  chgrp: 'coreutils',
  chmod: 'coreutils',
  chown: 'coreutils',
  cp: 'coreutils',
  mv: 'coreutils',
  rm: 'coreutils',
  df: 'coreutils',
  sync: 'coreutils',
  'mount.nfs': 'nfs-common',
  'mount.nfs4': 'nfs-common',
  'mount.glusterfs': 'glusterfs-client',
  gluster: 'glusterfs-cli',
  git: 'git',
  ssh: 'openssh-client',
  'ssh-keygen': 'openssh-client',
  rsync: 'rsync',
  tar: 'tar',
  gzip: 'gzip',
  zstd: 'zstd',
  btrfs: 'btrfs-progs',
  tini: 'tini',
};
/** What the issue asks the image to carry even before code uses it (the populator execs these). */
const REQUIRED_PACKAGES = ['nfs-common', 'glusterfs-client', 'git', 'openssh-client', 'rsync', 'tini'];

const EXEC_FUNCTIONS = new Set([
  'execa',
  'execaSync',
  'spawn',
  'spawnSync',
  'execFile',
  'execFileSync',
  'exec',
  'execSync',
  'fork',
]);
const EXEC_MODULES = new Set(['execa', 'child_process', 'node:child_process']);
/** The driver's own exec module (src/mount/exec.ts): it loads execa lazily, so calls go through these. */
const OWN_EXEC_MODULE = /(^\.\/|\/mount\/)exec\.js$/;
const OWN_EXEC_FUNCTIONS = new Set(['execProgram', 'runProgram']);
/** Functions whose first argument is a whole shell command line rather than a program. */
const SHELL_FUNCTIONS = new Set(['exec', 'execSync']);

interface Found {
  executables: Set<string>;
  unresolved: string[];
}

/** Local names bound to exec functions (named imports) and to child_process namespaces. */
function execImports(source: ts.SourceFile) {
  const functions = new Map<string, string>();
  const namespaces = new Set<string>();
  for (const statement of source.statements) {
    if (!ts.isImportDeclaration(statement) || !ts.isStringLiteral(statement.moduleSpecifier)) continue;
    const own = OWN_EXEC_MODULE.test(statement.moduleSpecifier.text);
    if (!own && !EXEC_MODULES.has(statement.moduleSpecifier.text)) continue;
    const clause = statement.importClause;
    if (clause?.name) namespaces.add(clause.name.text);
    const bindings = clause?.namedBindings;
    if (bindings && ts.isNamespaceImport(bindings)) namespaces.add(bindings.name.text);
    if (bindings && ts.isNamedImports(bindings)) {
      for (const el of bindings.elements) {
        const original = (el.propertyName ?? el.name).text;
        if (own ? OWN_EXEC_FUNCTIONS.has(original) : EXEC_FUNCTIONS.has(original) || original === '$')
          functions.set(el.name.text, original);
      }
    }
  }
  return { functions, namespaces };
}

function execFunction(call: ts.CallExpression, imports: ReturnType<typeof execImports>): string | undefined {
  const callee = call.expression;
  if (ts.isIdentifier(callee)) return imports.functions.get(callee.text);
  if (
    ts.isPropertyAccessExpression(callee) &&
    ts.isIdentifier(callee.expression) &&
    imports.namespaces.has(callee.expression.text)
  ) {
    return EXEC_FUNCTIONS.has(callee.name.text) ? callee.name.text : undefined;
  }
  return undefined;
}

/** The function a node sits in, with its name as callers write it. */
function enclosingFunction(
  node: ts.Node,
): { name: string; params: ts.NodeArray<ts.ParameterDeclaration> } | undefined {
  for (let n: ts.Node | undefined = node.parent; n; n = n.parent) {
    if (ts.isFunctionDeclaration(n) || ts.isMethodDeclaration(n)) {
      return n.name && (ts.isIdentifier(n.name) || ts.isPrivateIdentifier(n.name))
        ? { name: n.name.text, params: n.parameters }
        : undefined;
    }
    if (
      (ts.isArrowFunction(n) || ts.isFunctionExpression(n)) &&
      ts.isVariableDeclaration(n.parent) &&
      ts.isIdentifier(n.parent.name)
    ) {
      return { name: n.parent.name.text, params: n.parameters };
    }
  }
  return undefined;
}

function calledName(call: ts.CallExpression): string | undefined {
  const callee = call.expression;
  if (ts.isIdentifier(callee)) return callee.text;
  if (ts.isPropertyAccessExpression(callee) && callee.expression.kind === ts.SyntaxKind.ThisKeyword)
    return callee.name.text;
  return undefined;
}

/** `// execs: a, b` on the line(s) right above the statement holding `node`. */
function annotation(node: ts.Node): string[] | undefined {
  let statement: ts.Node = node;
  while (statement.parent && !ts.isBlock(statement.parent) && !ts.isSourceFile(statement.parent))
    statement = statement.parent;
  const text = statement.getSourceFile().getFullText();
  for (const range of ts.getLeadingCommentRanges(text, statement.getFullStart()) ?? []) {
    const match = /execs:\s*([\w.+-]+(?:\s*,\s*[\w.+-]+)*)/.exec(text.slice(range.pos, range.end));
    if (match) return match[1]!.split(',').map((s) => s.trim());
  }
  return undefined;
}

/** Literal program names an expression can take; undefined when it cannot be resolved. */
function resolveProgram(expr: ts.Expression, source: ts.SourceFile, depth = 0): string[] | undefined {
  if (ts.isStringLiteral(expr) || ts.isNoSubstitutionTemplateLiteral(expr)) return [expr.text];
  if (expr.getText() === 'process.execPath') return ['node'];
  if (!ts.isIdentifier(expr) || depth > 3) return undefined;
  // A parameter of a local wrapper: resolve the argument at that position in every call of it.
  const fn = enclosingFunction(expr);
  const index = fn?.params.findIndex((p) => ts.isIdentifier(p.name) && p.name.text === expr.text) ?? -1;
  if (!fn || index < 0) return undefined;
  const values: string[] = [];
  let callers = 0;
  let failed = false;
  visitCalls(source, (call) => {
    if (calledName(call) !== fn.name || failed) return;
    callers++;
    const arg = call.arguments[index];
    const resolved = arg && resolveProgram(arg, source, depth + 1);
    if (resolved) values.push(...resolved);
    else failed = true;
  });
  return failed || callers === 0 ? undefined : values;
}

/** Programs the given source texts run, by the rules above. */
export function executablesIn(files: Record<string, string>): Found {
  const found: Found = { executables: new Set(), unresolved: [] };
  for (const [file, text] of Object.entries(files)) {
    const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
    const imports = execImports(source);
    visitCalls(source, (call) => {
      const fn = execFunction(call, imports);
      if (!fn) return;
      const first = call.arguments[0];
      let programs = fn === 'fork' ? ['node'] : first && resolveProgram(first, source);
      if (programs && SHELL_FUNCTIONS.has(fn)) programs = programs.map((p) => p.trim().split(/\s+/)[0]!);
      programs ??= annotation(call);
      if (programs) programs.forEach((p) => found.executables.add(p));
      else
        found.unresolved.push(`${location(call).file}:${location(call).line} ${call.getText().slice(0, 60)}`);
    });
    // Tagged templates: $`git fetch ...`.
    const walk = (node: ts.Node): void => {
      if (
        ts.isTaggedTemplateExpression(node) &&
        ts.isIdentifier(node.tag) &&
        imports.functions.get(node.tag.text) === '$'
      ) {
        const head = ts.isNoSubstitutionTemplateLiteral(node.template)
          ? node.template.text
          : node.template.head.text;
        const program = head.trim().split(/\s+/)[0];
        if (program) found.executables.add(program);
        else
          found.unresolved.push(
            `${location(node).file}:${location(node).line} ${node.getText().slice(0, 60)}`,
          );
      }
      // mount(8) runs /sbin/mount.<type> for these file systems.
      if (
        ts.isPropertyAssignment(node) &&
        node.name.getText() === 'fsType' &&
        ts.isStringLiteral(node.initializer)
      ) {
        if (node.initializer.text !== 'bind') found.executables.add(`mount.${node.initializer.text}`);
      }
      ts.forEachChild(node, walk);
    };
    walk(source);
  }
  return found;
}

interface Dockerfile {
  stages: { from: string; name?: string; instructions: string[] }[];
}

function parseDockerfile(text: string): Dockerfile {
  const logical = text
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const stages: Dockerfile['stages'] = [];
  for (const line of logical) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) stages.push({ from: from[1]!, name: from[2], instructions: [] });
    else stages.at(-1)?.instructions.push(line);
  }
  return { stages };
}

function aptPackages(instructions: string[]): Set<string> {
  const out = new Set<string>();
  for (const line of instructions.filter((l) => /^RUN\b/.test(l))) {
    for (const segment of line.split(/&&|;/)) {
      const words = segment.trim().split(/\s+/);
      const at = words.indexOf('install');
      if (words.includes('apt-get') && at >= 0)
        words
          .slice(at + 1)
          .filter((w) => !w.startsWith('-'))
          .forEach((w) => out.add(w));
    }
  }
  return out;
}

/** The packages dpkg says own these executables on this machine (those installed here only), in one dpkg call. */
function dpkgOwners(executables: string[]): Map<string, string> {
  const pathsOf = new Map<string, string[]>();
  for (const executable of executables) {
    // usrmerge: dpkg may have recorded /bin/x while the file is also found as /usr/bin/x, and back.
    const paths = ['/usr/sbin', '/usr/bin', '/sbin', '/bin']
      .map((dir) => join(dir, executable))
      .filter((p) => existsSync(p));
    if (paths.length > 0) pathsOf.set(executable, paths);
  }
  const owners = new Map<string, string>();
  if (pathsOf.size === 0) return owners;
  const result = spawnSync('dpkg', ['-S', ...[...pathsOf.values()].flat()], { encoding: 'utf8' });
  const ownerOfPath = new Map<string, string>();
  for (const line of (result.stdout ?? '').split('\n')) {
    const match = /^([^:]+):\s+(\/\S+)$/.exec(line.trim());
    if (match && !match[1]!.includes('diversion')) ownerOfPath.set(match[2]!, match[1]!.split(/[, ]/)[0]!);
  }
  for (const [executable, paths] of pathsOf) {
    const owner = paths.map((p) => ownerOfPath.get(p)).find(Boolean);
    if (owner) owners.set(executable, owner);
  }
  return owners;
}

/** A COPY instruction's sources and destination (flags such as --from=build dropped). */
function copyPaths(instruction: string): { sources: string[]; dest: string } {
  const words = instruction
    .split(/\s+/)
    .slice(1)
    .filter((w) => !w.startsWith('--'));
  return { sources: words.slice(0, -1), dest: words.at(-1)! };
}

/** Whether .dockerignore keeps `path` out of the build context: the last pattern that matches decides. */
function ignoredByDocker(path: string, patterns: string[]): boolean {
  let ignored = false;
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const pattern = negated ? raw.slice(1) : raw;
    const glob = new RegExp(
      `^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/.*)?$`,
    );
    if (glob.test(path)) ignored = !negated;
  }
  return ignored;
}

const ARG_DEFAULTS = (text: string) =>
  new Map([...text.matchAll(/^ARG\s+(\w+)=(\S+)/gm)].map((m) => [m[1]!, m[2]!]));
const expand = (image: string, args: Map<string, string>) =>
  image.replace(/\$\{(\w+)\}/g, (_, name: string) => args.get(name) ?? '');

describe('Dockerfile', () => {
  const text = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
  const dockerfile = parseDockerfile(text);
  const runtime = dockerfile.stages.at(-1)!;
  const installed = aptPackages(runtime.instructions);

  it('the exec scanner resolves literals and wrappers, and reports what it cannot resolve', () => {
    const found = executablesIn({
      'a.ts': [
        "import { execa } from 'execa';",
        "import { spawn } from 'node:child_process';",
        "import * as cp from 'node:child_process';",
        'async function run(command: string, args: string[]) { await execa(command, args); }',
        'export async function f(dynamic: string) {',
        "  await run('mount', []); await run('umount', []);",
        "  spawn(process.execPath, ['x.js']);",
        "  cp.execFileSync('git', ['fetch']);",
        '  // execs: rsync',
        '  await execa(dynamic, []);',
        '  await execa(dynamic.trim(), []);',
        "  const spec = { fsType: 'nfs' };",
        "  /^x/.exec('not a process');",
        '}',
      ].join('\n'),
    });
    assert.deepEqual([...found.executables].sort(), ['git', 'mount', 'mount.nfs', 'node', 'rsync', 'umount']);
    assert.equal(found.unresolved.length, 1);
    assert.match(found.unresolved[0]!, /dynamic\.trim/);
  });

  it('installs a package for every program the driver runs', () => {
    const files = Object.fromEntries(sourceFiles().map((f) => [f, readSource(f)]));
    const found = executablesIn(files);
    assert.deepEqual(
      found.unresolved,
      [],
      'exec calls whose program is not a literal: annotate them with `// execs: <program>`',
    );
    const executables = [...found.executables].sort();
    // The core and the populator (on in deploy/base) run these today; if the scanner stops seeing
    // them it is broken, not the code.
    for (const known of ['mount', 'umount', 'stat', 'mount.nfs', 'mount.glusterfs', 'gluster', 'git', 'cp']) {
      assert.ok(executables.includes(known), `scanner no longer finds ${known}`);
    }
    const unmapped = executables.filter((e) => e !== 'node' && !PACKAGE_OF[e]);
    assert.deepEqual(unmapped, [], 'add these programs to PACKAGE_OF and their packages to the Dockerfile');
    const missing = executables.filter((e) => e !== 'node' && !installed.has(PACKAGE_OF[e]!));
    assert.deepEqual(
      missing.map((e) => `${e} (${PACKAGE_OF[e]})`),
      [],
      `the runtime stage installs ${[...installed].join(' ')}`,
    );
  });

  it('the executable-to-package table agrees with dpkg wherever the program is installed here', () => {
    const owners = dpkgOwners(Object.keys(PACKAGE_OF));
    const wrong = [...owners]
      .filter(([executable, owner]) => PACKAGE_OF[executable] !== owner)
      .map(
        ([executable, owner]) => `${executable}: table says ${PACKAGE_OF[executable]}, dpkg says ${owner}`,
      );
    assert.deepEqual(wrong, []);
    assert.ok(owners.size >= 5, `only ${owners.size} programs could be checked with dpkg on this machine`);
  });

  it('installs the mount helpers and populator tools the issue asks for, and runs under tini', () => {
    for (const pkg of REQUIRED_PACKAGES) assert.ok(installed.has(pkg), `runtime stage lacks ${pkg}`);
    const entrypoint = runtime.instructions.find((l) => l.startsWith('ENTRYPOINT'));
    assert.deepEqual(JSON.parse(entrypoint!.slice('ENTRYPOINT'.length)), [
      'tini',
      '--',
      '/app/bin/sharedvolume-csi',
    ]);
  });

  it('builds in a Node stage and runs on slim Debian with a maintained Node and production dependencies only', () => {
    assert.ok(dockerfile.stages.length >= 2, 'multi-stage build');
    const args = ARG_DEFAULTS(text);
    const build = dockerfile.stages.find((s) => s.name === 'build');
    assert.ok(build, 'a stage named build');
    const buildImage = expand(build.from, args);
    const nodeMajor = Number(/^node:(\d+)/.exec(buildImage)?.[1]);
    assert.ok(
      nodeMajor >= 22 && nodeMajor % 2 === 0,
      `${buildImage}: use a maintained LTS (22 or later, even)`,
    );
    const buildRuns = build.instructions.filter((l) => l.startsWith('RUN')).join(' ');
    for (const step of ['npm ci', 'npm run build', 'npm prune --omit=dev'])
      assert.ok(buildRuns.includes(step), `build stage lacks ${step}`);
    assert.match(expand(runtime.from, args), /^debian:bookworm-slim/);
    const copies = runtime.instructions.filter((l) => l.startsWith('COPY'));
    for (const path of [
      '/usr/local/bin/node',
      '/src/package.json',
      '/src/proto',
      '/src/node_modules',
      '/src/dist/bundle',
      '/src/dist/src',
    ]) {
      assert.ok(
        copies.some((c) => c.includes('--from=build') && c.includes(path)),
        `runtime stage does not copy ${path}`,
      );
    }
    assert.ok(
      !runtime.instructions.some((l) => /\bnpm\b/.test(l) && l.startsWith('RUN')),
      'no npm in the runtime stage',
    );
  });

  it('copies into the runtime stage only what the build stage has, and into the build stage only what the context has', () => {
    const build = dockerfile.stages.find((s) => s.name === 'build')!;
    const workdir = /^WORKDIR\s+(\S+)/.exec(build.instructions.find((l) => l.startsWith('WORKDIR'))!)![1]!;
    // What the build stage's commands make: npm ci the dependencies, npm run build dist/.
    const made = ['node_modules', 'dist'];
    const copiedIn = build.instructions
      .filter((l) => l.startsWith('COPY'))
      .flatMap((l) => {
        const { sources, dest } = copyPaths(l);
        return dest.endsWith('/')
          ? sources.map((src) => posix.join(dest, posix.basename(src)))
          : [posix.normalize(dest)];
      });
    const missing = runtime.instructions
      .filter((l) => l.startsWith('COPY') && l.includes('--from=build') && l.includes(` ${workdir}/`))
      .map((l) => copyPaths(l).sources[0]!.slice(workdir.length + 1))
      .filter((path) => !made.includes(path.split('/')[0]!) && !copiedIn.includes(path));
    assert.deepEqual(
      missing,
      [],
      'the runtime stage copies these from the build stage, which never gets them',
    );

    const patterns = readFileSync(join(REPO, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    const fromContext = build.instructions
      .filter((l) => l.startsWith('COPY') && !l.includes('--from'))
      .flatMap((l) => copyPaths(l).sources);
    assert.ok(fromContext.includes('bin') && fromContext.includes('scripts/bundle.mjs'));
    for (const src of fromContext) {
      assert.ok(existsSync(join(REPO, src)), `${src} is not in the repository`);
      assert.ok(!ignoredByDocker(src, patterns), `.dockerignore keeps ${src} out of the build context`);
    }
  });

  it('keeps the code compatible with Node 20 while the image ships a newer LTS', () => {
    const engines = (
      JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { engines: { node: string } }
    ).engines.node;
    assert.match(engines, /^>=20\./);
  });

  it('.dockerignore keeps local builds, dependencies and VCS data out of the context', () => {
    const ignored = readFileSync(join(REPO, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim());
    for (const entry of ['node_modules', 'dist', '.git', 'src/generated'])
      assert.ok(ignored.includes(entry), `.dockerignore lacks ${entry}`);
  });
});
