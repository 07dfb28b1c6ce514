import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execa } from 'execa';
import { open, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rpc } from '../../src/cli/csi-client.js';
import type { CreateSnapshotRequest } from '../../src/generated/csi/v1/CreateSnapshotRequest.js';
import type { Snapshot__Output } from '../../src/generated/csi/v1/Snapshot.js';
import { mountCapability, rejectsWith } from '../helpers/csi.js';
import { callWithDeadline } from '../helpers/deadline.js';
import { startDriver, type RunningDriver } from '../helpers/driver.js';
import { ProgramGate } from '../helpers/program-gate.js';
import { buildTree, describeTree } from '../helpers/tree.js';

const MiB = 1024 * 1024;

/** Backend state a failed call must leave unchanged: volume directories, records, staging. */
async function backendState(root: string) {
  const meta = join(root, '.sharedvolume');
  return {
    entries: (await readdir(root)).filter((e) => e !== '.sharedvolume').sort(),
    records: (await readdir(join(meta, 'records'))).sort(),
    staging: await readdir(join(meta, 'staging')),
  };
}

describe('snapshots on the backend, beside the volume (archives)', function () {
  let dir: string;
  let root: string;
  let gate: ProgramGate;
  let driver: RunningDriver;
  let sourceId: string;
  let sourceTree: Awaited<ReturnType<typeof describeTree>>;

  const snapshotsDir = () => join(root, '.sharedvolume', 'snapshots');
  const start = () => startDriver({ args: ['--local-root', root], env: gate.env() });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-snap-'));
    root = join(dir, 'root');
    gate = await ProgramGate.create(['tar']);
    driver = await start();
    const { volume } = await rpc(driver.controller, 'CreateVolume', {
      name: 'snap-source',
      capacity_range: { required_bytes: 64 * MiB },
      volume_capabilities: [mountCapability()],
    });
    sourceId = volume!.volume_id;
    await rm(join(root, 'snap-source'), { recursive: true });
    await buildTree(join(root, 'snap-source'), { files: 400, maxFileBytes: 48 * 1024, seed: 7 });
    sourceTree = await describeTree(join(root, 'snap-source'));
  });

  after(async () => {
    await gate?.release('tar');
    await driver?.stop();
    await gate?.remove();
    await rm(dir, { recursive: true, force: true });
  });

  const snapshot = (
    name: string,
    parameters: Record<string, string> = {},
    extra: Partial<CreateSnapshotRequest> = {},
  ) =>
    rpc(driver.controller, 'CreateSnapshot', { name, source_volume_id: sourceId, parameters, ...extra }).then(
      (r) => r.snapshot!,
    );

  const restore = (name: string, snapshotId: string, requiredBytes = 0) =>
    rpc(driver.controller, 'CreateVolume', {
      name,
      volume_capabilities: [mountCapability()],
      capacity_range: { required_bytes: requiredBytes },
      volume_content_source: { snapshot: { snapshot_id: snapshotId } },
    }).then((r) => r.volume!);

  const list = (request: {
    snapshot_id?: string;
    source_volume_id?: string;
    max_entries?: number;
    starting_token?: string;
  }) => rpc(driver.controller, 'ListSnapshots', request);

  it('advertises CREATE_DELETE_SNAPSHOT and LIST_SNAPSHOTS', async () => {
    const { capabilities } = await rpc(driver.controller, 'ControllerGetCapabilities', {});
    const types = capabilities.map((c) => c.rpc?.type);
    assert.ok(types.includes('CREATE_DELETE_SNAPSHOT') && types.includes('LIST_SNAPSHOTS'));
  });

  for (const [compression, magic] of [
    ['zstd', '28b52ffd'],
    ['gzip', '1f8b'],
    ['none', ''],
  ] as const) {
    it(`round-trips a tree through a ${compression} archive: content, modes, owners, links, mtimes`, async () => {
      const snap = await snapshot(`round-${compression}`, compression === 'zstd' ? {} : { compression });
      assert.match(snap.snapshot_id, /^local\/archive\/[0-9a-f]{24}$/);
      assert.equal(snap.ready_to_use, true);
      assert.equal(snap.source_volume_id, sourceId);
      assert.equal(snap.size_bytes, String(64 * MiB), 'the restore size is the source capacity');
      assert.ok(Number(snap.creation_time!.seconds) > 1_700_000_000);
      const token = snap.snapshot_id.split('/')[2]!;
      const suffix = { zstd: '.tar.zst', gzip: '.tar.gz', none: '.tar' }[compression];
      const archive = join(snapshotsDir(), 'data', `${token}${suffix}`);
      const head = Buffer.alloc(4);
      const file = await open(archive);
      await file.read(head, 0, 4, 0);
      await file.close();
      if (magic)
        assert.equal(head.toString('hex').slice(0, magic.length), magic, 'the archive is what it claims');

      const volume = await restore(`restored-${compression}`, snap.snapshot_id);
      assert.equal(volume.content_source?.snapshot?.snapshot_id, snap.snapshot_id);
      assert.equal(volume.capacity_bytes, String(64 * MiB));
      assert.deepEqual(await describeTree(join(root, `restored-${compression}`)), sourceTree);
    });
  }

  it('is idempotent by name; the same name for another source is ALREADY_EXISTS', async () => {
    const first = await snapshot('idem');
    const again = await snapshot('idem');
    assert.equal(again.snapshot_id, first.snapshot_id);
    const archives = (await readdir(join(snapshotsDir(), 'data'))).filter((f) =>
      f.startsWith(first.snapshot_id.split('/')[2]!),
    );
    assert.equal(archives.length, 1, 'written once');
    const { volume: other } = await rpc(driver.controller, 'CreateVolume', {
      name: 'snap-other',
      volume_capabilities: [mountCapability()],
    });
    await rejectsWith(snapshot('idem', {}, { source_volume_id: other!.volume_id }), status.ALREADY_EXISTS);
  });

  it('validates its parameters and its source', async () => {
    await rejectsWith(snapshot('bad-1', { compression: 'lz4' }), status.INVALID_ARGUMENT, /compression/);
    await rejectsWith(snapshot('bad-2', { colour: 'blue' }), status.INVALID_ARGUMENT, /colour/);
    await rejectsWith(snapshot('bad-3', { snapshotType: 'native' }), status.INVALID_ARGUMENT, /btrfs/);
    await rejectsWith(
      snapshot('bad-4', { snapshotLocation: 'ftp://x' }),
      status.INVALID_ARGUMENT,
      /snapshotLocation/,
    );
    await rejectsWith(
      snapshot('bad-5', { snapshotLocation: 's3://bucket/p' }),
      status.INVALID_ARGUMENT,
      /accessKeyId/,
    );
    await rejectsWith(snapshot('bad-6', {}, { source_volume_id: 'local/missing' }), status.NOT_FOUND);
    await rejectsWith(snapshot('', {}), status.INVALID_ARGUMENT, /name/);
    const names = (await list({})).entries.map((e) => e.snapshot!.snapshot_id);
    assert.equal(new Set(names).size, names.length);
    assert.ok(!(await readdir(join(snapshotsDir(), 'tmp'))).some((f) => f.endsWith('.partial')));
  });

  it('lists by snapshot id and by source volume id, and pages with stable tokens', async () => {
    const { volume: second } = await rpc(driver.controller, 'CreateVolume', {
      name: 'snap-second-source',
      volume_capabilities: [mountCapability()],
    });
    const mine: Snapshot__Output[] = [];
    for (let i = 0; i < 5; i++)
      mine.push(await snapshot(`page-${i}`, {}, { source_volume_id: second!.volume_id }));

    const byId = await list({ snapshot_id: mine[2]!.snapshot_id });
    assert.deepEqual(
      byId.entries.map((e) => e.snapshot!.snapshot_id),
      [mine[2]!.snapshot_id],
    );
    assert.equal((await list({ snapshot_id: 'local/archive/000000000000000000000000' })).entries.length, 0);
    assert.equal((await list({ snapshot_id: 'not-ours' })).entries.length, 0);
    assert.equal(
      (await list({ snapshot_id: mine[2]!.snapshot_id, source_volume_id: sourceId })).entries.length,
      0,
      'both filters apply',
    );

    const bySource = await list({ source_volume_id: second!.volume_id });
    assert.deepEqual(
      bySource.entries.map((e) => e.snapshot!.snapshot_id).sort(),
      mine.map((s) => s.snapshot_id).sort(),
    );

    const seen: string[] = [];
    let token = '';
    do {
      const page = await list({ source_volume_id: second!.volume_id, max_entries: 2, starting_token: token });
      assert.ok(page.entries.length <= 2);
      if (page.next_token) {
        const again = await list({
          source_volume_id: second!.volume_id,
          max_entries: 2,
          starting_token: token,
        });
        assert.deepEqual(again, page, 'the same token gives the same page');
      }
      seen.push(...page.entries.map((e) => e.snapshot!.snapshot_id));
      token = page.next_token;
    } while (token);
    assert.deepEqual([...seen].sort(), mine.map((s) => s.snapshot_id).sort(), 'every snapshot exactly once');

    await rejectsWith(list({ starting_token: 'v1:garbage' }), status.ABORTED);
    await rejectsWith(list({ max_entries: -1 }), status.INVALID_ARGUMENT);
  });

  it('refuses a restore smaller than the snapshot with OUT_OF_RANGE, and a missing snapshot with NOT_FOUND, leaving nothing', async () => {
    const snap = await snapshot('for-small');
    const before = await backendState(root);
    await rejectsWith(restore('too-small', snap.snapshot_id, 8 * MiB), status.OUT_OF_RANGE);
    await rejectsWith(restore('from-nothing', 'local/archive/0123456789abcdef01234567'), status.NOT_FOUND);
    await rejectsWith(restore('from-garbage', 'garbage'), status.NOT_FOUND);
    assert.deepEqual(await backendState(root), before);
    const bigger = await restore('larger', snap.snapshot_id, 128 * MiB);
    assert.equal(bigger.capacity_bytes, String(128 * MiB));
  });

  it('never touches the source when a snapshot is deleted; deleting again or an unknown id is OK', async () => {
    const snap = await snapshot('to-delete');
    const token = snap.snapshot_id.split('/')[2]!;
    await rpc(driver.controller, 'DeleteSnapshot', { snapshot_id: snap.snapshot_id });
    assert.deepEqual(await describeTree(join(root, 'snap-source')), sourceTree);
    assert.ok(!(await readdir(join(snapshotsDir(), 'data'))).some((f) => f.startsWith(token)));
    assert.equal((await list({ snapshot_id: snap.snapshot_id })).entries.length, 0);
    await rpc(driver.controller, 'DeleteSnapshot', { snapshot_id: snap.snapshot_id });
    await rpc(driver.controller, 'DeleteSnapshot', { snapshot_id: 'someone-elses-snapshot' });
    // The name is free again.
    const fresh = await snapshot('to-delete');
    assert.notEqual(fresh.snapshot_id, snap.snapshot_id);
  });

  it('keeps snapshots usable after their source volume is deleted', async () => {
    const { volume } = await rpc(driver.controller, 'CreateVolume', {
      name: 'short-lived',
      capacity_range: { required_bytes: MiB },
      volume_capabilities: [mountCapability()],
    });
    await writeFile(join(root, 'short-lived', 'keep-me'), 'precious');
    const snap = await snapshot('outlives-source', {}, { source_volume_id: volume!.volume_id });
    await rpc(driver.controller, 'DeleteVolume', { volume_id: volume!.volume_id });
    assert.equal((await list({ snapshot_id: snap.snapshot_id })).entries[0]!.snapshot!.ready_to_use, true);
    await restore('from-deleted-source', snap.snapshot_id);
    assert.equal(await readFile(join(root, 'from-deleted-source', 'keep-me'), 'utf8'), 'precious');
  });

  it('detects a corrupted archive at restore by its checksum: the restore fails and leaves nothing behind', async () => {
    const { volume } = await rpc(driver.controller, 'CreateVolume', {
      name: 'to-corrupt-source',
      capacity_range: { required_bytes: MiB },
      volume_capabilities: [mountCapability()],
    });
    const marker = 'THE-DATA-THAT-WILL-BE-DAMAGED';
    await writeFile(join(root, 'to-corrupt-source', 'data'), marker.repeat(100));
    const snap = await snapshot(
      'to-corrupt',
      { compression: 'none' },
      { source_volume_id: volume!.volume_id },
    );
    const archive = join(snapshotsDir(), 'data', `${snap.snapshot_id.split('/')[2]}.tar`);
    // One changed byte inside a file's data: tar itself cannot notice, only the checksum can.
    const bytes = await readFile(archive);
    const at = bytes.indexOf(marker) + 5;
    assert.ok(at > 5);
    bytes[at] = bytes[at]! ^ 0x20;
    await writeFile(archive, bytes);
    const before = await backendState(root);
    await rejectsWith(restore('from-corrupt', snap.snapshot_id), status.INTERNAL, /archive is corrupt/);
    assert.deepEqual(await backendState(root), before);
  });

  for (const [compression, suffix, trailerBytes, complaint] of [
    ['zstd', '.tar.zst', 4, /zstd failed: .*(checksum|corrupt)/],
    ['gzip', '.tar.gz', 8, /(gzip|tar) failed: /],
  ] as const) {
    it(`records a ${compression} archive's own checksum; a damaged, swapped or cut archive restores nothing`, async () => {
      const snap = await snapshot(`to-damage-${compression}`, { compression });
      const token = snap.snapshot_id.split('/')[2]!;
      const archive = join(snapshotsDir(), 'data', `${token}${suffix}`);
      const intact = await readFile(archive);
      const record = JSON.parse(await readFile(join(snapshotsDir(), 'records', `${token}.json`), 'utf8')) as {
        archive: { formatChecksum?: string; sha256?: string };
      };
      assert.equal(record.archive.formatChecksum, intact.subarray(-trailerBytes).toString('hex'));
      assert.equal(record.archive.sha256, undefined, 'a compressed archive is not read back to be hashed');
      const before = await backendState(root);

      // One flipped bit inside the data: the decompressor finds that the content no longer matches.
      const damaged = Buffer.from(intact);
      const at = Math.floor(damaged.length / 2);
      damaged[at] = damaged[at]! ^ 0x01;
      await writeFile(archive, damaged);
      await rejectsWith(restore(`from-damaged-${compression}`, snap.snapshot_id), status.INTERNAL, complaint);
      assert.deepEqual(await backendState(root), before);

      // Another checksum at the end (another archive of the same size): refused before extracting.
      const swapped = Buffer.from(intact);
      swapped[swapped.length - 1] = swapped[swapped.length - 1]! ^ 0x01;
      await writeFile(archive, swapped);
      await rejectsWith(
        restore(`from-swapped-${compression}`, snap.snapshot_id),
        status.INTERNAL,
        new RegExp(
          `archive is corrupt: its ${compression} checksum is [0-9a-f]+, ${record.archive.formatChecksum}`,
        ),
      );
      assert.deepEqual(await backendState(root), before);

      await writeFile(archive, intact.subarray(0, at));
      await rejectsWith(
        restore(`from-cut-${compression}`, snap.snapshot_id),
        status.INTERNAL,
        /archive is corrupt: it is \d+ bytes on the backend/,
      );
      assert.deepEqual(await backendState(root), before);

      await writeFile(archive, intact);
      await restore(`from-repaired-${compression}`, snap.snapshot_id);
      assert.deepEqual(await describeTree(join(root, `from-repaired-${compression}`)), sourceTree);
    });
  }

  it('still checks the sha256 that records of compressed archives written by earlier versions hold', async () => {
    const snap = await snapshot('recorded-with-sha256');
    const token = snap.snapshot_id.split('/')[2]!;
    const recordFile = join(snapshotsDir(), 'records', `${token}.json`);
    const record = JSON.parse(await readFile(recordFile, 'utf8')) as { archive: Record<string, unknown> };
    const sha256 = createHash('sha256')
      .update(await readFile(join(snapshotsDir(), 'data', `${token}.tar.zst`)))
      .digest('hex');
    // Earlier versions recorded the sha256 of every archive, and no format checksum.
    const older = (hash: string) =>
      JSON.stringify({ ...record, archive: { ...record.archive, formatChecksum: undefined, sha256: hash } });
    const before = await backendState(root);
    await writeFile(recordFile, older('0'.repeat(64)));
    await rejectsWith(
      restore('from-wrong-sha256', snap.snapshot_id),
      status.INTERNAL,
      /archive is corrupt: read \d+ bytes with sha256/,
    );
    assert.deepEqual(await backendState(root), before);
    await writeFile(recordFile, older(sha256));
    await restore('from-right-sha256', snap.snapshot_id);
    assert.deepEqual(await describeTree(join(root, 'from-right-sha256')), sourceTree);
  });

  it('restores compressed archives written with the default 10 KiB tar records by earlier versions', async () => {
    const snap = await snapshot('default-records');
    const token = snap.snapshot_id.split('/')[2]!;
    const recordFile = join(snapshotsDir(), 'records', `${token}.json`);
    const record = JSON.parse(await readFile(recordFile, 'utf8')) as { archive: Record<string, unknown> };
    const archive = join(snapshotsDir(), 'data', `${token}.tar.zst`);
    await execa('bash', [
      '-o',
      'pipefail',
      '-c',
      `tar --create --file=- --directory="$1" --format=posix . | zstd -q --check -c > "$2"`,
      'bash',
      join(root, 'snap-source'),
      archive,
    ]);
    const bytes = await readFile(archive);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const archived = { ...record.archive, bytes: bytes.length, formatChecksum: undefined, sha256 };
    await writeFile(recordFile, JSON.stringify({ ...record, archive: archived }));
    await restore('from-default-records', snap.snapshot_id);
    assert.deepEqual(await describeTree(join(root, 'from-default-records')), sourceTree);
  });

  it('reports ready_to_use false while the archive is written, and true once complete', async () => {
    await gate.hold('tar');
    const request = { name: 'slow', source_volume_id: sourceId, parameters: {} };
    const first = await callWithDeadline(driver.controller, 'CreateSnapshot', request, 1500);
    assert.equal(first.snapshot!.ready_to_use, false);
    assert.match(first.snapshot!.snapshot_id, /^local\/archive\//);
    await gate.waiting('tar');
    const listed = await list({ snapshot_id: first.snapshot!.snapshot_id });
    assert.equal(listed.entries[0]!.snapshot!.ready_to_use, false);
    const token = first.snapshot!.snapshot_id.split('/')[2]!;
    assert.ok(
      !(await readdir(join(snapshotsDir(), 'data'))).some((f) => f.startsWith(token)),
      'no archive yet',
    );
    await rejectsWith(
      restore('from-unready', first.snapshot!.snapshot_id),
      status.UNAVAILABLE,
      /still being written/,
    );
    await gate.release('tar');
    const done = await callWithDeadline(driver.controller, 'CreateSnapshot', request, 30_000);
    assert.equal(done.snapshot!.snapshot_id, first.snapshot!.snapshot_id);
    assert.equal(done.snapshot!.ready_to_use, true);
    await restore('from-slow', done.snapshot!.snapshot_id);
    assert.deepEqual(await describeTree(join(root, 'from-slow')), sourceTree);
  });

  it('answers ABORTED to a restore that runs past its deadline, until it is done', async () => {
    const snap = await snapshot('for-slow-restore');
    await gate.hold('tar');
    const request = {
      name: 'slow-restore',
      volume_capabilities: [mountCapability()],
      volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } },
    };
    await rejectsWith(callWithDeadline(driver.controller, 'CreateVolume', request, 1500), status.ABORTED);
    await gate.waiting('tar');
    await rejectsWith(callWithDeadline(driver.controller, 'CreateVolume', request, 1000), status.ABORTED);
    assert.ok(!(await readdir(root)).includes('slow-restore'), 'nothing under the path until it is complete');
    await gate.release('tar');
    const done = await callWithDeadline(driver.controller, 'CreateVolume', request, 30_000);
    assert.equal(done.volume!.volume_id, 'local/slow-restore');
    assert.deepEqual(await describeTree(join(root, 'slow-restore')), sourceTree);
  });

  it('keeps every snapshot, with its metadata, across a driver restart', async () => {
    const before = await list({});
    await driver.stop();
    driver = await start();
    const after = await list({});
    assert.deepEqual(after.entries, before.entries);
    assert.ok(after.entries.length >= 10);
  });
});
