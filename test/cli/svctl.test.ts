import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { isReadOnly, mountAt, readMountTable } from '../../src/mount/mountinfo.js';
import { startDriver, type RunningDriver } from '../helpers/driver.js';
import { ok, runSvctl, type SvctlResult } from '../helpers/svctl.js';

type Result = SvctlResult;

/** svctl against the given endpoint, with a staging directory of the test's own. */
const runSvctlAt = (endpoint: string, stagingDir: string, args: string[]) =>
  runSvctl(['--endpoint', endpoint, '--staging-dir', stagingDir, ...args]);

/** --json must print JSON and nothing else. */
function json<T = Record<string, unknown>>(result: Result): T {
  return JSON.parse(ok(result)) as T;
}

async function mountsUnder(dir: string) {
  return (await readMountTable()).filter((e) => e.mountPoint === dir || e.mountPoint.startsWith(`${dir}/`));
}

interface ListedVolume {
  volume: { volume_id: string; capacity_bytes: string };
}

describe('cli/svctl', () => {
  let tmp: string;
  let root: string;
  let staging: string;
  let target: string;
  let driver: RunningDriver | undefined;
  const svctl = (...args: string[]) => runSvctlAt(driver!.endpoint, staging, args);
  const listedIds = async () =>
    json<{ entries: ListedVolume[] }>(await svctl('--json', 'list')).entries.map((e) => e.volume.volume_id);

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'sv-svctl-'));
    root = join(tmp, 'volumes');
    staging = join(tmp, 'staging');
    target = join(tmp, 'mnt', 'app');
    await mkdir(root);
    await mkdir(join(tmp, 'mnt'));
    driver = await startDriver({ args: ['--local-root', root] });
  });

  after(async () => {
    // Whatever a failed test left mounted on our behalf, deepest first.
    for (const entry of (await mountsUnder(tmp)).reverse()) {
      await execa('umount', ['-l', entry.mountPoint], { reject: false });
    }
    await driver?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  describe('a volume from create to delete', () => {
    it('create prints the new volume id and capacity', async () => {
      const out = ok(await svctl('create', 'demo', '--size', '1Gi'));
      assert.match(out, /^volume:\s+local\/demo$/m);
      assert.match(out, /^capacity:\s+1 GiB$/m);
      assert.ok(existsSync(join(root, 'demo')), 'the volume directory exists under the local root');
    });

    it('create --json prints the CreateVolume response', async () => {
      const res = json<{ volume: { volume_id: string; capacity_bytes: string } }>(
        await svctl('--json', 'create', 'demo', '--size', '1Gi'),
      );
      assert.equal(res.volume.volume_id, 'local/demo');
      assert.equal(res.volume.capacity_bytes, String(1024 ** 3));
    });

    it('list shows it in an aligned table', async () => {
      const out = ok(await svctl('list'));
      const [header, ...rows] = out.trimEnd().split('\n');
      assert.match(header!, /^ID\s+CAPACITY\s+CONTEXT$/);
      assert.deepEqual(rows, ['local/demo  1 GiB     -']);
      assert.equal(header!.indexOf('CAPACITY'), rows[0]!.indexOf('1 GiB'), 'columns line up');
    });

    it('list --json shows it as ListVolumes entries', async () => {
      const res = json<{ entries: ListedVolume[]; next_token: string }>(await svctl('--json', 'list'));
      assert.deepEqual(
        res.entries.map((e) => [e.volume.volume_id, e.volume.capacity_bytes]),
        [['local/demo', String(1024 ** 3)]],
      );
      assert.equal(res.next_token, '');
    });

    it('publish bind-mounts the volume at the target', async () => {
      const out = ok(await svctl('publish', 'local/demo', target));
      assert.match(out, new RegExp(`^published:\\s+local/demo at ${target}$`, 'm'));
      const entry = mountAt(await readMountTable(), target);
      assert.ok(entry, `${target} is a mount point`);
      assert.ok(
        entry.root.endsWith('/volumes/demo'),
        `bind mount of the volume directory, got root ${entry.root}`,
      );
      assert.equal(isReadOnly(entry), false);
    });

    it('a file written at the target lands in the volume directory', async () => {
      await writeFile(join(target, 'hello.txt'), 'written through the mount\n');
      assert.equal(await readFile(join(root, 'demo', 'hello.txt'), 'utf8'), 'written through the mount\n');
    });

    it('stat --path reports capacity, condition and byte usage', async () => {
      const out = ok(await svctl('stat', 'local/demo', '--path', target));
      assert.match(out, /^capacity:\s+1 GiB$/m);
      assert.match(out, /^condition:\s+healthy \(mounted and answering\)$/m);
      assert.match(out, /^bytes\s+\d+(\.\d)? [KMGTPE]?i?B\s+/m);
      const res = json<{ NodeGetVolumeStats: { usage: { unit: string; total: string; used: string }[] } }>(
        await svctl('--json', 'stat', 'local/demo', '--path', target),
      );
      const bytes = res.NodeGetVolumeStats.usage.find((u) => u.unit === 'BYTES');
      assert.ok(bytes && Number(bytes.total) > 0 && Number(bytes.used) > 0, JSON.stringify(bytes));
    });

    it('publish --readonly gives a mount that refuses writes', async () => {
      const readonlyTarget = join(tmp, 'mnt', 'ro');
      ok(await svctl('publish', 'local/demo', readonlyTarget, '--readonly'));
      const entry = mountAt(await readMountTable(), readonlyTarget);
      assert.ok(entry && isReadOnly(entry), 'read-only mount');
      await assert.rejects(writeFile(join(readonlyTarget, 'x'), 'x'), { code: 'EROFS' });
      assert.equal(await readFile(join(readonlyTarget, 'hello.txt'), 'utf8'), 'written through the mount\n');
      ok(await svctl('unpublish', 'local/demo', readonlyTarget));
      assert.equal(mountAt(await readMountTable(), readonlyTarget), undefined);
    });

    it('unpublish leaves no mount behind: neither target nor staging', async () => {
      ok(await svctl('unpublish', 'local/demo', target));
      assert.deepEqual(await mountsUnder(tmp), []);
      assert.equal(existsSync(target), false, 'the driver removed the mount point');
      assert.deepEqual(await readdir(staging), [], 'svctl removed its staging directory');
      assert.ok(existsSync(join(root, 'demo', 'hello.txt')), 'the data stays in the volume');
    });

    it('delete removes the volume from the list and from the local root', async () => {
      assert.match(ok(await svctl('delete', 'local/demo')), /^deleted local\/demo$/m);
      assert.deepEqual(await listedIds(), []);
      assert.equal(ok(await svctl('list')).trim(), 'No volumes.');
      assert.equal(existsSync(join(root, 'demo')), false);
    });
  });

  describe('create sizes', () => {
    after(async () => {
      for (const name of ['plain', 'limited', 'decimal']) await svctl('delete', `local/${name}`);
    });

    const created = async (...args: string[]) =>
      json<{ volume: { capacity_bytes: string } }>(await svctl('--json', 'create', ...args)).volume
        .capacity_bytes;

    it('asks for 1Gi without --size, the limit with only --limit, and reads decimal suffixes', async () => {
      assert.equal(await created('plain'), String(1024 ** 3));
      assert.equal(await created('limited', '--limit', '512Mi'), String(512 * 1024 ** 2));
      assert.equal(await created('decimal', '--size', '10M'), String(10e6));
    });
  });

  describe('list paging', () => {
    after(async () => {
      for (const name of ['page-a', 'page-b', 'page-c']) await svctl('delete', `local/${name}`);
    });

    it('follows next_token to the end, or pages with --max and --token', async () => {
      for (const name of ['page-a', 'page-b', 'page-c']) ok(await svctl('create', name, '--size', '1Mi'));
      assert.deepEqual((await listedIds()).sort(), ['local/page-a', 'local/page-b', 'local/page-c']);

      const seen: string[] = [];
      let token = '';
      for (let pages = 0; pages < 5; pages++) {
        const args = ['--json', 'list', '--max', '2', ...(token ? ['--token', token] : [])];
        const page = json<{ entries: ListedVolume[]; next_token: string }>(await svctl(...args));
        assert.ok(page.entries.length <= 2);
        seen.push(...page.entries.map((e) => e.volume.volume_id));
        token = page.next_token;
        if (!token) break;
      }
      assert.deepEqual(seen.sort(), ['local/page-a', 'local/page-b', 'local/page-c']);
      assert.match(ok(await svctl('list', '--max', '1')), /^More volumes: svctl list --max 1 --token \S+$/m);
    });
  });

  describe('info', () => {
    it('shows identity, capabilities and node info', async () => {
      const out = ok(await svctl('info'));
      assert.match(out, /^driver:\s+csi\.sharedvolume\.io \S+$/m);
      assert.match(out, /^ready:\s+true$/m);
      assert.match(out, /^controller:\s+.*CREATE_DELETE_VOLUME/m);
      assert.match(out, /^node:\s+.*STAGE_UNSTAGE_VOLUME/m);
      assert.match(out, /^node id:\s+test-node$/m);
      const res = json<{ GetPluginInfo: { name: string }; NodeGetInfo: { node_id: string } }>(
        await svctl('--json', 'info'),
      );
      assert.equal(res.GetPluginInfo.name, 'csi.sharedvolume.io');
      assert.equal(res.NodeGetInfo.node_id, 'test-node');
    });
  });

  describe('errors', () => {
    it('a bad size is a usage error (exit 2) that names the size, and creates nothing', async () => {
      const res = await svctl('create', 'bad', '--size', 'lots');
      assert.equal(res.code, 2);
      assert.equal(res.stdout, '');
      assert.match(res.stderr, /^svctl: .*invalid size "lots"/);
      assert.deepEqual(await listedIds(), []);
    });

    it('a malformed -p is a usage error', async () => {
      const res = await svctl('create', 'bad', '-p', 'novalue');
      assert.equal(res.code, 2);
      assert.match(res.stderr, /expected key=value, got "novalue"/);
    });

    it('delete of a traversing id prints INVALID_ARGUMENT and exits 1', async () => {
      const res = await svctl('delete', 'local/../x');
      assert.equal(res.code, 1);
      assert.equal(res.stdout, '');
      assert.match(res.stderr, /^svctl: INVALID_ARGUMENT: volume_id "local\/\.\.\/x" contains "\.\."\n$/);
    });

    it('a driver error keeps stdout empty under --json too', async () => {
      const res = await svctl('--json', 'stat', 'local/missing');
      assert.equal(res.code, 1);
      assert.equal(res.stdout, '');
      assert.match(res.stderr, /^svctl: NOT_FOUND: /);
    });

    it('an endpoint nobody serves is UNAVAILABLE', async () => {
      const res = await runSvctlAt(`unix://${join(tmp, 'nobody.sock')}`, staging, ['list']);
      assert.equal(res.code, 1);
      assert.match(res.stderr, /^svctl: UNAVAILABLE: /);
    });

    it('a malformed endpoint and an unknown command are usage errors', async () => {
      assert.equal((await runSvctlAt('http://x', staging, ['list'])).code, 2);
      const res = await svctl('frobnicate');
      assert.equal(res.code, 2);
      assert.match(res.stderr, /unknown command 'frobnicate'/);
    });
  });
});
