/**
 * The populator engine: fills a volume from git, an HTTP archive or S3 and keeps it in sync.
 * Everything the controller, the scheduler, svctl and the webhook need is exported here.
 */
export { syncOnce, type SyncOptions, type SyncResult } from './sync.js';
export type { SyncProgress } from './source.js';
export {
  parseSourceParameters,
  parseSourceSpec,
  splitSourceParameters,
  isSourceParameter,
  sourceSpecSchema,
  sourceIdentity,
  parseDuration,
  parseSize,
  SourceSpecError,
  SOURCE_TYPES,
  type SourceSpec,
  type SourceSpecInput,
  type SourceType,
} from './spec.js';
export { credentialsFromSecret, scrubSecrets, SECRET_KEYS, type SourceCredentials } from './credentials.js';
export { SyncError, statusForSyncError, type SyncErrorReason } from './errors.js';
export { readSyncStatus, type SyncStatus } from './state.js';
export { publishedRoot, type PublishMode, type SyncMode } from './publish.js';
export { backoffDelay, nextSyncDelay } from './backoff.js';
