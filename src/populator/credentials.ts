import type { SourceType } from './spec.js';
import { syncError } from './errors.js';

/**
 * Credentials of a source, held in memory only. The caller reads them from the Secret named by
 * `secretRef` (or from CSI provisioner secrets) at every sync, so rotation needs no restart.
 */
export interface SourceCredentials {
  /** git over HTTPS and http: user name for basic auth (default for a token: x-access-token). */
  username?: string;
  /** git over HTTPS and http: password for basic auth. */
  password?: string;
  /** git over HTTPS (as the password) and http (as a Bearer token). */
  token?: string;
  /** git over SSH: private key (OpenSSH or PEM). */
  sshPrivateKey?: string;
  /** git over SSH: known_hosts lines the server's host key must match. */
  knownHosts?: string;
  /** s3 */
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
}

/** Secret data key -> credential field, per source type. These names are the documented layout. */
export const SECRET_KEYS: Record<SourceType, Record<string, keyof SourceCredentials>> = {
  git: {
    username: 'username',
    password: 'password',
    token: 'token',
    'ssh-privatekey': 'sshPrivateKey',
    known_hosts: 'knownHosts',
  },
  http: { username: 'username', password: 'password', token: 'token' },
  s3: { accessKeyId: 'accessKeyId', secretAccessKey: 'secretAccessKey', sessionToken: 'sessionToken' },
};

/**
 * Secret data (values as decoded bytes or strings) -> credentials. Keys that the source type does not
 * use are ignored, so one Secret may serve several purposes.
 */
export function credentialsFromSecret(
  type: SourceType,
  data: Record<string, string | Uint8Array | undefined>,
): SourceCredentials {
  const creds: SourceCredentials = {};
  for (const [key, field] of Object.entries(SECRET_KEYS[type])) {
    const raw = data[key];
    if (raw === undefined) continue;
    const value = typeof raw === 'string' ? raw : Buffer.from(raw).toString('utf8');
    if (value !== '') creds[field] = value;
  }
  if ((creds.accessKeyId === undefined) !== (creds.secretAccessKey === undefined)) {
    throw syncError('auth', 'the Secret must hold both accessKeyId and secretAccessKey, or neither');
  }
  return creds;
}

/** Every secret value, longest first, for scrubbing messages. */
function secretValues(creds: SourceCredentials | undefined): string[] {
  if (!creds) return [];
  const values = [
    creds.password,
    creds.token,
    creds.sshPrivateKey,
    creds.secretAccessKey,
    creds.sessionToken,
  ];
  return values
    .filter((v): v is string => typeof v === 'string' && v.length >= 4)
    .sort((a, b) => b.length - a.length);
}

/** Replaces any secret value in a message (from a server or a child process) with "***". */
export function scrubSecrets(text: string, creds: SourceCredentials | undefined): string {
  let out = text;
  for (const value of secretValues(creds)) out = out.split(value).join('***');
  return out;
}
