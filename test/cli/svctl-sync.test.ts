import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syncStateDir, writeRegistration } from '../../src/populator/registration.js';
import { parseSourceSpec } from '../../src/populator/spec.js';
import type { VolumeSyncState } from '../../src/populator/service.js';
import { startDriver, type RunningDriver } from '../helpers/driver.js';
import { ok, runSvctl } from '../helpers/svctl.js';
import { eventually } from '../helpers/eventually.js';
import { startFileServer, type FileServer } from '../helpers/file-server.js';
import { startKubeApi, type KubeApiStandIn } from '../helpers/kube-api.js';
import { freePort } from '../helpers/ports.js';

const svctl = (admin: string, args: string[]) => runSvctl(args, { SHAREDVOLUME_ADMIN_ADDRESS: admin });

describe('svctl sync (against the real driver with --populator)', function () {
  this.timeout(60_000);
  const TOKEN = 'files-token-PLANTED-42';
  let dir: string;
  let root: string;
  let files: FileServer;
  let api: KubeApiStandIn;
  let driver: RunningDriver | undefined;
  let admin: string;
  const run = (...args: string[]) => svctl(admin, args);

  async function register(name: string, options: { secret?: string } = {}) {
    const id = `local/${name}`;
    const stateDir = syncStateDir(join(root, '.sharedvolume'), id);
    await mkdir(stateDir, { recursive: true });
    await mkdir(join(root, name));
    await writeRegistration({
      id,
      volumeDir: join(root, name),
      stateDir,
      spec: parseSourceSpec({
        type: 'http',
        http: { url: files.url(`/${name}/data.bin`) },
        syncInterval: '1h',
      }),
      ...(options.secret ? { secretRef: { namespace: 'team-a', name: options.secret } } : {}),
    });
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-svctl-sync-'));
    root = join(dir, 'root');
    files = await startFileServer();
    api = await startKubeApi();
    files.set('/ok/data.bin', 'ok v1\n', { token: TOKEN });
    api.setSecret('team-a', 'ok-token', { token: TOKEN });
    files.set('/slow/data.bin', Buffer.alloc(100, 'a'));
    files.set('/bad/data.bin', 'x', { token: 'something-else' });
    await register('ok', { secret: 'ok-token' });
    await register('slow');
    await register('bad');
    admin = `127.0.0.1:${await freePort()}`;
    driver = await startDriver({
      args: ['--local-root', root, '--populator', '--admin-address', admin],
      env: { KUBECONFIG: await api.writeKubeconfig(dir) },
    });
    // The driver fills all three at start; wait for their outcomes.
    await eventually(async () => {
      const res = JSON.parse(ok(await run('--json', 'sync', 'status'))) as { volumes: VolumeSyncState[] };
      return (
        res.volumes.length === 3 && res.volumes.every((v) => v.status?.lastAttempt && !v.status.inProgress)
      );
    }, 'the first syncs');
  });

  after(async () => {
    await driver?.stop();
    await files?.stop();
    await api?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('sync status: a table of every volume with its revision, last success and state', async () => {
    const text = ok(await run('sync', 'status'));
    const lines = text.trim().split('\n');
    assert.match(lines[0]!, /^VOLUME\s+SOURCE\s+REVISION\s+LAST SUCCESS\s+STATE\s+NEXT SYNC$/);
    const row = (id: string) => lines.find((l) => l.startsWith(id)) ?? '';
    assert.match(row('local/ok'), /data\.bin\s+[0-9a-f]{12}\s+(\d+s ago|just now)\s+ok\s+in 1h/);
    assert.match(row('local/bad'), /\s-\s+failing \(auth\)\s+(in \d+[sm]|just now|\d+s ago)$/);
    assert.match(row('local/slow'), /\sok\s/);
  });

  it('sync status VOLUME: revision, times, last error, bytes and files; never a credential', async () => {
    const text = ok(await run('sync', 'status', 'local/ok'));
    assert.match(text, /^volume: +local\/ok$/m);
    assert.match(text, /^revision: +sha256:[0-9a-f]{64}$/m);
    assert.match(text, /^last success: +\S+Z \((\d+s ago|just now)\)$/m);
    assert.match(text, /^last error: +-$/m);
    assert.match(text, /^last sync: +6 B in 1 files written$/m);
    assert.match(text, /^secret: +team-a\/ok-token$/m);
    const bad = ok(await run('sync', 'status', 'local/bad'));
    assert.match(
      bad,
      /^last error: +auth: GET http:\/\/127\.0\.0\.1:\d+\/bad\/data\.bin: HTTP 401 \(credentials refused\)/m,
    );
    assert.match(bad, /^failures: +[1-9]\d*$/m);
    const json = ok(await run('--json', 'sync', 'status'));
    assert.ok(!json.includes(TOKEN) && !text.includes(TOKEN));
  });

  it('a running sync shows a progress bar', async () => {
    files.set('/slow/data.bin', Buffer.alloc(100, 'b'), { hold: true });
    assert.equal(ok(await run('sync', 'local/slow')).trim(), 'sync of local/slow triggered');
    await files.held('/slow/data.bin');
    const text = ok(await run('sync', 'status', 'local/slow'));
    files.release('/slow/data.bin');
    assert.match(text, /^progress: +\[#{12}-{12}\] {2}50% downloading 50 B \/ 100 B, 0 files$/m);
    assert.match(text, /^state: +syncing 50%$/m);
  });

  it('sync VOLUME --wait follows the sync to its end and prints the outcome', async () => {
    files.set('/ok/data.bin', 'ok v2 is longer\n', { token: TOKEN });
    const text = ok(await run('sync', 'local/ok', '--wait'));
    assert.match(text, /^last sync: +16 B in 1 files written$/m);
    assert.equal(await readFile(join(root, 'ok', 'data.bin'), 'utf8'), 'ok v2 is longer\n');
    const failed = await run('sync', 'local/bad', '--wait');
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /^svctl: sync of local\/bad failed: auth: GET .* HTTP 401/);
  });

  it('errors: unknown volume (1), wrong usage (2), unreachable endpoint (1, with a hint)', async () => {
    const unknown = await run('sync', 'local/nope');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no populated volume local\/nope/);
    const status = await run('sync', 'status', 'local/nope');
    assert.equal(status.code, 1);
    assert.equal((await run('sync', 'local/a', 'local/b')).code, 2);
    const down = await svctl(`127.0.0.1:${await freePort()}`, ['sync', 'status']);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /cannot reach the populator's admin endpoint .*ECONNREFUSED.*kubectl/);
  });

  it('the admin endpoint refuses to listen anywhere but loopback', async () => {
    const refused = await startDriver({
      args: ['--local-root', join(dir, 'other'), '--populator', '--admin-address', '0.0.0.0:19810'],
    }).then(
      async (d) => {
        await d.stop();
        return '';
      },
      (err: Error) => err.message,
    );
    assert.match(refused, /--admin-address must be a loopback address/);
  });
});
