import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rpc } from '../../src/cli/csi-client.js';
import { mountCapability, rejectsWith } from '../helpers/csi.js';
import { startDriver, type RunningDriver } from '../helpers/driver.js';
import {
  S3RVER_CREDENTIALS,
  startCountingProxy,
  startS3rver,
  type S3rverInstance,
} from '../helpers/s3rver.js';
import { buildTree, describeTree } from '../helpers/tree.js';

const MiB = 1024 * 1024;
const BUCKET = 'snapshots';
const SECRETS = {
  accessKeyId: S3RVER_CREDENTIALS.accessKeyId,
  secretAccessKey: S3RVER_CREDENTIALS.secretAccessKey,
};

describe('snapshots in an S3 bucket (s3rver)', function () {
  let dir: string;
  let root: string;
  let s3: S3rverInstance;
  let driver: RunningDriver;
  let sourceId: string;
  let sourceTree: Awaited<ReturnType<typeof describeTree>>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-s3snap-'));
    root = join(dir, 'root');
    s3 = await startS3rver([BUCKET]);
    driver = await startDriver({ args: ['--local-root', root] });
    const { volume } = await rpc(driver.controller, 'CreateVolume', {
      name: 's3-source',
      capacity_range: { required_bytes: 16 * MiB },
      volume_capabilities: [mountCapability()],
    });
    sourceId = volume!.volume_id;
    await rm(join(root, 's3-source'), { recursive: true });
    await buildTree(join(root, 's3-source'), { files: 300, maxFileBytes: 64 * 1024, seed: 11 });
    sourceTree = await describeTree(join(root, 's3-source'));
  });

  after(async () => {
    await driver?.stop();
    await s3?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const parameters = (prefix: string) => ({
    snapshotLocation: `s3://${BUCKET}/${prefix}`,
    s3Endpoint: s3.endpoint,
  });

  const snapshot = (name: string, prefix: string, secrets: Record<string, string> = SECRETS) =>
    rpc(driver.controller, 'CreateSnapshot', {
      name,
      source_volume_id: sourceId,
      parameters: parameters(prefix),
      secrets,
    }).then((r) => r.snapshot!);

  const restore = (name: string, snapshotId: string, secrets: Record<string, string> = SECRETS) =>
    rpc(driver.controller, 'CreateVolume', {
      name,
      volume_capabilities: [mountCapability()],
      volume_content_source: { snapshot: { snapshot_id: snapshotId } },
      secrets,
    }).then((r) => r.volume!);

  async function keys(prefix: string): Promise<string[]> {
    const listed = await s3.client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
    return (listed.Contents ?? []).map((o) => o.Key!).sort();
  }

  it('uploads a verified archive and a manifest, and restores the tree from them', async () => {
    const snap = await snapshot('s3-a', 'cluster-1/team-a');
    assert.match(snap.snapshot_id, /^local\/s3\/snapshots\/cluster-1\/team-a\/[0-9a-f]{24}$/);
    assert.equal(snap.ready_to_use, true);
    const token = snap.snapshot_id.split('/').pop()!;
    assert.deepEqual(await keys('cluster-1/team-a/'), [
      `cluster-1/team-a/${token}.json`,
      `cluster-1/team-a/${token}.tar.zst`,
    ]);
    const manifest = JSON.parse(
      await (
        await s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: `cluster-1/team-a/${token}.json` }))
      ).Body!.transformToString(),
    ) as { state: string; archive: { bytes: number; sha256: string } };
    assert.equal(manifest.state, 'ready');
    // What the bucket holds is exactly what was hashed: no aws-chunked framing stored as data.
    const object = await s3.client.send(
      new GetObjectCommand({ Bucket: BUCKET, Key: `cluster-1/team-a/${token}.tar.zst` }),
    );
    const bytes = Buffer.from(await object.Body!.transformToByteArray());
    assert.equal(bytes.length, manifest.archive.bytes);
    assert.equal(createHash('sha256').update(bytes).digest('hex'), manifest.archive.sha256);
    assert.equal(bytes.readUInt32LE(0), 0xfd2fb528, 'zstd frame');

    const volume = await restore('from-s3', snap.snapshot_id);
    assert.equal(volume.capacity_bytes, String(16 * MiB));
    assert.deepEqual(await describeTree(join(root, 'from-s3')), sourceTree);
  });

  it("writes nothing but JSON log lines, the AWS SDK's own warnings included", () => {
    // On Node 20 the SDK emits a multi-line NodeVersionSupportWarning when it loads.
    const lines = driver.log().split('\n').filter(Boolean);
    assert.ok(lines.length > 0);
    for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), line);
  });

  it('keeps no archive on the backend, and no secret in the log, a record or the volume', async () => {
    await snapshot('s3-b', 'no-local-copy');
    const data = await readdir(join(root, '.sharedvolume', 'snapshots', 'data'));
    assert.deepEqual(data, []);
    assert.ok(!driver.log().includes(SECRETS.secretAccessKey), 'the secret key is not logged');
    const records = join(root, '.sharedvolume', 'snapshots', 'records');
    for (const file of await readdir(records)) {
      assert.ok(!(await readFile(join(records, file), 'utf8')).includes(SECRETS.secretAccessKey));
    }
  });

  it('refuses a snapshot or a restore without credentials (INVALID_ARGUMENT), and a missing object (NOT_FOUND)', async () => {
    await rejectsWith(snapshot('s3-nocreds', 'x', {}), status.INVALID_ARGUMENT, /accessKeyId/);
    const snap = await snapshot('s3-c', 'gone');
    await rejectsWith(
      restore('from-s3-nocreds', snap.snapshot_id, {}),
      status.INVALID_ARGUMENT,
      /credentials/,
    );
    await s3.remove(BUCKET, `gone/${snap.snapshot_id.split('/').pop()}.tar.zst`);
    const before = (await readdir(root)).sort();
    await rejectsWith(restore('from-s3-gone', snap.snapshot_id), status.NOT_FOUND);
    assert.deepEqual((await readdir(root)).sort(), before);
  });

  it('deletes the archive and the manifest, never the source', async () => {
    const snap = await snapshot('s3-d', 'to-delete');
    await rpc(driver.controller, 'DeleteSnapshot', { snapshot_id: snap.snapshot_id, secrets: SECRETS });
    assert.deepEqual(await keys('to-delete/'), []);
    assert.deepEqual(await describeTree(join(root, 's3-source')), sourceTree);
    assert.equal(
      (await rpc(driver.controller, 'ListSnapshots', { snapshot_id: snap.snapshot_id })).entries.length,
      0,
    );
  });

  it('uploads an archive larger than one part in several parts, spooled through disk, in order', async () => {
    const { volume } = await rpc(driver.controller, 'CreateVolume', {
      name: 's3-big',
      capacity_range: { required_bytes: 256 * MiB },
      volume_capabilities: [mountCapability()],
    });
    // Incompressible, so that the archive spans three 64 MiB parts.
    for (let i = 0; i < 5; i++) await writeFile(join(root, 's3-big', `blob${i}`), randomBytes(30 * MiB));
    const tree = await describeTree(join(root, 's3-big'));
    const proxy = await startCountingProxy(s3.endpoint);
    const { snapshot } = await rpc(driver.controller, 'CreateSnapshot', {
      name: 's3-big-snap',
      source_volume_id: volume!.volume_id,
      parameters: { snapshotLocation: `s3://${BUCKET}/big`, s3Endpoint: proxy.endpoint },
      secrets: SECRETS,
    }).finally(() => proxy.stop());
    const parts = proxy.requests.filter((r) => r.method === 'PUT' && /[?&]partNumber=/.test(r.url));
    assert.equal(parts.length, 3, 'three parts uploaded');
    assert.equal(snapshot!.ready_to_use, true);
    const token = snapshot!.snapshot_id.split('/').pop()!;
    const head = await s3.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `big/${token}.tar.zst` }));
    assert.ok(head.ContentLength! > 128 * MiB, `${head.ContentLength} bytes`);
    assert.deepEqual(
      (await readdir(join(root, '.sharedvolume', 'snapshots', 'tmp'))).filter((f) => f.includes('.spool')),
      [],
      'spool files removed',
    );
    // The proxy is gone: the endpoint in the secret wins over the one recorded.
    await restore('from-s3-big', snapshot!.snapshot_id, { ...SECRETS, endpoint: s3.endpoint });
    assert.deepEqual(await describeTree(join(root, 'from-s3-big')), tree);
  });

  it('reports a failed upload once and leaves no object, manifest or spool behind', async () => {
    const parameters = { snapshotLocation: 's3://no-such-bucket/x', s3Endpoint: s3.endpoint };
    const request = { name: 's3-fails', source_volume_id: sourceId, parameters, secrets: SECRETS };
    await rejectsWith(rpc(driver.controller, 'CreateSnapshot', request), status.INTERNAL, /bucket/i);
    const tmp = await readdir(join(root, '.sharedvolume', 'snapshots', 'tmp'));
    assert.deepEqual(
      tmp.filter((f) => f.includes('.spool') || f.endsWith('.partial')),
      [],
    );
    const listed = await rpc(driver.controller, 'ListSnapshots', {});
    const failed = listed.entries.find((e) => e.snapshot!.snapshot_id.includes('/no-such-bucket/'));
    assert.equal(failed?.snapshot!.ready_to_use, false, 'never reported ready');
  });

  it('restores after the loss of the storage system, from the bucket alone', async () => {
    const snap = await snapshot('s3-e', 'offsite');
    await driver.stop();
    // A new, empty backend under the same instance name: every record the old one held is gone.
    await rm(root, { recursive: true, force: true });
    driver = await startDriver({ args: ['--local-root', root] });
    const secrets = { ...SECRETS, endpoint: s3.endpoint };
    const volume = await restore('rebuilt', snap.snapshot_id, secrets);
    assert.equal(volume.capacity_bytes, String(16 * MiB), 'the restore size comes from the manifest');
    assert.deepEqual(await describeTree(join(root, 'rebuilt')), sourceTree);
    const head = await s3.client.send(
      new HeadObjectCommand({ Bucket: BUCKET, Key: `offsite/${snap.snapshot_id.split('/').pop()}.json` }),
    );
    assert.ok(head.ContentLength! > 0);
  });
});
