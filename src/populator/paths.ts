import { syncError } from './errors.js';

/**
 * Path safety rules shared by every source: an entry name from an archive, a git tree or an S3 key
 * must name a place inside the volume, and a symlink must resolve inside it.
 */

/** Name the publisher uses for itself at the top of the volume; a source may not use it. */
export const STAGING_DIR = '.sv-staging';

/**
 * Normalises an entry name ("./a//b/", "a/b") to "a/b". Refuses absolute names, `..`, NUL, backslash
 * drive names and empty names with a SyncError naming the entry.
 */
export function safeRelativePath(name: string, what = 'entry'): string {
  const refuse = (why: string) => syncError('unsafe', `${what} "${printable(name)}" refused: ${why}`);
  if (name.includes('\0')) throw refuse('contains a NUL byte');
  if (name.startsWith('/') || /^[A-Za-z]:[\\/]/.test(name) || name.startsWith('\\')) {
    throw refuse('absolute path');
  }
  const parts = name.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.some((part) => part === '..')) throw refuse('path contains ".."');
  if (parts.length === 0) throw refuse('empty path');
  if (parts.some((part) => Buffer.byteLength(part) > 255))
    throw refuse('a path component is longer than 255 bytes');
  return parts.join('/');
}

/** Parent directories of a relative path, outermost first: "a/b/c" -> ["a", "a/b"]. */
export function parentsOf(rel: string): string[] {
  const parts = rel.split('/');
  return parts.slice(1).map((_, i) => parts.slice(0, i + 1).join('/'));
}

const MAX_LINK_HOPS = 40;

/**
 * Resolves where a symlink at `linkRel` with `target` points, following other symlinks of the tree
 * (known through `readLink`, which returns a link's target or undefined for a non-link), and reports
 * whether it stays inside the root. Purely lexical beyond `readLink`: nothing is followed on disk.
 * Any step above the root counts as an escape, even if a later step would come back.
 */
export async function linkStaysInside(
  linkRel: string,
  target: string,
  readLink: (rel: string) => Promise<string | undefined> | string | undefined,
): Promise<boolean> {
  if (target.startsWith('/') || target.includes('\0') || target === '') return false;
  const resolved = linkRel.split('/').slice(0, -1);
  let pending = target.split('/');
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (resolved.length === 0) return false;
      resolved.pop();
      continue;
    }
    resolved.push(part);
    const next = await readLink(resolved.join('/'));
    if (next === undefined) continue;
    if (++hops > MAX_LINK_HOPS || next.startsWith('/') || next === '') return false;
    resolved.pop();
    pending = [...next.split('/'), ...pending];
  }
  return true;
}

/** Entry names may carry control characters; keep error messages on one readable line. */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f]/g, '?').slice(0, 300);
}
