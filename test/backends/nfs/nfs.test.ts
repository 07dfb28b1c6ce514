import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { PVC_NAME, PVC_NAMESPACE } from '../../../src/backends/params.js';
import { rpc } from '../../../src/cli/csi-client.js';
import type { Volume__Output } from '../../../src/generated/csi/v1/Volume.js';
import {
  nfsFixture,
  nfsInstance,
  writeBackendsFile,
  type NfsInstance,
  type StartedNfsBackend,
} from '../../conformance/nfs-fixture.js';
import { mountCapability, rejectsWith } from '../../helpers/csi.js';
import { startDriver, type RunningDriver } from '../../helpers/driver.js';
import { skipUnlessGanesha, type Ganesha } from '../../helpers/ganesha.js';
import { mountsUnder, unmountUnder } from '../../helpers/mount-cleanup.js';
import { mountShimEnv, readMountLog, readNfsMounts } from '../../helpers/nfs-mount-shim.js';

/** A driver on its own temp dir: the socket, --state-dir, the shim's log and the pods' mount points. */
interface NfsDriver {
  driver: RunningDriver;
  dir: string;
  mountLog: string;
  stop(): Promise<void>;
}

async function startNfsDriver(
  args: string[],
  env: Record<string, string>,
  mountLog: string,
  dir: string,
): Promise<NfsDriver> {
  const stop = async () => {
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const driver = await startDriver({ args, env, dir });
    return {
      driver,
      dir,
      mountLog,
      stop: async () => {
        await driver.stop();
        await stop();
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function driverFor(server: Ganesha, instance: NfsInstance): Promise<NfsDriver> {
  const dir = await mkdtemp(join(tmpdir(), 'sv-nfs-test-'));
  const mountLog = join(dir, 'mount.log');
  const args = ['--backends', await writeBackendsFile(dir, [instance])];
  return startNfsDriver(args, await mountShimEnv(server, mountLog), mountLog, dir);
}

async function createVolume(
  d: NfsDriver,
  name: string,
  parameters: Record<string, string> = {},
): Promise<Volume__Output> {
  const res = await rpc(d.driver.controller, 'CreateVolume', {
    name,
    volume_capabilities: [mountCapability()],
    parameters,
  });
  return res.volume!;
}

async function deleteVolume(d: NfsDriver, volumeId: string): Promise<void> {
  await rpc(d.driver.controller, 'DeleteVolume', { volume_id: volumeId });
}

interface PodMount {
  staging: string;
  target: string;
}

function podPaths(d: NfsDriver, name: string): PodMount {
  return {
    staging: join(d.dir, 'pods', 'staging', name),
    target: join(d.dir, 'pods', 'target', name, 'mount'),
  };
}

/** NodeStageVolume then NodePublishVolume, as kubelet calls them for a pod using the volume. */
async function stageAndPublish(
  d: NfsDriver,
  volume: Volume__Output,
  mountFlags: string[] = [],
): Promise<PodMount> {
  const paths = podPaths(d, basename(volume.volume_id));
  const capability = mountCapability('MULTI_NODE_MULTI_WRITER', { mount_flags: mountFlags });
  const common = {
    volume_id: volume.volume_id,
    volume_capability: capability,
    volume_context: volume.volume_context,
  };
  await mkdir(paths.staging, { recursive: true });
  await rpc(d.driver.node, 'NodeStageVolume', { ...common, staging_target_path: paths.staging });
  await mkdir(dirname(paths.target), { recursive: true });
  await rpc(d.driver.node, 'NodePublishVolume', {
    ...common,
    staging_target_path: paths.staging,
    target_path: paths.target,
    readonly: false,
  });
  return paths;
}

async function unpublishAndUnstage(d: NfsDriver, volume: Volume__Output, paths: PodMount): Promise<void> {
  await rpc(d.driver.node, 'NodeUnpublishVolume', { volume_id: volume.volume_id, target_path: paths.target });
  await rpc(d.driver.node, 'NodeUnstageVolume', {
    volume_id: volume.volume_id,
    staging_target_path: paths.staging,
  });
}

async function namesOverNfs(server: Ganesha, path = '', version: 3 | 4 = 3): Promise<string[]> {
  return (await server.nfsLs(path, { version })).map((e) => e.name);
}

describe('NFS backend against a real nfs-ganesha', function () {
  const fixture = nfsFixture();
  let started: StartedNfsBackend;
  let server: Ganesha;

  before(async function () {
    await skipUnlessGanesha(this);
    started = await fixture.start();
    server = started.server;
  });

  after(async () => {
    await fixture.stop();
  });

  describe('NFSv3 node mounts, controller access: path', () => {
    let d: NfsDriver;

    before(async () => {
      const dir = await mkdtemp(join(tmpdir(), 'sv-nfs-test-'));
      d = await startNfsDriver(started.driverArgs, started.env ?? {}, started.mountLog, dir);
    });

    afterEach(async () => {
      if (d) await unmountUnder(join(d.dir, 'pods'));
    });

    after(async () => {
      await d?.stop();
    });

    it('CreateVolume makes a directory that NFSv3 and NFSv4 clients list', async () => {
      const volume = await createVolume(d, 'pvc-listed');
      assert.equal(volume.volume_id, 'nfs/pvc-listed');
      assert.ok(
        (await namesOverNfs(server, '', 3)).includes('pvc-listed'),
        'listed over NFSv3 (export path)',
      );
      assert.ok(
        (await namesOverNfs(server, '', 4)).includes('pvc-listed'),
        'listed over NFSv4 (pseudo path)',
      );
    });

    it('serves over NFS what a pod writes through the published target path', async () => {
      const volume = await createVolume(d, 'pvc-written');
      const paths = await stageAndPublish(d, volume);
      const content = `written by a pod\n${'0123456789abcdef'.repeat(640)}`;
      await writeFile(join(paths.target, 'hello.txt'), content);
      assert.equal(await server.nfsCat('pvc-written/hello.txt'), content);
      assert.equal(await server.nfsCat('pvc-written/hello.txt', { version: 4 }), content);
      await unpublishAndUnstage(d, volume, paths);
      assert.deepEqual(await mountsUnder(join(d.dir, 'pods')), []);
    });

    it('stages with the exact NFSv3 mount invocation, class mountOptions and CSI mount flags', async () => {
      const volume = await createVolume(d, 'pvc-argv3', { mountOptions: 'hard,timeo=600' });
      assert.deepEqual(volume.volume_context, { mountOptions: 'hard,timeo=600' });
      const before = (await readMountLog(d.mountLog)).length;
      const paths = await stageAndPublish(d, volume, ['nolock']);
      assert.deepEqual((await readMountLog(d.mountLog)).slice(before), [
        [
          '-t',
          'nfs',
          '-o',
          'nfsvers=3,hard,timeo=600,nolock',
          `127.0.0.1:${server.exportPath}/pvc-argv3`,
          paths.staging,
        ],
        ['--bind', paths.staging, paths.target],
      ]);
      await writeFile(join(paths.target, 'marker'), 'staged the right directory');
      assert.equal(await server.nfsCat('pvc-argv3/marker'), 'staged the right directory');
      await unpublishAndUnstage(d, volume, paths);
    });

    it('places a volume by the subDir template and the PVC metadata', async () => {
      const volume = await createVolume(d, 'pvc-0b1c', {
        subDir: '${pvc.metadata.namespace}/${pvc.metadata.name}',
        [PVC_NAMESPACE]: 'team-a',
        [PVC_NAME]: 'data',
      });
      assert.equal(volume.volume_id, 'nfs/team-a/data');
      assert.deepEqual(await namesOverNfs(server, 'team-a'), ['data']);
      assert.ok(!(await namesOverNfs(server)).includes('pvc-0b1c'));
    });

    it('rejects a subDir template that escapes the share or names an unknown variable', async () => {
      const rootBefore = await started.listRoot();
      const bad: Record<string, Record<string, string>> = {
        'pvc-up': { subDir: '../outside' },
        'pvc-up-template': { subDir: '${pvc.metadata.name}/../../outside', [PVC_NAME]: 'x' },
        'pvc-unknown': { subDir: '${pvc.metadata.uid}' },
      };
      for (const [name, parameters] of Object.entries(bad)) {
        await rejectsWith(createVolume(d, name, parameters), status.INVALID_ARGUMENT, /subDir/);
      }
      assert.deepEqual(await started.listRoot(), rootBefore);
    });

    it('applies mountPermissions to the new directory', async () => {
      await createVolume(d, 'pvc-mode-775', { mountPermissions: '0775' });
      await createVolume(d, 'pvc-mode-700', { mountPermissions: '0700' });
      const modes = new Map((await server.nfsLs()).map((e) => [e.name, e.mode]));
      assert.equal(modes.get('pvc-mode-775'), 'drwxrwxr-x');
      assert.equal(modes.get('pvc-mode-700'), 'drwx------');
      assert.equal((await stat(join(server.exportPath, 'pvc-mode-775'))).mode & 0o7777, 0o775);
    });

    describe('DeleteVolume', () => {
      async function volumeWithData(
        name: string,
        parameters: Record<string, string>,
      ): Promise<Volume__Output> {
        const volume = await createVolume(d, name, parameters);
        await writeFile(
          join(server.exportPath, volume.volume_id.slice('nfs/'.length), 'data.txt'),
          `data of ${name}`,
        );
        return volume;
      }

      it('onDelete delete removes the directory', async () => {
        const volume = await volumeWithData('pvc-delete', {});
        await deleteVolume(d, volume.volume_id);
        assert.ok(!(await namesOverNfs(server)).includes('pvc-delete'));
        await assert.rejects(server.nfsLs('pvc-delete'));
        await rejectsWith(
          rpc(d.driver.controller, 'ControllerGetVolume', { volume_id: volume.volume_id }),
          status.NOT_FOUND,
        );
        await deleteVolume(d, volume.volume_id);
      });

      it('onDelete retain keeps the directory and its data', async () => {
        const volume = await volumeWithData('pvc-retain', { onDelete: 'retain' });
        await deleteVolume(d, volume.volume_id);
        assert.equal(await server.nfsCat('pvc-retain/data.txt'), 'data of pvc-retain');
        await rejectsWith(
          rpc(d.driver.controller, 'ControllerGetVolume', { volume_id: volume.volume_id }),
          status.NOT_FOUND,
        );
      });

      it('onDelete archive renames the directory to archived-<dir>', async () => {
        const volume = await volumeWithData('pvc-archive', { onDelete: 'archive' });
        await deleteVolume(d, volume.volume_id);
        const names = await namesOverNfs(server);
        assert.ok(!names.includes('pvc-archive'));
        assert.ok(names.includes('archived-pvc-archive'));
        assert.equal(await server.nfsCat('archived-pvc-archive/data.txt'), 'data of pvc-archive');
      });

      it('onDelete archive renames a templated directory beside itself', async () => {
        const volume = await volumeWithData('pvc-9f3e', {
          onDelete: 'archive',
          subDir: '${pvc.metadata.namespace}/${pvc.metadata.name}',
          [PVC_NAMESPACE]: 'team-b',
          [PVC_NAME]: 'logs',
        });
        await deleteVolume(d, volume.volume_id);
        assert.deepEqual(await namesOverNfs(server, 'team-b'), ['archived-logs']);
        assert.equal(
          await server.nfsCat('team-b/archived-logs/data.txt', { version: 4 }),
          'data of pvc-9f3e',
        );
      });
    });
  });

  describe('NFSv4.1 node mounts (share named by its pseudo path)', () => {
    let d: NfsDriver;

    before(async () => {
      d = await driverFor(
        server,
        nfsInstance(server, { share: server.pseudoPath, mountOptions: ['nfsvers=4.1'] }),
      );
    });

    afterEach(async () => {
      if (d) await unmountUnder(join(d.dir, 'pods'));
    });

    after(async () => {
      await d?.stop();
    });

    it('stages with the exact NFSv4.1 mount invocation', async () => {
      const volume = await createVolume(d, 'pvc-argv41', { mountOptions: 'hard' });
      const paths = await stageAndPublish(d, volume);
      assert.deepEqual(await readNfsMounts(d.mountLog), [
        ['-t', 'nfs', '-o', 'nfsvers=4.1,hard', '127.0.0.1:/export1/pvc-argv41', paths.staging],
      ]);
      await writeFile(join(paths.target, 'hello.txt'), 'over NFSv4.1');
      assert.equal(await server.nfsCat('pvc-argv41/hello.txt', { version: 4 }), 'over NFSv4.1');
      await unpublishAndUnstage(d, volume, paths);
    });

    it('appends CSI mount flags after the class mountOptions', async () => {
      const volume = await createVolume(d, 'pvc-flags41', { mountOptions: 'hard,timeo=600' });
      const before = (await readNfsMounts(d.mountLog)).length;
      const paths = await stageAndPublish(d, volume, ['noresvport', 'nconnect=4']);
      assert.deepEqual((await readNfsMounts(d.mountLog)).slice(before), [
        [
          '-t',
          'nfs',
          '-o',
          'nfsvers=4.1,hard,timeo=600,noresvport,nconnect=4',
          '127.0.0.1:/export1/pvc-flags41',
          paths.staging,
        ],
      ]);
      await unpublishAndUnstage(d, volume, paths);
    });
  });

  describe('controller access: mount', () => {
    let d: NfsDriver;

    before(async () => {
      d = await driverFor(
        server,
        nfsInstance(server, {
          share: server.pseudoPath,
          mountOptions: ['nfsvers=4.1'],
          controller: { access: 'mount' },
        }),
      );
    });

    after(async () => {
      await d?.stop();
    });

    it('mounts the share under --state-dir with the class mountOptions and unmounts it on SIGTERM', async () => {
      const stateDir = join(d.dir, 'state');
      const volume = await createVolume(d, 'pvc-ctl', { mountOptions: 'hard' });
      assert.ok((await namesOverNfs(server, '', 4)).includes('pvc-ctl'));

      const optionsOf = async () => (await readNfsMounts(d.mountLog)).map((argv) => argv[3]).sort();
      assert.deepEqual(await optionsOf(), ['nfsvers=4.1,hard'], 'the volume is made with the class options');
      await deleteVolume(d, volume.volume_id);
      assert.ok(!(await namesOverNfs(server, '', 4)).includes('pvc-ctl'));
      assert.deepEqual(
        await optionsOf(),
        ['nfsvers=4.1', 'nfsvers=4.1,hard'],
        'one mount to look the record up, one with the class options to delete',
      );

      const mounts = await readNfsMounts(d.mountLog);
      for (const argv of mounts) {
        assert.deepEqual(argv.slice(0, 3), ['-t', 'nfs', '-o']);
        assert.equal(argv[4], '127.0.0.1:/export1');
        assert.equal(dirname(argv[5]!), join(stateDir, 'controller-mounts'));
        assert.match(basename(argv[5]!), /^nfs-[0-9a-f]{12}$/);
      }
      assert.deepEqual((await mountsUnder(stateDir)).sort(), mounts.map((argv) => argv[5]).sort());

      assert.equal(await d.driver.stop(), 0);
      assert.deepEqual(await mountsUnder(stateDir), []);
    });
  });
});
