import { createHash } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import type { PvcRef } from '../kube/client.js';
import type { SecretRef } from '../kube/source.js';
import { SOURCE_TYPES, type SourceSpec } from './spec.js';
import { writeJsonAtomic } from './state.js';

/**
 * A populated volume's registration: what to sync, from where, with which Secret. It lives in the
 * volume's sync state directory on the backend (`<backend>/.sharedvolume/sync/<key>/`), so any
 * controller replica, after any restart, rebuilds the schedule by scanning these files. It never
 * holds a credential: only the Secret's name.
 */

export interface VolumeRegistration {
  /** The CSI volume id. */
  id: string;
  /** The volume's directory as this controller reaches it. */
  volumeDir: string;
  /** Its sync state directory: `syncStateDir(await backend.metadataDirectory(), id)`. */
  stateDir: string;
  spec: SourceSpec;
  secretRef?: SecretRef;
  pvc?: PvcRef;
}

interface RegistrationFile {
  version: 1;
  id: string;
  /** Relative to the state directory: both are on the backend, wherever it is mounted. */
  volumeDir: string;
  spec: SourceSpec;
  secretRef?: SecretRef;
  pvc?: PvcRef;
  registeredAt: string;
}

const FILE = 'registration.json';

/** `<metadata dir>/sync`: the parent of every volume's sync state directory on one backend. */
export const syncStateRoot = (metadataDir: string) => join(metadataDir, 'sync');

/** The sync state directory of a volume: a fixed-length name whatever the volume id looks like. */
export function syncStateDir(metadataDir: string, volumeId: string): string {
  return stateDirUnder(syncStateRoot(metadataDir), volumeId);
}

export function stateDirUnder(stateRoot: string, volumeId: string): string {
  return join(stateRoot, createHash('sha256').update(volumeId).digest('hex').slice(0, 32));
}

export async function writeRegistration(reg: VolumeRegistration): Promise<void> {
  const file: RegistrationFile = {
    version: 1,
    id: reg.id,
    volumeDir: relative(reg.stateDir, reg.volumeDir),
    spec: reg.spec,
    ...(reg.secretRef ? { secretRef: reg.secretRef } : {}),
    ...(reg.pvc ? { pvc: reg.pvc } : {}),
    registeredAt: new Date().toISOString(),
  };
  await writeJsonAtomic(join(reg.stateDir, FILE), file);
}

/** The registration in a state directory; undefined when there is none (or it is not ours). */
export async function readRegistration(stateDir: string): Promise<VolumeRegistration | undefined> {
  let text: string;
  try {
    text = await readFile(join(stateDir, FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const file = parseFile(text);
  if (!file) return undefined;
  return {
    id: file.id,
    volumeDir: resolve(stateDir, file.volumeDir),
    stateDir,
    spec: file.spec,
    ...(file.secretRef ? { secretRef: file.secretRef } : {}),
    ...(file.pvc ? { pvc: file.pvc } : {}),
  };
}

/** Our own file, written atomically: only a version or shape we do not know is refused. */
function parseFile(text: string): RegistrationFile | undefined {
  try {
    const file = JSON.parse(text) as RegistrationFile;
    const known =
      file.version === 1 &&
      typeof file.id === 'string' &&
      typeof file.volumeDir === 'string' &&
      !isAbsolute(file.volumeDir) &&
      SOURCE_TYPES.includes(file.spec?.type);
    return known ? file : undefined;
  } catch {
    return undefined;
  }
}

export async function registrationExists(stateDir: string): Promise<boolean> {
  return (await readRegistration(stateDir).catch(() => undefined)) !== undefined;
}

/** Every registration under a state root. A missing root (no volume synced yet) is empty. */
export async function scanRegistrations(stateRoot: string): Promise<VolumeRegistration[]> {
  let names: string[];
  try {
    names = await readdir(stateRoot);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const found = await Promise.all(
    names.filter((n) => /^[0-9a-f]{32}$/.test(n)).map((n) => readRegistration(join(stateRoot, n))),
  );
  return found.filter((r): r is VolumeRegistration => r !== undefined);
}

/** Removes the registration first (so other replicas stop scheduling it), then the whole state. */
export async function removeRegistration(stateDir: string): Promise<void> {
  await rm(join(stateDir, FILE), { force: true });
}

export async function removeStateDir(stateDir: string): Promise<void> {
  await rm(stateDir, { recursive: true, force: true });
}

/** Removes a volume's sync state without a running populator (it may be left from one). */
export async function removeVolumeSyncState(metadataDir: string, volumeId: string): Promise<void> {
  const dir = syncStateDir(metadataDir, volumeId);
  await removeRegistration(dir);
  await removeStateDir(dir);
}
