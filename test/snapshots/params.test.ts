import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parameterTable } from '../../src/backends/param-docs.js';
import { CsiError } from '../../src/rpc/errors.js';
import { planSnapshot, snapshotParamsSchema } from '../../src/snapshots/params.js';
import { formatSnapshotId, parseSnapshotId } from '../../src/snapshots/snapshot-id.js';

describe('VolumeSnapshotClass parameters', () => {
  it('match the table in docs/snapshots.md exactly', () => {
    const doc = readFileSync(new URL('../../../docs/snapshots.md', import.meta.url), 'utf8');
    assert.ok(doc.includes(parameterTable(snapshotParamsSchema)), 'docs/snapshots.md has the current table');
  });

  it('default to a zstd archive beside the volume', () => {
    assert.deepEqual(planSnapshot({}), { type: 'archive', compression: 'zstd' });
    assert.deepEqual(planSnapshot({ compression: 'gzip' }), { type: 'archive', compression: 'gzip' });
    assert.deepEqual(planSnapshot({ snapshotType: 'native' }), { type: 'btrfs' });
  });

  it('read an S3 location with its prefix, endpoint and addressing style', () => {
    assert.deepEqual(
      planSnapshot({ snapshotLocation: 's3://backups/cluster-1/ns', s3Endpoint: 'http://127.0.0.1:9000' }),
      {
        type: 's3',
        compression: 'zstd',
        s3: {
          bucket: 'backups',
          prefix: 'cluster-1/ns',
          endpoint: 'http://127.0.0.1:9000',
          region: 'us-east-1',
          forcePathStyle: true,
        },
      },
    );
    const aws = planSnapshot({ snapshotLocation: 's3://backups', s3Region: 'eu-west-1' });
    assert.equal(aws.type === 's3' && aws.s3.prefix, '');
    assert.equal(aws.type === 's3' && aws.s3.forcePathStyle, false);
  });

  for (const [what, raw, key] of [
    ['an unknown key', { colour: 'red' }, /colour/],
    ['a bad compression', { compression: 'lz4' }, /compression/],
    ['compression with a native snapshot', { snapshotType: 'native', compression: 'zstd' }, /compression/],
    ['native in S3', { snapshotLocation: 's3://b1b/p', snapshotType: 'native' }, /snapshotType/],
    ['another scheme', { snapshotLocation: 'gs://bucket' }, /snapshotLocation/],
    ['a bad bucket', { snapshotLocation: 's3://UPPER/x' }, /snapshotLocation/],
    ['a traversing prefix', { snapshotLocation: 's3://bucket/../x' }, /snapshotLocation/],
    ['a bad endpoint', { snapshotLocation: 's3://bucket', s3Endpoint: 'not a url' }, /s3Endpoint/],
  ] as const) {
    it(`refuse ${what} with INVALID_ARGUMENT naming the key`, () => {
      assert.throws(
        () => planSnapshot(raw as Record<string, string>),
        (err: unknown) => err instanceof CsiError && err.code === 3 && key.test(err.message),
      );
    });
  }
});

describe('snapshot ids', () => {
  const token = '0123456789abcdef01234567';

  it('round-trip each kind', () => {
    for (const ref of [
      { instance: 'local', type: 'archive' as const, token },
      { instance: 'nfs-a', type: 'btrfs' as const, token },
      { instance: 'local', type: 's3' as const, token, bucket: 'backups', prefix: 'a/b' },
      { instance: 'local', type: 's3' as const, token, bucket: 'backups', prefix: '' },
    ]) {
      assert.deepEqual(parseSnapshotId(formatSnapshotId(ref)), ref);
    }
    assert.equal(
      formatSnapshotId({ instance: 'local', type: 's3', token, bucket: 'b-1', prefix: 'p' }),
      `local/s3/b-1/p/${token}`,
    );
  });

  it('are never longer than 128 bytes', () => {
    assert.throws(() =>
      formatSnapshotId({
        instance: 'local',
        type: 's3',
        token,
        bucket: 'b'.repeat(60),
        prefix: 'p'.repeat(60),
      }),
    );
  });

  it('treat anything else as not ours', () => {
    for (const id of [
      '',
      'local',
      'local/archive/xyz',
      `local/tape/${token}`,
      `Local/archive/${token}`,
      `local/archive/x/${token}`,
      `local/s3/${token}`,
      `local/s3/bucket/../${token}`,
    ]) {
      assert.equal(parseSnapshotId(id), undefined, id);
    }
  });
});
