import { invalidArgument } from '../rpc/errors.js';

/**
 * Volume id format: `<instance>/<path>`, e.g. `local/pvc-5f1c` or `nfs-a/team1/cache`.
 * `instance` names a backend instance; `path` is the volume's directory relative to that instance's root.
 * Both are restricted so that an id can never address anything outside the root.
 */
export interface VolumeRef {
  instance: string;
  path: string;
}

export const MAX_ID_BYTES = 128;
const INSTANCE = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;
const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,62}$/;
const MAX_DEPTH = 4;

export function isValidInstanceName(name: string): boolean {
  return INSTANCE.test(name);
}

/** Throws INVALID_ARGUMENT unless `path` is a safe relative path of plain segments. */
export function assertSafeRelativePath(path: string, what: string): void {
  if (path.includes('\0')) throw invalidArgument(`${what} contains a NUL byte`);
  if (path.startsWith('/')) throw invalidArgument(`${what} must be relative, got an absolute path`);
  const segments = path.split('/');
  if (segments.length > MAX_DEPTH) throw invalidArgument(`${what} has more than ${MAX_DEPTH} path segments`);
  for (const segment of segments) {
    if (segment === '..' || segment === '.') throw invalidArgument(`${what} contains "${segment}"`);
    if (!SEGMENT.test(segment)) {
      throw invalidArgument(
        `${what} segment "${segment}" is not allowed (letters, digits, "_", ".", "-"; 1-63 characters; no leading "." or "-")`,
      );
    }
  }
}

export function formatVolumeId(ref: VolumeRef): string {
  const id = `${ref.instance}/${ref.path}`;
  if (Buffer.byteLength(id) > MAX_ID_BYTES) {
    throw invalidArgument(`volume id "${id}" would exceed ${MAX_ID_BYTES} bytes; use a shorter subDir`);
  }
  return id;
}

/**
 * Parses an id for calls that must find the volume. Returns undefined for an id that is well-formed
 * for some other driver but cannot be ours (no instance separator): callers answer NOT_FOUND or OK.
 * Anything unsafe (traversal, NUL, overlong) is INVALID_ARGUMENT.
 */
export function parseVolumeId(id: string): VolumeRef | undefined {
  if (!id) throw invalidArgument('volume_id is required');
  if (Buffer.byteLength(id) > MAX_ID_BYTES) throw invalidArgument(`volume_id exceeds ${MAX_ID_BYTES} bytes`);
  if (id.includes('\0')) throw invalidArgument('volume_id contains a NUL byte');
  const slash = id.indexOf('/');
  if (slash < 0) return undefined;
  const instance = id.slice(0, slash);
  const path = id.slice(slash + 1);
  if (!isValidInstanceName(instance)) throw invalidArgument(`volume_id "${id}": bad backend instance name`);
  assertSafeRelativePath(path, `volume_id "${id}"`);
  return { instance, path };
}
