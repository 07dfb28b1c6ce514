import { z } from 'zod';

/**
 * The source spec of a populated volume: where the data comes from and how it is kept in sync.
 * One schema serves both forms users write: flat StorageClass parameters (`source.git.url`, …) and
 * the YAML of the `sharedvolume.io/source` PVC annotation (`git: {url: …}`).
 */

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE_UNITS: Record<string, number> = {
  '': 1,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/** '90s', '5m', '1h30m', '0' -> milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0;
  const parts = [...text.matchAll(/(\d+)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) return undefined;
  return parts.reduce((sum, p) => sum + Number(p[1]) * DURATION_UNITS_MS[p[2]!]!, 0);
}

/** '10Gi', '500M', '1024' -> bytes; undefined when malformed. */
export function parseSize(text: string): number | undefined {
  const match = /^(\d+)(Ki|Mi|Gi|Ti|K|M|G|T)?$/.exec(text);
  return match ? Number(match[1]) * SIZE_UNITS[match[2] ?? '']! : undefined;
}

const duration = (what: string) =>
  z.union([z.string(), z.number()]).transform((value, ctx) => {
    const ms = parseDuration(String(value));
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `${what} must be a duration such as "30s", "5m" or "1h"` });
      return z.NEVER;
    }
    return ms;
  });

const boolean = z
  .union([z.boolean(), z.enum(['true', 'false'])])
  .transform((value) => value === true || value === 'true');

const count = (min: number) =>
  z
    .union([z.number(), z.string().regex(/^\d+$/, 'must be a whole number')])
    .transform(Number)
    .pipe(z.number().int().min(min));

const size = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const bytes = parseSize(String(value));
  if (bytes === undefined || bytes <= 0) {
    ctx.addIssue({ code: 'custom', message: 'must be a size such as "500Mi", "10Gi" or a byte count' });
    return z.NEVER;
  }
  return bytes;
});

/** Credentials always come from the Secret, so a URL carrying them is refused outright. */
function refuseUserinfo(url: URL, ctx: z.RefinementCtx, allowUser: boolean): void {
  if (url.password || (url.username && !allowUser)) {
    ctx.addIssue({
      code: 'custom',
      message: 'must not contain credentials: put them in the Secret named by secretRef',
    });
  }
}

function parseUrl(text: string, ctx: z.RefinementCtx): URL | undefined {
  try {
    return new URL(text);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be an absolute URL' });
    return undefined;
  }
}

const httpUrl = z
  .string()
  .max(2048)
  .superRefine((text, ctx) => {
    const url = parseUrl(text, ctx);
    if (!url) return;
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      ctx.addIssue({ code: 'custom', message: 'must be an http:// or https:// URL' });
    }
    refuseUserinfo(url, ctx, false);
  });

/** scp-like SSH address (`git@host:path`), as git accepts it. */
const SCP_LIKE = /^(?:[A-Za-z0-9_][A-Za-z0-9._-]*@)?[A-Za-z0-9][A-Za-z0-9.-]*:(?!\/\/)[^\s-][^\s]*$/;

const gitUrl = z
  .string()
  .max(2048)
  .superRefine((text, ctx) => {
    if (!text.includes('://') && SCP_LIKE.test(text)) return;
    const url = parseUrl(text, ctx);
    if (!url) return;
    // file://, ext:: and local paths would let a tenant read the controller's own disk or run commands.
    if (!['https:', 'http:', 'ssh:', 'git:'].includes(url.protocol)) {
      ctx.addIssue({
        code: 'custom',
        message: 'must be an https://, http://, ssh://, git:// or user@host:path URL',
      });
    }
    refuseUserinfo(url, ctx, url.protocol === 'ssh:');
    // A host or user starting with "-" would be read by ssh as an option.
    if (url.hostname.startsWith('-') || url.username.startsWith('-')) {
      ctx.addIssue({ code: 'custom', message: 'must not have a host or user starting with "-"' });
    }
  });

const relativePath = z
  .string()
  .min(1)
  .max(1024)
  .refine(
    (p) =>
      !p.startsWith('/') &&
      !p.split('/').some((part) => part === '..' || part === '.git') &&
      !p.includes('\0'),
    'must be a relative path without ".." or ".git"',
  );

const pathList = z
  .union([z.string(), z.array(relativePath)])
  .transform((value) =>
    typeof value === 'string'
      ? value
          .split(',')
          .map((p) => p.trim())
          .filter(Boolean)
      : value,
  )
  .pipe(z.array(relativePath).max(100));

const gitSpec = z.strictObject({
  url: gitUrl.meta({
    description:
      'Repository: `https://`, `http://`, `ssh://`, `git://` or `user@host:path`; never with a password in it. `file://`, local paths and `ext::` are refused.',
    docDefault: 'required',
  }),
  ref: z
    .string()
    .min(1)
    .max(255)
    .regex(/^[A-Za-z0-9._/@+-]+$/, 'must be a branch, tag, full ref name or commit id')
    .refine(
      (r) => !r.includes('..') && !r.startsWith('-'),
      'must be a branch, tag, full ref name or commit id',
    )
    .default('HEAD')
    .meta({
      description:
        'Branch, tag, full ref (`refs/...`) or full commit id; a name is looked up as a branch first, then as a tag.',
      docDefault: '`HEAD` (the remote default branch)',
    }),
  depth: count(0)
    .default(1)
    .meta({ description: 'Commits of history fetched; `0` fetches all of it.', docDefault: '`1`' }),
  submodules: boolean
    .default(false)
    .meta({ description: '`true` publishes submodules too (recursively).', docDefault: '`false`' }),
  sparsePaths: pathList.default([]).meta({
    description: 'Only these paths are published (comma-separated in StorageClass parameters).',
    docDefault: 'all',
  }),
  knownHosts: z
    .string()
    .max(65536)
    .optional()
    .meta({ description: '`known_hosts` lines for SSH URLs (the Secret may carry them too).' }),
});

const httpSpec = z.strictObject({
  url: httpUrl.meta({
    description:
      'A tar, tar.gz, tar.zst or zip archive (recognised by its first bytes), or any other single file, published under the last segment of the URL path.',
    docDefault: 'required',
  }),
});

const s3Spec = z.strictObject({
  bucket: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be a valid S3 bucket name')
    .meta({ description: 'Bucket name.', docDefault: 'required' }),
  prefix: z
    .string()
    .max(1024)
    .default('')
    .refine((p) => !p.startsWith('/'), 'must not start with "/"')
    .meta({
      description:
        'Folder inside the bucket; a missing trailing `/` is added; the prefix is stripped from file names.',
      docDefault: 'whole bucket',
    }),
  endpoint: httpUrl.optional().meta({
    description: 'S3-compatible endpoint (MinIO, Ceph RGW, ...).',
    docDefault: 'AWS: `https://s3.<region>.amazonaws.com`',
  }),
  region: z
    .string()
    .regex(/^[a-z0-9-]{1,40}$/, 'must be a region name such as "us-east-1"')
    .default('us-east-1')
    .meta({ description: 'Region used to sign requests.' }),
  forcePathStyle: boolean.optional().meta({
    description: '`endpoint/bucket/key` URLs instead of `bucket.endpoint/key`.',
    docDefault: '`true` with an endpoint, else `false`',
  }),
});

const secretRef = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'must be a Secret name')
    .meta({ description: 'Secret holding the credentials (layouts below).', docDefault: 'none: anonymous' }),
  namespace: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'must be a namespace name')
    .optional()
    .meta({
      description: "That Secret's namespace; a class may name any, a PVC annotation only its own.",
      docDefault: "the PVC's namespace",
    }),
});

const limits = z.strictObject({
  maxBytes: size.optional().meta({
    description: 'Refuse a source whose tree is larger (`500Mi`, `10Gi`, `1000000`).',
    docDefault: 'the requested capacity, if any',
  }),
  maxFiles: count(1).default(1_000_000).meta({
    description: 'Refuse a source with more entries (files and symlinks).',
    docDefault: '`1000000`',
  }),
});

export const SOURCE_TYPES = ['git', 'http', 's3'] as const;
export type SourceType = (typeof SOURCE_TYPES)[number];

export const sourceSpecSchema = z
  .strictObject({
    type: z
      .enum(SOURCE_TYPES)
      .meta({ description: 'Where the data comes from.', docDefault: 'required with any other key' }),
    git: gitSpec.optional(),
    http: httpSpec.optional(),
    s3: s3Spec.optional(),
    secretRef: secretRef.optional(),
    syncInterval: duration('syncInterval')
      .default(5 * 60_000)
      .refine((ms) => ms === 0 || ms >= 10_000, 'syncInterval must be "0" (fill once) or at least 10s')
      .meta({
        description: 'Time between syncs, plus up to 10 % jitter; `0` fills once; at least `10s`.',
        docDefault: '`5m`',
      }),
    syncTimeout: duration('syncTimeout')
      .default(10 * 60_000)
      .refine((ms) => ms >= 1000, 'syncTimeout must be at least 1s')
      .meta({
        description: 'Deadline of one sync, after which it is abandoned and retried.',
        docDefault: '`10m`',
      }),
    syncMode: z
      .enum(['mirror', 'additive'])
      .default('mirror')
      .meta({ description: '`mirror`: the volume holds exactly the source; `additive`: never delete.' }),
    publish: z.enum(['files', 'symlink']).default('files').meta({
      description:
        '`files`: each file replaced atomically; `symlink`: the whole tree swapped under `current`.',
    }),
    limits: limits.default({ maxFiles: 1_000_000 }),
  })
  .superRefine((spec, ctx) => {
    for (const type of SOURCE_TYPES) {
      if (type === spec.type && !spec[type]) {
        ctx.addIssue({ code: 'custom', path: [type], message: `is required when type is "${type}"` });
      }
      if (type !== spec.type && spec[type]) {
        ctx.addIssue({ code: 'custom', path: [type], message: `is not allowed when type is "${spec.type}"` });
      }
    }
  });

export type SourceSpec = z.output<typeof sourceSpecSchema>;
export type SourceSpecInput = z.input<typeof sourceSpecSchema>;
export type GitSpec = z.output<typeof gitSpec>;
export type HttpSpec = z.output<typeof httpSpec>;
export type S3Spec = z.output<typeof s3Spec>;

/** A spec the user got wrong; the message names the offending key. */
export class SourceSpecError extends Error {
  constructor(
    message: string,
    readonly keys: string[],
  ) {
    super(message);
    this.name = 'SourceSpecError';
  }
}

/** Top-level StorageClass keys that belong to the populator (besides everything under `source.`). */
const FLAT_TOP_LEVEL = [
  'syncInterval',
  'syncTimeout',
  'syncMode',
  'publish',
  'limits.maxBytes',
  'limits.maxFiles',
];

const trueOrFalse = z.enum(['true', 'false'], { error: 'must be "true" or "false"' }).default('false');

/**
 * StorageClass keys that are policies of the class, not part of a source spec: the cluster admin
 * decides them, a PVC's annotation cannot.
 */
export const classPolicySchema = z.strictObject({
  allowPVCSource: trueOrFalse.meta({
    description:
      'Lets each PVC bring its own source in the `sharedvolume.io/source` annotation (Secrets only from its own namespace).',
  }),
  writable: trueOrFalse.meta({
    description:
      'Publishes populated volumes read-write to pods; otherwise they are read-only, since the next sync replaces what pods would change.',
  }),
});

export type ClassPolicy = { allowPVCSource: boolean; writable: boolean };

/** Lets PVCs bring their own source; src/kube/source.ts reads it. */
export const ALLOW_PVC_SOURCE = 'allowPVCSource';
/** The class policy keys, from their schema. */
export const POLICY_KEYS = Object.keys(classPolicySchema.shape);

/** Whether volumes of a class may have a source: the class names one, or lets each PVC bring its own. */
export function classMayHaveSource(params: Record<string, string>): boolean {
  return params[ALLOW_PVC_SOURCE] === 'true' || Object.keys(params).some((key) => key.startsWith('source.'));
}

/** True for a StorageClass parameter key the populator owns. */
export function isSourceParameter(key: string): boolean {
  return key.startsWith('source.') || FLAT_TOP_LEVEL.includes(key) || POLICY_KEYS.includes(key);
}

/** The class's policy keys; SourceSpecError naming a key whose value is neither "true" nor "false". */
export function parseClassPolicy(params: Record<string, string>): ClassPolicy {
  const picked = Object.fromEntries(POLICY_KEYS.filter((k) => k in params).map((k) => [k, params[k]]));
  const parsed = validateWith(classPolicySchema, picked, (path) => path.map(String).join('.'));
  return { allowPVCSource: parsed.allowPVCSource === 'true', writable: parsed.writable === 'true' };
}

/** The class's top-level populator keys (syncInterval, limits.*, ...) as they are nested in a spec. */
export function classDefaults(params: Record<string, string>): Record<string, unknown> {
  const nested: Record<string, unknown> = {};
  for (const key of FLAT_TOP_LEVEL) {
    if (params[key] !== undefined) setPath(nested, key.split('.'), params[key], key);
  }
  return nested;
}

/** Splits StorageClass parameters into the populator's keys and the rest (for the backend's schema). */
export function splitSourceParameters(params: Record<string, string>): {
  source: Record<string, string>;
  rest: Record<string, string>;
} {
  const source: Record<string, string> = {};
  const rest: Record<string, string> = {};
  for (const [key, value] of Object.entries(params)) (isSourceParameter(key) ? source : rest)[key] = value;
  return { source, rest };
}

/** Spec path (['git','url']) -> the StorageClass key users wrote (`source.git.url`). */
export function flatKeyOf(path: readonly PropertyKey[]): string {
  const dotted = path.map(String).join('.');
  return FLAT_TOP_LEVEL.includes(dotted) || path[0] === 'limits' ? dotted : `source.${dotted}`;
}

/** StorageClass key -> spec path, or undefined for a key the populator does not know. */
function specPathOf(key: string): string[] | undefined {
  if (FLAT_TOP_LEVEL.includes(key)) return key.split('.');
  if (!key.startsWith('source.')) return undefined;
  const path = key.slice('source.'.length).split('.');
  return path.every((part) => /^[A-Za-z0-9]+$/.test(part)) ? path : undefined;
}

/**
 * Flat StorageClass parameters (`source.type`, `source.git.url`, `syncInterval`, …) -> spec.
 * Returns undefined when no `source.*` key is present (the class has no source). Throws
 * SourceSpecError naming the bad key.
 */
export function parseSourceParameters(params: Record<string, string>): SourceSpec | undefined {
  const { source } = splitSourceParameters(params);
  for (const key of POLICY_KEYS) delete source[key];
  if (!Object.keys(source).some((key) => key.startsWith('source.'))) {
    const stray = Object.keys(source);
    if (stray.length === 0) return undefined;
    throw new SourceSpecError(
      `parameter "${stray[0]}" needs a source: set "source.type" and its keys`,
      stray,
    );
  }
  const nested: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(source)) {
    const path = specPathOf(key);
    if (!path) throw new SourceSpecError(`unknown parameter "${key}"`, [key]);
    setPath(nested, path, value, key);
  }
  return validate(nested, flatKeyOf);
}

/** The YAML (already parsed) of a `sharedvolume.io/source` annotation -> spec. */
export function parseSourceSpec(value: unknown): SourceSpec {
  return validate(value, (path) => path.map(String).join('.'));
}

function setPath(target: Record<string, unknown>, path: string[], value: string, key: string): void {
  let node = target;
  for (const part of path.slice(0, -1)) {
    const next = node[part];
    if (next !== undefined && (typeof next !== 'object' || next === null)) {
      throw new SourceSpecError(`parameter "${key}" conflicts with another key`, [key]);
    }
    node = (node[part] ??= {}) as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function validate(value: unknown, keyOf: (path: readonly PropertyKey[]) => string): SourceSpec {
  return validateWith(sourceSpecSchema, value, keyOf);
}

function validateWith<T extends z.ZodType>(
  schema: T,
  value: unknown,
  keyOf: (path: readonly PropertyKey[]) => string,
): z.output<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const keys: string[] = [];
  const message = result.error.issues
    .map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        const names = issue.keys.map((k) => keyOf([...issue.path, k]));
        keys.push(...names);
        return `unknown parameter ${names.map((k) => `"${k}"`).join(', ')}`;
      }
      const key = keyOf(issue.path);
      keys.push(key);
      return `parameter "${key}": ${issue.message}`;
    })
    .join('; ');
  throw new SourceSpecError(message, keys);
}

/** What identifies the data a volume holds: a change here invalidates the per-object sync state. */
export function sourceIdentity(spec: SourceSpec): string {
  const { type, git, http, s3, publish, syncMode } = spec;
  return JSON.stringify({ type, git: git && { ...git, knownHosts: undefined }, http, s3, publish, syncMode });
}
