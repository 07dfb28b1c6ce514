import type { VolumeSyncState } from '../populator/service.js';
import type { SyncProgress } from '../populator/source.js';
import { formatBytes, formatFields, formatTable } from './format.js';

/** svctl's human output for `svctl sync status` and `svctl sync VOLUME --wait`. */

const BAR_WIDTH = 24;

/**
 * `[#########---------------]  38% downloading 12 MiB / 31 MiB, 120/310 files`. Without totals
 * (a source that does not know them yet) the bar is a row of dots and there is no percentage.
 */
export function progressBar(progress: SyncProgress): string {
  const fraction = progress.totalBytes
    ? progress.bytes / progress.totalBytes
    : progress.totalFiles
      ? progress.files / progress.totalFiles
      : undefined;
  const bytes = `${formatBytes(progress.bytes)}${progress.totalBytes ? ` / ${formatBytes(progress.totalBytes)}` : ''}`;
  const files = `${progress.files}${progress.totalFiles ? `/${progress.totalFiles}` : ''} files`;
  const detail = `${progress.phase} ${bytes}, ${files}`;
  if (fraction === undefined) return `[${'.'.repeat(BAR_WIDTH)}]      ${detail}`;
  const clamped = Math.min(1, Math.max(0, fraction));
  const filled = Math.round(clamped * BAR_WIDTH);
  const percent = `${Math.floor(clamped * 100)}%`.padStart(4);
  return `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${percent} ${detail}`;
}

/** "just now", "42s ago", "5m ago", "3h ago", "2d ago"; in the future: "in 4m". */
export function relativeTime(iso: string | undefined, now: number): string {
  if (!iso) return '-';
  const delta = Math.round((now - Date.parse(iso)) / 1000);
  const abs = Math.abs(delta);
  const text =
    abs < 60
      ? `${abs}s`
      : abs < 3600
        ? `${Math.floor(abs / 60)}m`
        : abs < 86400
          ? `${Math.floor(abs / 3600)}h`
          : `${Math.floor(abs / 86400)}d`;
  if (abs < 1) return 'just now';
  return delta >= 0 ? `${text} ago` : `in ${text}`;
}

export function sourceText(source: Record<string, string>): string {
  if (source.type === 's3') return `s3://${source.bucket}/${source.prefix ?? ''}`;
  return source.ref ? `${source.url}@${source.ref}` : (source.url ?? source.type ?? '?');
}

/** One word or two for the STATE column. */
export function stateText(v: VolumeSyncState): string {
  if (v.running) {
    const { bytes, totalBytes, files, totalFiles } = v.running;
    const fraction = totalBytes ? bytes / totalBytes : totalFiles ? files / totalFiles : undefined;
    return fraction === undefined ? 'syncing' : `syncing ${Math.floor(Math.min(1, fraction) * 100)}%`;
  }
  if (v.status?.inProgress) return `syncing on ${v.status.inProgress.host}`;
  if (v.status?.lastError) return `failing (${v.status.lastError.reason})`;
  if (v.status?.lastSuccess) return 'ok';
  return 'pending';
}

const shortRevision = (revision: string | undefined) =>
  revision ? revision.replace(/^sha256:/, '').slice(0, 12) : '-';

export function formatSyncTable(volumes: VolumeSyncState[], now: number): string {
  if (volumes.length === 0) return 'No populated volumes.';
  const rows = volumes.map((v) => [
    v.volume,
    sourceText(v.source),
    shortRevision(v.status?.revision),
    relativeTime(v.status?.lastSuccess, now),
    stateText(v),
    relativeTime(v.nextSync, now),
  ]);
  return formatTable(['VOLUME', 'SOURCE', 'REVISION', 'LAST SUCCESS', 'STATE', 'NEXT SYNC'], rows);
}

export function formatSyncDetails(v: VolumeSyncState, now: number): string {
  const s = v.status;
  const error = s?.lastError;
  const fields: [string, string][] = [
    ['volume', v.volume],
    ['source', sourceText(v.source)],
    ['interval', v.syncIntervalSeconds === 0 ? 'fill once' : `${v.syncIntervalSeconds}s`],
    ['mode', `${v.syncMode}, publish ${v.publish}`],
    ['secret', v.secretRef ? `${v.secretRef.namespace}/${v.secretRef.name}` : '-'],
    ['state', stateText(v)],
    ['revision', s?.revision ?? '-'],
    ['last success', stamp(s?.lastSuccess, now)],
    ['last attempt', stamp(s?.lastAttempt, now)],
    ['last change', stamp(s?.lastChange, now)],
    ['last error', error ? `${error.reason}: ${error.message} (${relativeTime(error.at, now)})` : '-'],
    ['failures', String(s?.consecutiveFailures ?? 0)],
    ['last sync', s ? `${formatBytes(s.bytes)} in ${s.files} files written` : '-'],
    ['published', s ? `${formatBytes(s.totalBytes)} in ${s.totalFiles} files` : '-'],
    ['next sync', stamp(v.nextSync, now)],
  ];
  if (v.lease) fields.push(['lease', `${v.lease.owner} until ${v.lease.expiresAt}`]);
  if (v.running) fields.push(['progress', progressBar(v.running)]);
  return formatFields(fields);
}

const stamp = (iso: string | undefined, now: number) => (iso ? `${iso} (${relativeTime(iso, now)})` : '-');
