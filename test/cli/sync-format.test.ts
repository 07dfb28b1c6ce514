import assert from 'node:assert/strict';
import { progressBar, relativeTime, sourceText, stateText } from '../../src/cli/sync-format.js';
import type { VolumeSyncState } from '../../src/populator/service.js';

const base: VolumeSyncState = {
  volume: 'local/v',
  source: { type: 'git', url: 'https://h/r.git', ref: 'main' },
  syncIntervalSeconds: 300,
  syncMode: 'mirror',
  publish: 'files',
};

describe('svctl sync output', () => {
  it('draws a progress bar from bytes, else files; without totals, no percentage', () => {
    assert.equal(
      progressBar({ phase: 'downloading', bytes: 3 * 2 ** 20, totalBytes: 12 * 2 ** 20, files: 2 }),
      '[######------------------]  25% downloading 3 MiB / 12 MiB, 2 files',
    );
    assert.equal(
      progressBar({ phase: 'publishing', bytes: 10, files: 30, totalFiles: 40 }),
      '[##################------]  75% publishing 10 B, 30/40 files',
    );
    assert.equal(
      progressBar({ phase: 'checking', bytes: 0, files: 0 }),
      `[${'.'.repeat(24)}]      checking 0 B, 0 files`,
    );
    assert.match(
      progressBar({ phase: 'downloading', bytes: 20, totalBytes: 10, files: 0 }),
      /^\[#{24}\] 100%/,
    );
  });

  it('says when, relative to now', () => {
    const now = Date.parse('2030-01-01T12:00:00Z');
    assert.equal(relativeTime('2030-01-01T11:59:18Z', now), '42s ago');
    assert.equal(relativeTime('2030-01-01T11:55:00Z', now), '5m ago');
    assert.equal(relativeTime('2029-12-30T12:00:00Z', now), '2d ago');
    assert.equal(relativeTime('2030-01-01T12:04:00Z', now), 'in 4m');
    assert.equal(relativeTime('2030-01-01T12:00:00Z', now), 'just now');
    assert.equal(relativeTime(undefined, now), '-');
  });

  it('names the source and the state in a few words', () => {
    assert.equal(sourceText(base.source), 'https://h/r.git@main');
    assert.equal(sourceText({ type: 's3', bucket: 'b', prefix: 'p/' }), 's3://b/p/');
    assert.equal(stateText(base), 'pending');
    const status = {
      sourceType: 'git',
      consecutiveFailures: 0,
      bytes: 0,
      files: 0,
      totalBytes: 0,
      totalFiles: 0,
    };
    assert.equal(stateText({ ...base, status: { ...status, lastSuccess: 'x' } }), 'ok');
    assert.equal(
      stateText({
        ...base,
        status: { ...status, lastError: { reason: 'auth', permanent: true, message: 'm', at: 'x' } },
      }),
      'failing (auth)',
    );
    assert.equal(
      stateText({ ...base, status: { ...status, inProgress: { since: 'x', pid: 1, host: 'node-2' } } }),
      'syncing on node-2',
    );
    assert.equal(
      stateText({
        ...base,
        running: { phase: 'downloading', bytes: 1, totalBytes: 3, files: 0, since: 'x' },
      }),
      'syncing 33%',
    );
  });
});
