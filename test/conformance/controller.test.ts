import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { rpc } from '../../src/cli/csi-client.js';
import type { CreateVolumeRequest } from '../../src/generated/csi/v1/CreateVolumeRequest.js';
import { rejectsWith } from '../helpers/csi.js';
import { ACCESS_MODES, MiB, blockCap, callByName, codeOf, describeEachFixture, mountCap } from './harness.js';

/** The controller RPCs each capability obliges the plugin to implement. */
const RPCS_BY_CAPABILITY: Record<string, string[]> = {
  CREATE_DELETE_VOLUME: ['CreateVolume', 'DeleteVolume'],
  PUBLISH_UNPUBLISH_VOLUME: ['ControllerPublishVolume', 'ControllerUnpublishVolume'],
  LIST_VOLUMES: ['ListVolumes'],
  GET_CAPACITY: ['GetCapacity'],
  CREATE_DELETE_SNAPSHOT: ['CreateSnapshot', 'DeleteSnapshot'],
  LIST_SNAPSHOTS: ['ListSnapshots'],
  GET_SNAPSHOT: ['GetSnapshot'],
  EXPAND_VOLUME: ['ControllerExpandVolume'],
  GET_VOLUME: ['ControllerGetVolume'],
  MODIFY_VOLUME: ['ControllerModifyVolume'],
};
/** Every controller plugin must implement these, whatever it advertises. */
const ALWAYS_IMPLEMENTED = ['ControllerGetCapabilities', 'ValidateVolumeCapabilities'];

/** What this driver promises: shared file volumes with clones, snapshots and online expansion; no attach. */
const ADVERTISED = [
  'CREATE_DELETE_VOLUME',
  'LIST_VOLUMES',
  'GET_CAPACITY',
  'GET_VOLUME',
  'VOLUME_CONDITION',
  'SINGLE_NODE_MULTI_WRITER',
  'CLONE_VOLUME',
  'EXPAND_VOLUME',
  'CREATE_DELETE_SNAPSHOT',
  'LIST_SNAPSHOTS',
];

const codeName = (code: status) => status[code];
const sorted = (values: string[]) => [...values].sort();

describe('conformance: Controller service', function () {
  describeEachFixture((session) => {
    const controller = () => session.driver.controller;

    /** CreateVolume with the fixture's parameters; a volume it happens to create is cleaned up in after(). */
    async function create(request: CreateVolumeRequest) {
      const response = await rpc(controller(), 'CreateVolume', {
        volume_capabilities: [mountCap()],
        ...request,
        parameters: session.parameters(request.parameters),
      });
      session.track(response.volume!.volume_id);
      return response.volume!;
    }

    /** Proves a failing call left nothing behind: no new entry under the backend root and no new volume record. */
    async function failsCleanly(call: () => Promise<unknown>, code: status, message?: RegExp) {
      const rootBefore = sorted(await session.backend.listRoot());
      const idsBefore = sorted(await session.listVolumeIds());
      // Leftovers are checked even when the code is wrong: they are the worse failure.
      const wrong = await rejectsWith(call(), code, message).then(
        () => undefined,
        (err: Error) => err,
      );
      const also = wrong ? ` (besides: ${wrong.message})` : '';
      assert.deepEqual(
        sorted(await session.backend.listRoot()),
        rootBefore,
        `the call changed the backend root${also}`,
      );
      assert.deepEqual(
        sorted(await session.listVolumeIds()),
        idsBefore,
        `the call changed the volume list${also}`,
      );
      if (wrong) throw wrong;
    }

    describe('ControllerGetCapabilities', () => {
      async function advertised(): Promise<string[]> {
        const { capabilities } = await rpc(controller(), 'ControllerGetCapabilities', {});
        return capabilities.map((c) => c.rpc!.type);
      }

      it('advertises exactly the supported set, without UNKNOWN or duplicates', async () => {
        const types = await advertised();
        assert.deepEqual(sorted(types), sorted(ADVERTISED));
        assert.equal(new Set(types).size, types.length, 'duplicate capabilities');
      });

      it('implements every RPC that an advertised capability requires', async () => {
        const types = await advertised();
        const methods = [...ALWAYS_IMPLEMENTED, ...types.flatMap((t) => RPCS_BY_CAPABILITY[t] ?? [])];
        for (const method of methods) {
          const code = await codeOf(callByName(controller(), method, {}));
          assert.notEqual(codeName(code), 'UNIMPLEMENTED', `${method} is advertised but not implemented`);
        }
      });

      it('answers UNIMPLEMENTED for every RPC of a capability it does not advertise', async () => {
        const types = new Set(await advertised());
        const missing = Object.entries(RPCS_BY_CAPABILITY).filter(([cap]) => !types.has(cap));
        const methods = missing.flatMap(([, rpcs]) => rpcs);
        for (const expected of ['ControllerPublishVolume', 'ControllerModifyVolume']) {
          assert.ok(methods.includes(expected), `${expected} should not be advertised`);
        }
        const volume = await session.createVolume('unimplemented');
        for (const method of methods) {
          // A well-formed request, so that only the missing implementation can explain the answer.
          const request = {
            volume_id: volume.volume_id,
            source_volume_id: volume.volume_id,
            name: 'x',
            node_id: 'test-node',
          };
          assert.equal(
            codeName(await codeOf(callByName(controller(), method, request))),
            'UNIMPLEMENTED',
            method,
          );
        }
      });
    });

    describe('CreateVolume', () => {
      it('refuses a missing name with INVALID_ARGUMENT and leaves nothing behind', async () => {
        await failsCleanly(() => create({ name: '' }), status.INVALID_ARGUMENT, /name/);
      });

      it('refuses missing volume_capabilities with INVALID_ARGUMENT and leaves nothing behind', async () => {
        const name = session.volumeName('nocaps');
        await failsCleanly(
          () => create({ name, volume_capabilities: [] }),
          status.INVALID_ARGUMENT,
          /volume_capabilities/,
        );
      });

      it('refuses block access, alone or next to a mount capability, with INVALID_ARGUMENT', async () => {
        await failsCleanly(
          () => create({ name: session.volumeName('block'), volume_capabilities: [blockCap()] }),
          status.INVALID_ARGUMENT,
        );
        await failsCleanly(
          () => create({ name: session.volumeName('mixed'), volume_capabilities: [mountCap(), blockCap()] }),
          status.INVALID_ARGUMENT,
        );
      });

      it('clones a volume given as content source, and answers NOT_FOUND for a missing one, leaving nothing', async () => {
        const source = await session.createVolume('clone-source');
        const clone = await create({
          name: session.volumeName('clone'),
          volume_content_source: { volume: { volume_id: source.volume_id } },
        });
        assert.notEqual(clone.volume_id, source.volume_id);
        assert.equal(clone.content_source?.volume?.volume_id, source.volume_id);
        await failsCleanly(
          () =>
            create({
              name: session.volumeName('clone-missing'),
              volume_content_source: { volume: { volume_id: `${source.volume_id}-missing` } },
            }),
          status.NOT_FOUND,
        );
      });

      it('accepts every access mode, one at a time and all at once', async () => {
        for (const mode of ACCESS_MODES) {
          const volume = await create({
            name: session.volumeName(`mode-${mode.toLowerCase().replace(/_/g, '-')}`),
            volume_capabilities: [mountCap(mode)],
          });
          assert.ok(volume.volume_id, `no volume_id for ${mode}`);
        }
        const all = await create({
          name: session.volumeName('all-modes'),
          volume_capabilities: ACCESS_MODES.map((m) => mountCap(m)),
        });
        assert.ok(all.volume_id);
      });

      it('is idempotent by name: the same request returns the same volume and provisions once', async () => {
        const rootBefore = await session.backend.listRoot();
        const request = { name: session.volumeName('idem'), capacity_range: { required_bytes: 10 * MiB } };
        const first = await create(request);
        const second = await create(request);
        assert.equal(second.volume_id, first.volume_id);
        assert.equal(second.capacity_bytes, first.capacity_bytes);
        assert.deepEqual(second.volume_context, first.volume_context);
        // A smaller request that the existing volume still satisfies is compatible too.
        const third = await create({ ...request, capacity_range: { required_bytes: 5 * MiB } });
        assert.equal(third.volume_id, first.volume_id);
        assert.equal(
          (await session.backend.listRoot()).length,
          rootBefore.length + 1,
          'more than one directory provisioned',
        );
        assert.equal((await session.listVolumeIds()).filter((id) => id === first.volume_id).length, 1);
      });

      it('answers ALREADY_EXISTS for the same name with an incompatible capacity, and changes nothing', async () => {
        const name = session.volumeName('cap-conflict');
        await create({ name, capacity_range: { required_bytes: 10 * MiB } });
        await failsCleanly(
          () => create({ name, capacity_range: { required_bytes: 20 * MiB } }),
          status.ALREADY_EXISTS,
        );
        await failsCleanly(
          () => create({ name, capacity_range: { required_bytes: 0, limit_bytes: 5 * MiB } }),
          status.ALREADY_EXISTS,
        );
      });

      it('answers ALREADY_EXISTS for the same name with different parameters, and changes nothing', async () => {
        const name = session.volumeName('param-conflict');
        const volume = await create({ name });
        const other = session.parameters().onDelete === 'retain' ? 'delete' : 'retain';
        await failsCleanly(() => create({ name, parameters: { onDelete: other } }), status.ALREADY_EXISTS);
        const again = await create({ name });
        assert.equal(again.volume_id, volume.volume_id, 'the original volume must be unchanged');
      });

      it('answers OUT_OF_RANGE when required_bytes exceeds limit_bytes, and leaves nothing behind', async () => {
        const name = session.volumeName('range');
        await failsCleanly(
          () => create({ name, capacity_range: { required_bytes: 20 * MiB, limit_bytes: 10 * MiB } }),
          status.OUT_OF_RANGE,
        );
      });

      it('returns a capacity inside the requested range', async () => {
        const ranges = [
          { required_bytes: 5 * MiB, limit_bytes: 50 * MiB },
          { required_bytes: 8 * MiB, limit_bytes: 8 * MiB },
          { required_bytes: 3 * MiB, limit_bytes: 0 },
          { required_bytes: 0, limit_bytes: 16 * MiB },
        ];
        for (const range of ranges) {
          const volume = await create({ name: session.volumeName('within'), capacity_range: range });
          const capacity = Number(volume.capacity_bytes);
          assert.ok(capacity >= range.required_bytes, `${capacity} < required ${range.required_bytes}`);
          if (range.limit_bytes > 0)
            assert.ok(capacity <= range.limit_bytes, `${capacity} > limit ${range.limit_bytes}`);
        }
      });

      it('refuses an unknown parameter key with INVALID_ARGUMENT naming the key', async () => {
        const name = session.volumeName('badkey');
        await failsCleanly(
          () => create({ name, parameters: { noSuchOption: 'yes' } }),
          status.INVALID_ARGUMENT,
          /noSuchOption/,
        );
      });

      it('refuses a bad parameter value (onDelete=bogus) with INVALID_ARGUMENT naming onDelete', async () => {
        const name = session.volumeName('badvalue');
        await failsCleanly(
          () => create({ name, parameters: { onDelete: 'bogus' } }),
          status.INVALID_ARGUMENT,
          /onDelete/,
        );
      });

      it('refuses a subDir that leaves the backend root with INVALID_ARGUMENT', async () => {
        const name = session.volumeName('escape');
        await failsCleanly(
          () => create({ name, parameters: { subDir: `../${name}` } }),
          status.INVALID_ARGUMENT,
          /subDir/,
        );
        await failsCleanly(
          () => create({ name, parameters: { subDir: `/tmp/${name}` } }),
          status.INVALID_ARGUMENT,
          /subDir/,
        );
      });
    });

    describe('DeleteVolume', () => {
      it('refuses a missing volume_id with INVALID_ARGUMENT', async () => {
        await rejectsWith(rpc(controller(), 'DeleteVolume', { volume_id: '' }), status.INVALID_ARGUMENT);
      });

      it('answers OK for a well-formed id that names no volume', async () => {
        await rpc(controller(), 'DeleteVolume', { volume_id: await session.unknownVolumeId() });
        await rpc(controller(), 'DeleteVolume', { volume_id: `not-ours-${randomBytes(4).toString('hex')}` });
      });

      it('removes the volume, and answers OK again when repeated', async () => {
        const rootBefore = sorted(await session.backend.listRoot());
        const volume = await session.createVolume('delete-twice');
        assert.equal((await session.backend.listRoot()).length, rootBefore.length + 1);
        await rpc(controller(), 'DeleteVolume', { volume_id: volume.volume_id });
        await rpc(controller(), 'DeleteVolume', { volume_id: volume.volume_id });
        assert.deepEqual(sorted(await session.backend.listRoot()), rootBefore);
        assert.ok(!(await session.listVolumeIds()).includes(volume.volume_id));
        await rejectsWith(
          rpc(controller(), 'ControllerGetVolume', { volume_id: volume.volume_id }),
          status.NOT_FOUND,
        );
      });

      describe('with ids that try to leave the backend root', () => {
        let outside: string;
        let sibling: string | undefined;

        async function plant(dir: string) {
          await mkdir(dir, { recursive: true });
          await writeFile(join(dir, 'keep.txt'), 'sentinel');
        }

        before(async function () {
          outside = join(session.scratch, 'sentinel');
          await plant(outside);
          const root = session.localRoot();
          if (root) {
            sibling = join(dirname(root), `${basename(root)}-sentinel`);
            await plant(sibling);
          }
        });

        after(async () => {
          if (sibling) await rm(sibling, { recursive: true, force: true });
        });

        async function hostileIds(): Promise<string[]> {
          const instance = await session.instance();
          const absolute = outside.slice(1);
          const ids = [
            `${instance}/../${basename(outside)}`,
            `${instance}/a/../../${basename(outside)}`,
            `${instance}/${'../'.repeat(12)}${absolute}`,
            `${instance}//${absolute}`,
            `${instance}/./${basename(outside)}`,
            outside,
            `/${instance}/x`,
            `${instance}/sentinel\0/../..`,
            `${instance}/vol\0`,
            `${instance}/${'a'.repeat(129)}`,
            `${instance}/${'é'.repeat(64)}`,
          ];
          if (sibling) ids.push(`${instance}/../${basename(sibling)}`);
          return ids;
        }

        it('answers INVALID_ARGUMENT for .., absolute, NUL and overlong ids and touches nothing outside', async () => {
          const outsideParent = sorted(await readdir(dirname(outside)));
          for (const id of await hostileIds()) {
            await rejectsWith(rpc(controller(), 'DeleteVolume', { volume_id: id }), status.INVALID_ARGUMENT);
            await rejectsWith(
              rpc(controller(), 'ControllerGetVolume', { volume_id: id }),
              status.INVALID_ARGUMENT,
            );
          }
          for (const dir of [outside, sibling].filter((d): d is string => d !== undefined)) {
            assert.equal(await readFile(join(dir, 'keep.txt'), 'utf8'), 'sentinel', `${dir} was touched`);
          }
          assert.deepEqual(sorted(await readdir(dirname(outside))), outsideParent);
        });
      });
    });

    describe('ValidateVolumeCapabilities', () => {
      it('refuses a missing volume_id or missing capabilities with INVALID_ARGUMENT', async () => {
        const volume = await session.createVolume('validate-args');
        await rejectsWith(
          rpc(controller(), 'ValidateVolumeCapabilities', {
            volume_id: '',
            volume_capabilities: [mountCap()],
          }),
          status.INVALID_ARGUMENT,
        );
        await rejectsWith(
          rpc(controller(), 'ValidateVolumeCapabilities', {
            volume_id: volume.volume_id,
            volume_capabilities: [],
          }),
          status.INVALID_ARGUMENT,
        );
      });

      it('answers NOT_FOUND for a volume that does not exist', async () => {
        for (const volume_id of [await session.unknownVolumeId(), 'not-ours']) {
          await rejectsWith(
            rpc(controller(), 'ValidateVolumeCapabilities', { volume_id, volume_capabilities: [mountCap()] }),
            status.NOT_FOUND,
          );
        }
      });

      it('confirms supported mount capabilities in every access mode', async () => {
        const volume = await session.createVolume('validate-ok');
        const caps = ACCESS_MODES.map((m) => mountCap(m));
        const result = await rpc(controller(), 'ValidateVolumeCapabilities', {
          volume_id: volume.volume_id,
          volume_context: volume.volume_context,
          volume_capabilities: caps,
          parameters: session.parameters(),
        });
        assert.ok(result.confirmed, `not confirmed: ${result.message}`);
        assert.deepEqual(
          result.confirmed.volume_capabilities.map((c) => c.access_mode?.mode),
          caps.map((c) => c.access_mode?.mode),
        );
      });

      it('does not confirm block access, and says why', async () => {
        const volume = await session.createVolume('validate-block');
        for (const caps of [[blockCap()], [mountCap(), blockCap('MULTI_NODE_MULTI_WRITER')]]) {
          const result = await rpc(controller(), 'ValidateVolumeCapabilities', {
            volume_id: volume.volume_id,
            volume_capabilities: caps,
          });
          assert.equal(result.confirmed, null);
          assert.ok(result.message.length > 0, 'an unconfirmed answer needs a message');
        }
      });
    });

    describe('ListVolumes', () => {
      const created: string[] = [];

      before(async () => {
        for (let i = 0; i < 5; i++) created.push((await session.createVolume('list')).volume_id);
      });

      it('pages with max_entries=2 through next_token, listing every volume exactly once', async () => {
        const seen: string[] = [];
        let token = '';
        let pages = 0;
        do {
          const page = await rpc(controller(), 'ListVolumes', { max_entries: 2, starting_token: token });
          assert.ok(page.entries.length <= 2, `page of ${page.entries.length} entries`);
          seen.push(...page.entries.map((e) => e.volume!.volume_id));
          token = page.next_token;
          assert.ok(++pages < 1000, 'next_token never ends');
        } while (token);
        assert.ok(pages >= 3, `5 volumes in pages of 2 need at least 3 pages, got ${pages}`);
        assert.equal(new Set(seen).size, seen.length, `duplicates: ${seen.join(', ')}`);
        for (const id of created)
          assert.equal(seen.filter((s) => s === id).length, 1, `${id} not listed exactly once`);
      });

      it('lists everything in one page without max_entries', async () => {
        const page = await rpc(controller(), 'ListVolumes', { max_entries: 0 });
        assert.equal(page.next_token, '');
        const ids = page.entries.map((e) => e.volume!.volume_id);
        for (const id of created) assert.ok(ids.includes(id), `${id} missing`);
      });

      it('reports a volume condition per entry, as VOLUME_CONDITION is advertised', async () => {
        const page = await rpc(controller(), 'ListVolumes', {});
        for (const entry of page.entries.filter((e) => created.includes(e.volume!.volume_id))) {
          const condition = entry.status?.volume_condition;
          assert.ok(condition, `no volume_condition for ${entry.volume!.volume_id}`);
          assert.equal(condition.abnormal, false, condition.message);
        }
      });

      it('refuses a negative max_entries with INVALID_ARGUMENT', async () => {
        await rejectsWith(rpc(controller(), 'ListVolumes', { max_entries: -1 }), status.INVALID_ARGUMENT);
      });

      it('answers ABORTED for a starting_token it did not issue', async () => {
        const forged = [
          'not-a-token',
          '../../etc/passwd',
          randomBytes(24).toString('base64url'),
          'v1:',
          'v1:!!!',
        ];
        for (const starting_token of forged) {
          await rejectsWith(
            rpc(controller(), 'ListVolumes', { max_entries: 2, starting_token }),
            status.ABORTED,
          );
        }
      });

      it('returns the same page for the same token', async () => {
        const first = await rpc(controller(), 'ListVolumes', { max_entries: 2 });
        assert.ok(first.next_token, 'expected more than one page');
        const a = await rpc(controller(), 'ListVolumes', {
          max_entries: 2,
          starting_token: first.next_token,
        });
        const b = await rpc(controller(), 'ListVolumes', {
          max_entries: 2,
          starting_token: first.next_token,
        });
        assert.deepEqual(
          b.entries.map((e) => e.volume!.volume_id),
          a.entries.map((e) => e.volume!.volume_id),
        );
        assert.equal(b.next_token, a.next_token);
      });
    });

    describe('GetCapacity', () => {
      it('reports a positive available_capacity no larger than the backing filesystem', async () => {
        const { available_capacity } = await rpc(controller(), 'GetCapacity', {
          volume_capabilities: [mountCap()],
          parameters: session.parameters(),
        });
        const available = Number(available_capacity);
        assert.ok(
          Number.isSafeInteger(available) && available > 0,
          `available_capacity ${available_capacity}`,
        );
        const root = session.localRoot();
        if (root) {
          const fs = await statfs(root);
          assert.ok(
            available <= fs.blocks * fs.bsize,
            `${available} exceeds the filesystem size ${fs.blocks * fs.bsize}`,
          );
        }
      });

      it('reports no capacity for block access, which it cannot provision', async () => {
        const { available_capacity } = await rpc(controller(), 'GetCapacity', {
          volume_capabilities: [blockCap()],
          parameters: session.parameters(),
        });
        assert.equal(Number(available_capacity), 0);
      });

      it('refuses unknown parameters with INVALID_ARGUMENT naming the key', async () => {
        await rejectsWith(
          rpc(controller(), 'GetCapacity', { parameters: session.parameters({ noSuchOption: '1' }) }),
          status.INVALID_ARGUMENT,
          /noSuchOption/,
        );
      });
    });

    describe('ControllerGetVolume', () => {
      it('returns an existing volume with a normal condition', async () => {
        const volume = await session.createVolume('get', { capacity_range: { required_bytes: 4 * MiB } });
        const got = await rpc(controller(), 'ControllerGetVolume', { volume_id: volume.volume_id });
        assert.equal(got.volume?.volume_id, volume.volume_id);
        assert.equal(got.volume?.capacity_bytes, volume.capacity_bytes);
        assert.deepEqual(got.volume?.volume_context, volume.volume_context);
        const condition = got.status?.volume_condition;
        assert.ok(condition, 'VOLUME_CONDITION is advertised, so volume_condition is required');
        assert.equal(condition.abnormal, false, condition.message);
        assert.ok(condition.message.length > 0);
      });

      it('reports an abnormal condition once the backing directory is gone (local only)', async function () {
        const root = session.localRoot();
        const instance = await session.instance();
        if (!root || instance !== 'local') this.skip();
        const volume = await session.createVolume('vanish');
        await rm(join(root, volume.volume_id.slice(instance.length + 1)), { recursive: true });
        const got = await rpc(controller(), 'ControllerGetVolume', { volume_id: volume.volume_id });
        assert.equal(got.status?.volume_condition?.abnormal, true);
        assert.ok(got.status!.volume_condition!.message.length > 0);
        await rpc(controller(), 'DeleteVolume', { volume_id: volume.volume_id });
        await rejectsWith(
          rpc(controller(), 'ControllerGetVolume', { volume_id: volume.volume_id }),
          status.NOT_FOUND,
        );
      });

      it('answers NOT_FOUND for an unknown volume and INVALID_ARGUMENT for a missing id', async () => {
        await rejectsWith(
          rpc(controller(), 'ControllerGetVolume', { volume_id: await session.unknownVolumeId() }),
          status.NOT_FOUND,
        );
        await rejectsWith(
          rpc(controller(), 'ControllerGetVolume', { volume_id: 'not-ours' }),
          status.NOT_FOUND,
        );
        await rejectsWith(
          rpc(controller(), 'ControllerGetVolume', { volume_id: '' }),
          status.INVALID_ARGUMENT,
        );
      });
    });

    describe('concurrency', () => {
      it('two concurrent DeleteVolume calls on one volume: each OK or ABORTED, at least one OK, volume gone', async () => {
        const rootBefore = sorted(await session.backend.listRoot());
        const volume = await session.createVolume('race-delete');
        const request = { volume_id: volume.volume_id };
        const codes = await Promise.all([1, 2].map(() => codeOf(rpc(controller(), 'DeleteVolume', request))));
        for (const code of codes)
          assert.ok(code === status.OK || code === status.ABORTED, `unexpected ${codeName(code)}`);
        assert.ok(codes.includes(status.OK), 'neither delete succeeded');
        await rejectsWith(rpc(controller(), 'ControllerGetVolume', request), status.NOT_FOUND);
        assert.deepEqual(sorted(await session.backend.listRoot()), rootBefore);
      });

      it('concurrent CreateVolume calls with one name provision one volume', async () => {
        const rootBefore = await session.backend.listRoot();
        const name = session.volumeName('race-create');
        const calls = [1, 2, 3, 4].map(() =>
          create({ name }).then(
            (volume) => ({ code: status.OK, id: volume.volume_id }),
            (err: { code: status }) => ({ code: err.code, id: '' }),
          ),
        );
        const results = await Promise.all(calls);
        for (const r of results)
          assert.ok(r.code === status.OK || r.code === status.ABORTED, `unexpected ${codeName(r.code)}`);
        const ids = new Set(results.filter((r) => r.code === status.OK).map((r) => r.id));
        assert.equal(ids.size, 1, `expected one volume id, got ${[...ids].join(', ')}`);
        assert.equal((await session.backend.listRoot()).length, rootBefore.length + 1);
      });

      it('20 concurrent creates and deletes of different volumes all succeed', async () => {
        const names = Array.from({ length: 20 }, () => session.volumeName('parallel'));
        const volumes = await Promise.all(names.map((name) => create({ name })));
        assert.equal(new Set(volumes.map((v) => v.volume_id)).size, 20);
        const listed = await session.listVolumeIds();
        for (const v of volumes) assert.ok(listed.includes(v.volume_id), `${v.volume_id} not listed`);
        const codes = await Promise.all(
          volumes.map((v) => codeOf(rpc(controller(), 'DeleteVolume', { volume_id: v.volume_id }))),
        );
        assert.deepEqual(
          codes.map(codeName),
          volumes.map(() => 'OK'),
        );
        const after = await session.listVolumeIds();
        for (const v of volumes) assert.ok(!after.includes(v.volume_id), `${v.volume_id} still listed`);
      });
    });
  });
});
