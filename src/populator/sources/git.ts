import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { execa } from 'execa';
import type { SourceCredentials } from '../credentials.js';
import { scrubSecrets } from '../credentials.js';
import { syncError, SyncError, type SyncErrorReason } from '../errors.js';
import { printable, safeRelativePath } from '../paths.js';
import type { Publication } from '../publish.js';
import { unchanged, type SourceContext, type SourceOutcome } from '../source.js';
import type { GitSpec } from '../spec.js';
import type { ObjectState } from '../state.js';

/**
 * git source: the git CLI fetches the wanted ref (shallow by default) into a bare repository in the
 * state directory; the tree is then read with `ls-tree` and `cat-file --batch` and written through
 * the publisher. The volume never holds a .git directory, and nothing is written by `git checkout`.
 *
 * Credentials never reach argv, URLs or any git config: HTTPS passwords come from a GIT_ASKPASS
 * script reading an environment variable of the git process only; SSH keys and known_hosts live in a
 * private temporary directory for the duration of the sync, with strict host key checking.
 */

const LARGE_BLOB = 8 * 1024 * 1024;
const MAX_SUBMODULE_DEPTH = 5;

interface StreamingChild {
  stdout: Readable;
  /** Settles when the child exited; rejects with a SyncError unless it exited with 0. */
  done: Promise<void>;
  kill(): void;
}

interface TreeEntry {
  mode: string;
  type: 'blob' | 'commit' | 'tree';
  oid: string;
  size: number;
  path: string;
  /** Repository holding the object (submodules live in their own). */
  repo: string;
}

export async function syncGit(ctx: SourceContext): Promise<SourceOutcome> {
  const spec = ctx.spec.git!;
  const session = await GitSession.open(spec, ctx.credentials, ctx.signal);
  try {
    const repo = await session.ensureRepo(join(ctx.workDir, 'repo'));
    ctx.progress({ phase: 'checking' });
    const wanted = await resolveRemoteRef(session, spec);
    if (ctx.previous && wanted.commit && ctx.previous.revision === wanted.commit)
      return unchanged(ctx.previous);
    const commit = await fetchCommit(session, repo, spec.url, wanted, spec.depth);
    if (ctx.previous && ctx.previous.revision === commit) return unchanged(ctx.previous);

    ctx.progress({ phase: 'downloading' });
    const entries = await listTree(session, repo, commit, spec.sparsePaths, '');
    const all = spec.submodules
      ? await expandSubmodules(
          session,
          ctx.workDir,
          spec.url,
          entries,
          { repo, commit, prefix: '' },
          spec.depth,
          1,
        )
      : entries;
    const outcome = await publishTree(ctx, session, all, commit);
    await session.git(repo, ['update-ref', 'refs/sv/published', commit]);
    await session.git(repo, [
      '-c',
      'gc.autoDetach=false',
      '-c',
      'gc.pruneExpire=now',
      'gc',
      '--auto',
      '--quiet',
    ]);
    return outcome;
  } finally {
    await session.close();
  }
}

interface WantedRef {
  /** What to fetch: a full ref name or a commit id. */
  fetch: string;
  /** The commit it points to, when the remote told us (ls-remote) or the spec names one. */
  commit?: string;
}

const COMMIT_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** One `ls-remote` round trip: which ref the spec means, and its commit (for the no-change check). */
async function resolveRemoteRef(session: GitSession, spec: GitSpec): Promise<WantedRef> {
  if (COMMIT_ID.test(spec.ref)) return { fetch: spec.ref, commit: spec.ref };
  const candidates =
    spec.ref === 'HEAD' || spec.ref.startsWith('refs/')
      ? [spec.ref]
      : [`refs/heads/${spec.ref}`, `refs/tags/${spec.ref}`];
  const { stdout } = await session.git(undefined, ['ls-remote', spec.url, ...candidates], spec.url);
  const refs = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const [oid, name] = line.split('\t');
    if (oid && name) refs.set(name, oid);
  }
  for (const name of candidates) {
    const oid = refs.get(`${name}^{}`) ?? refs.get(name);
    if (oid) return { fetch: name, commit: oid };
  }
  throw syncError(
    'bad-ref',
    `git ref "${spec.ref}" not found in ${spec.url} (no branch or tag of that name)`,
  );
}

async function fetchCommit(
  session: GitSession,
  repo: string,
  url: string,
  wanted: WantedRef,
  depth: number,
): Promise<string> {
  const shallow =
    depth === 0 &&
    (await session.git(repo, ['rev-parse', '--is-shallow-repository'])).stdout.trim() === 'true';
  const depthArgs = depth > 0 ? [`--depth=${depth}`] : shallow ? ['--unshallow'] : [];
  const refspec = COMMIT_ID.test(wanted.fetch) ? wanted.fetch : `+${wanted.fetch}:refs/sv/incoming`;
  await session.git(
    repo,
    [
      'fetch',
      '--quiet',
      '--no-tags',
      '--no-recurse-submodules',
      ...depthArgs,
      '--end-of-options',
      url,
      refspec,
    ],
    url,
  );
  const ref = COMMIT_ID.test(wanted.fetch) ? wanted.fetch : 'refs/sv/incoming';
  const { stdout } = await session.git(repo, [
    'rev-parse',
    '--verify',
    '--end-of-options',
    `${ref}^{commit}`,
  ]);
  return stdout.trim();
}

/** `ls-tree -r -l -z`: every blob and gitlink of the commit (limited to the sparse paths). */
async function listTree(
  session: GitSession,
  repo: string,
  commit: string,
  sparse: string[],
  prefix: string,
): Promise<TreeEntry[]> {
  const pathspec = sparse.length > 0 ? ['--', ...sparse] : [];
  const { stdout } = await session.git(repo, [
    'ls-tree',
    '-r',
    '-l',
    '-z',
    '--full-tree',
    commit,
    ...pathspec,
  ]);
  const entries: TreeEntry[] = [];
  for (const record of stdout.split('\0')) {
    if (!record) continue;
    const tab = record.indexOf('\t');
    const [mode, type, oid, size] = record.slice(0, tab).split(/ +/);
    const name = record.slice(tab + 1);
    const path = checkTreePath(prefix ? `${prefix}/${name}` : name);
    entries.push({
      mode: mode!,
      type: type as TreeEntry['type'],
      oid: oid!,
      size: Number(size) || 0,
      path,
      repo,
    });
  }
  return entries;
}

function checkTreePath(name: string): string {
  const path = safeRelativePath(name, 'git tree entry');
  if (path.split('/').some((part) => part.toLowerCase() === '.git')) {
    throw syncError(
      'unsafe',
      `git tree entry "${printable(path)}" refused: a ".git" path may not be published`,
    );
  }
  return path;
}

/** Replaces gitlinks by the trees of the submodule commits, fetched into repositories of their own. */
async function expandSubmodules(
  session: GitSession,
  workDir: string,
  parentUrl: string,
  entries: TreeEntry[],
  parent: { repo: string; commit: string; prefix: string },
  depth: number,
  level: number,
): Promise<TreeEntry[]> {
  const links = entries.filter((e) => e.type === 'commit');
  if (links.length === 0) return entries;
  if (level > MAX_SUBMODULE_DEPTH) throw syncError('invalid', 'git submodules are nested too deeply');
  const urls = await submoduleUrls(session, parent.repo, parent.commit);
  const out = entries.filter((e) => e.type !== 'commit');
  for (const link of links) {
    const declared = urls.get(parent.prefix ? link.path.slice(parent.prefix.length + 1) : link.path);
    if (!declared)
      throw syncError('invalid', `git submodule "${printable(link.path)}" has no url in .gitmodules`);
    const url = resolveSubmoduleUrl(parentUrl, declared);
    const subRepo = await session.ensureRepo(
      join(workDir, 'modules', createHash('sha256').update(url).digest('hex')),
    );
    await fetchCommit(session, subRepo, url, { fetch: link.oid }, depth);
    const subEntries = await listTree(session, subRepo, link.oid, [], link.path);
    const nested = { repo: subRepo, commit: link.oid, prefix: link.path };
    out.push(...(await expandSubmodules(session, workDir, url, subEntries, nested, depth, level + 1)));
  }
  return out;
}

async function submoduleUrls(
  session: GitSession,
  repo: string,
  commit: string,
): Promise<Map<string, string>> {
  const result = await session.git(
    repo,
    ['config', '--null', '--blob', `${commit}:.gitmodules`, '--get-regexp', '^submodule\\..*\\.(path|url)$'],
    undefined,
    true,
  );
  const byName = new Map<string, { path?: string; url?: string }>();
  for (const record of result.stdout.split('\0')) {
    const newline = record.indexOf('\n');
    if (newline < 0) continue;
    const key = record.slice(0, newline);
    const match = /^submodule\.(.*)\.(path|url)$/.exec(key);
    if (!match) continue;
    const item = byName.get(match[1]!) ?? {};
    item[match[2] as 'path' | 'url'] = record.slice(newline + 1);
    byName.set(match[1]!, item);
  }
  const urls = new Map<string, string>();
  for (const { path, url } of byName.values()) if (path && url) urls.set(path, url);
  return urls;
}

/** Relative submodule URLs (`../lib.git`) are resolved against the parent's URL, as git does. */
export function resolveSubmoduleUrl(parentUrl: string, url: string): string {
  if (!url.startsWith('./') && !url.startsWith('../')) return url;
  const base = parentUrl.replace(/\/+$/, '');
  const parts = url.split('/');
  let resolved = base;
  for (const part of parts) {
    if (part === '.') continue;
    if (part === '..')
      resolved = resolved.slice(0, Math.max(resolved.lastIndexOf('/'), resolved.indexOf(':') + 1));
    else resolved = `${resolved.replace(/[/:]$/, '')}${resolved.endsWith(':') ? '' : '/'}${part}`;
  }
  return resolved;
}

/** Writes the blobs that differ from the previous manifest, keeps the others, commits. */
async function publishTree(
  ctx: SourceContext,
  session: GitSession,
  entries: TreeEntry[],
  commit: string,
): Promise<SourceOutcome> {
  const previous = ctx.previous?.objects ?? {};
  const objects: Record<string, ObjectState> = {};
  const toWrite = new Set<TreeEntry>();
  let keptAll = ctx.previous !== undefined;
  for (const entry of entries) {
    if (entry.type === 'tree') continue;
    objects[entry.path] = { id: entry.oid, size: entry.size, mode: parseInt(entry.mode, 8) };
    const before = previous[entry.path];
    if (!(before && before.id === entry.oid && before.mode === objects[entry.path]!.mode)) {
      toWrite.add(entry);
      keptAll = false;
    }
  }
  const removed = Object.keys(previous).some((path) => !(path in objects));
  if (keptAll && !removed) return { revision: commit, changed: false, objects, meta: {} };

  ctx.progress({ totalFiles: entries.length, totalBytes: entries.reduce((sum, e) => sum + e.size, 0) });
  const pub = await ctx.openPublication(commit, ctx.previous !== undefined);
  try {
    for (const entry of entries) {
      if (entry.type === 'commit') await pub.addDirectory(entry.path);
      else if (!toWrite.has(entry))
        pub.keep(entry.path, entry.mode === '120000' ? 'link' : 'file', entry.size);
    }
    await writeBlobs(
      session,
      pub,
      [...toWrite].filter((e) => e.type === 'blob'),
    );
    ctx.progress({ phase: 'publishing' });
    const published = await pub.commit();
    return { revision: commit, changed: true, objects, meta: {}, published };
  } catch (err) {
    await pub.abort();
    throw err;
  }
}

/** Streams blobs out of `git cat-file --batch` into the publication; large ones one by one. */
async function writeBlobs(session: GitSession, pub: Publication, entries: TreeEntry[]): Promise<void> {
  const byRepo = new Map<string, TreeEntry[]>();
  for (const entry of entries) {
    if (entry.size > LARGE_BLOB && entry.mode !== '120000') {
      const child = session.spawnGit(entry.repo, ['cat-file', 'blob', entry.oid]);
      try {
        await pub.writeFile(entry.path, child.stdout, parseInt(entry.mode, 8));
      } finally {
        await child.done;
      }
      continue;
    }
    byRepo.set(entry.repo, [...(byRepo.get(entry.repo) ?? []), entry]);
  }
  for (const [repo, list] of byRepo) await writeBatch(session, pub, repo, list);
}

async function writeBatch(
  session: GitSession,
  pub: Publication,
  repo: string,
  entries: TreeEntry[],
): Promise<void> {
  const child = session.spawnGit(repo, ['cat-file', '--batch'], entries.map((e) => `${e.oid}\n`).join(''));
  const pending = new Set<Promise<void>>();
  let failure: unknown;
  let index = 0;
  const place = (content: Buffer) => {
    const entry = entries[index++];
    if (!entry) throw syncError('network', 'git cat-file returned more objects than asked');
    const task = (
      entry.mode === '120000'
        ? Promise.resolve(pub.addSymlink(entry.path, content.toString('utf8')))
        : pub.writeFile(entry.path, content, parseInt(entry.mode, 8))
    ).then(
      () => void pending.delete(task),
      (err: unknown) => {
        failure ??= err;
        pending.delete(task);
      },
    );
    pending.add(task);
  };
  const reader = new BatchReader(place);
  try {
    for await (const chunk of child.stdout) {
      reader.push(chunk as Buffer);
      if (failure !== undefined) throw failure;
      while (pending.size >= 32) await Promise.race(pending);
    }
    await Promise.all(pending);
    if (failure !== undefined) throw failure;
    await child.done;
  } catch (err) {
    child.kill();
    await child.done.catch(() => undefined);
    await Promise.all(pending);
    throw err;
  }
  if (index !== entries.length) throw syncError('network', 'git cat-file returned fewer objects than asked');
}

/** Parses `cat-file --batch` output ("<oid> <type> <size>\n<content>\n"...) without quadratic copies. */
class BatchReader {
  private head: Buffer = Buffer.alloc(0);
  private body: Buffer[] = [];
  private bodyLength = 0;
  private need = -1;

  constructor(private readonly emit: (content: Buffer) => void) {}

  push(chunk: Buffer): void {
    let data = chunk;
    while (data.length > 0) {
      if (this.need < 0) {
        const buffer = this.head.length > 0 ? Buffer.concat([this.head, data]) : data;
        const newline = buffer.indexOf(10);
        if (newline < 0) {
          this.head = buffer;
          return;
        }
        const header = buffer.toString('latin1', 0, newline).split(' ');
        if (header[1] === 'missing')
          throw syncError('network', `git object ${header[0]} missing after fetch`);
        this.need = Number(header[2]) + 1;
        this.head = Buffer.alloc(0);
        this.body = [];
        this.bodyLength = 0;
        data = buffer.subarray(newline + 1);
      }
      const take = Math.min(this.need - this.bodyLength, data.length);
      this.body.push(data.subarray(0, take));
      this.bodyLength += take;
      data = data.subarray(take);
      if (this.bodyLength === this.need) {
        const content = this.body.length === 1 ? this.body[0]! : Buffer.concat(this.body);
        this.need = -1;
        this.emit(content.subarray(0, content.length - 1));
      }
    }
  }
}

/** Child process environment and credential files for one sync; removed by close(). */
class GitSession {
  private constructor(
    private readonly spec: GitSpec,
    private readonly credentials: SourceCredentials | undefined,
    private readonly signal: AbortSignal,
    private readonly tmp: string,
    private readonly baseEnv: Record<string, string>,
    private readonly authEnv: Record<string, string>,
  ) {}

  static async open(spec: GitSpec, credentials: SourceCredentials | undefined, signal: AbortSignal) {
    const tmp = await mkdtemp(join(tmpdir(), 'sv-git-'));
    try {
      await chmod(tmp, 0o700);
      const baseEnv = cleanEnv(tmp);
      const authEnv = await credentialEnv(spec, credentials, tmp);
      return new GitSession(spec, credentials, signal, tmp, baseEnv, authEnv);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  async ensureRepo(path: string): Promise<string> {
    try {
      if ((await stat(join(path, 'HEAD'))).isFile()) return path;
    } catch {
      // not initialised yet
    }
    await rm(path, { recursive: true, force: true });
    await mkdir(path, { recursive: true });
    await this.git(path, ['-c', 'init.defaultBranch=main', 'init', '--bare', '--quiet']);
    return path;
  }

  /** Runs git; `remoteUrl` is the URL it talks to (credentials are only given to the spec's origin). */
  async git(repo: string | undefined, args: string[], remoteUrl?: string, allowFailure = false) {
    const result = await execa('git', [...GIT_ARGS, ...args], {
      cwd: repo ?? this.tmp,
      env: this.envFor(remoteUrl),
      extendEnv: false,
      cancelSignal: this.signal,
      forceKillAfterDelay: 2000,
      reject: false,
      stripFinalNewline: false,
      maxBuffer: 512 * 1024 * 1024,
    });
    if (result.exitCode !== 0 && !allowFailure) throw this.failure(args, String(result.stderr));
    return { stdout: String(result.stdout), exitCode: result.exitCode };
  }

  /**
   * A git child whose stdout the caller streams. Plain spawn: its stdout stays paused until read, so
   * no byte is lost while the caller prepares the destination.
   */
  spawnGit(repo: string, args: string[], input?: string): StreamingChild {
    const child = spawn('git', [...GIT_ARGS, ...args], {
      cwd: repo,
      env: this.envFor(undefined),
      signal: this.signal,
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4096)));
    if (input !== undefined) {
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(input);
    }
    const done = new Promise<void>((resolve, reject) => {
      child.on('error', (err) => reject(this.signal.aborted ? this.failure(args, '') : err));
      child.on('close', (code) => (code === 0 ? resolve() : reject(this.failure(args, stderr))));
    });
    done.catch(() => undefined);
    return { stdout: child.stdout!, done, kill: () => void child.kill('SIGKILL') };
  }

  async close(): Promise<void> {
    await rm(this.tmp, { recursive: true, force: true });
  }

  private envFor(remoteUrl: string | undefined): Record<string, string> {
    if (remoteUrl && sameOrigin(remoteUrl, this.spec.url)) return { ...this.baseEnv, ...this.authEnv };
    return remoteUrl && isSsh(remoteUrl)
      ? { ...this.baseEnv, ...sshEnvWithoutKey(this.authEnv) }
      : this.baseEnv;
  }

  private failure(args: string[], stderr: string): SyncError {
    if (this.signal.aborted) {
      const timedOut = (this.signal.reason as Error | undefined)?.name === 'TimeoutError';
      return syncError(timedOut ? 'timeout' : 'aborted', timedOut ? 'sync timed out' : 'sync aborted');
    }
    const text = scrubSecrets(stderr, this.credentials);
    const command = args.find((a) => !a.startsWith('-') && !a.includes('='));
    return syncError(classifyGitFailure(text), `git ${command} failed: ${summarize(text)}`);
  }
}

/** Options for every git call: no helpers, hooks or automatic maintenance from anywhere. */
const GIT_ARGS = [
  '-c',
  'credential.helper=',
  '-c',
  'core.hooksPath=/dev/null',
  '-c',
  'gc.auto=0',
  '-c',
  'maintenance.auto=false',
  '-c',
  'protocol.version=2',
  '-c',
  'core.askPass=',
];

/** A minimal environment: nothing of the driver's own (cloud credentials, GIT_* variables) leaks in. */
function cleanEnv(home: string): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    LC_ALL: 'C',
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_ALLOW_PROTOCOL: 'http:https:ssh:git',
    GIT_LITERAL_PATHSPECS: '1',
    // Without a key, ssh must still never prompt nor trust an unknown host.
    GIT_SSH_COMMAND: sshCommand(home, false, false),
  };
  for (const name of ['HTTPS_PROXY', 'HTTP_PROXY', 'NO_PROXY', 'https_proxy', 'http_proxy', 'no_proxy']) {
    const value = process.env[name];
    if (value) env[name] = value;
  }
  for (const name of ['GIT_SSL_CAINFO', 'SSL_CERT_FILE', 'SSL_CERT_DIR']) {
    const value = process.env[name];
    if (value) env[name] = value;
  }
  return env;
}

const ASKPASS_SCRIPT = `#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$SV_GIT_USERNAME" ;;
  *) printf '%s\\n' "$SV_GIT_PASSWORD" ;;
esac
`;

async function credentialEnv(
  spec: GitSpec,
  creds: SourceCredentials | undefined,
  tmp: string,
): Promise<Record<string, string>> {
  if (isSsh(spec.url)) {
    const knownHosts = [spec.knownHosts, creds?.knownHosts].filter(Boolean).join('\n');
    if (!knownHosts.trim()) {
      throw syncError('auth', 'git over SSH needs known_hosts (in the Secret or source.git.knownHosts)');
    }
    await writeFile(join(tmp, 'known_hosts'), `${knownHosts.trim()}\n`, { mode: 0o600 });
    const key = creds?.sshPrivateKey;
    if (key) await writeFile(join(tmp, 'id'), key.endsWith('\n') ? key : `${key}\n`, { mode: 0o600 });
    return { GIT_SSH_COMMAND: sshCommand(tmp, true, Boolean(key)) };
  }
  const password = creds?.password ?? creds?.token;
  if (!password) return {};
  await writeFile(join(tmp, 'askpass'), ASKPASS_SCRIPT, { mode: 0o700 });
  return {
    GIT_ASKPASS: join(tmp, 'askpass'),
    SV_GIT_USERNAME: creds?.username ?? (creds?.token ? 'x-access-token' : ''),
    SV_GIT_PASSWORD: password,
  };
}

function sshEnvWithoutKey(authEnv: Record<string, string>): Record<string, string> {
  const command = authEnv.GIT_SSH_COMMAND;
  return command ? { GIT_SSH_COMMAND: command.replace(/ -i '[^']*'/, '') } : {};
}

function sshCommand(dir: string, haveKnownHosts: boolean, haveKey: boolean): string {
  const knownHosts = haveKnownHosts ? `'${join(dir, 'known_hosts')}'` : '/dev/null';
  return [
    'ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o UpdateHostKeys=no',
    `-o GlobalKnownHostsFile=/dev/null -o UserKnownHostsFile=${knownHosts}`,
    '-o IdentitiesOnly=yes -o ConnectTimeout=30',
    ...(haveKey ? [`-i '${join(dir, 'id')}'`] : []),
  ].join(' ');
}

function isSsh(url: string): boolean {
  return url.startsWith('ssh://') || (!url.includes('://') && url.includes(':'));
}

/** Scheme, host and port; scp-like addresses compare by host. */
function originOf(url: string): string {
  if (!url.includes('://')) return `ssh://${url.slice(url.indexOf('@') + 1, url.indexOf(':'))}`;
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.host}`;
}

function sameOrigin(a: string, b: string): boolean {
  try {
    return originOf(a) === originOf(b);
  } catch {
    return false;
  }
}

/** The telling lines of git's and ssh's stderr (the cause, then git's verdict), on one line. */
function summarize(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !/^Please make sure|^and the repository exists/.test(line));
  const generic = (line: string) => line.startsWith('fatal: Could not read from remote');
  const cause = lines.filter((line) => classifyLine(line) !== undefined && !generic(line)).pop();
  const verdict = lines.filter((line) => /^(fatal|error):/.test(line)).pop() ?? lines[lines.length - 1];
  return [...new Set([cause, verdict].filter(Boolean))].join(' ').slice(0, 600);
}

export function classifyGitFailure(text: string): SyncErrorReason {
  for (const line of text.split('\n')) {
    const reason = classifyLine(line);
    if (reason) return reason;
  }
  return 'network';
}

function classifyLine(text: string): SyncErrorReason | undefined {
  if (
    /host key verification failed|remote host identification has changed|no .* host key is known/i.test(text)
  ) {
    return 'auth';
  }
  if (
    /authentication failed|could not read (username|password)|permission denied|access denied|returned error: 40[13]|terminal prompts disabled|invalid credentials/i.test(
      text,
    )
  ) {
    return 'auth';
  }
  if (
    /couldn't find remote ref|not our ref|no such remote ref|unadvertised object|invalid refspec/i.test(text)
  ) {
    return 'bad-ref';
  }
  if (
    /repository .*not found|not found|does not appear to be a git repository|returned error: 404|no such file/i.test(
      text,
    )
  ) {
    return 'not-found';
  }
  return undefined;
}
