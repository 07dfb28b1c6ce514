import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connectCsi, rpc } from '../../src/cli/csi-client.js';
import { freePort } from '../helpers/ports.js';
import { DRIVER_BIN, startDriver } from '../helpers/driver.js';
import { mountCapability } from '../helpers/csi.js';

const run = promisify(execFile);

/** Whether a process of that user and group may connect to a unix socket: "connected" or the errno. */
async function connectsAs(socket: string, uid: number, gid: number): Promise<string> {
  const script = `require('net').connect(${JSON.stringify(socket)})
    .on('connect', () => { console.log('connected'); process.exit(0); })
    .on('error', (e) => { console.log(e.code); process.exit(0); });`;
  const { stdout } = await run(process.execPath, ['-e', script], { uid, gid, cwd: '/' });
  return stdout.trim();
}

describe('sharedvolume-csi executable', () => {
  it('documents every flag of --help, with its environment variable, in the README', async () => {
    const { stdout } = await run(DRIVER_BIN, ['--help']);
    const flags = [...stdout.matchAll(/^\s+(--[a-z-]+)/gm)].map((m) => m[1]!);
    assert.ok(flags.includes('--sync-lease') && flags.length > 10, stdout);
    const readme = await readFile(new URL('../../../README.md', import.meta.url), 'utf8');
    for (const flag of flags.filter((f) => f !== '--help' && f !== '--version')) {
      const variable = `SHAREDVOLUME_${flag.slice(2).toUpperCase().replace(/-/g, '_')}`;
      assert.ok(readme.includes(`| \`${flag}\` | \`${variable}\` |`), `README row for ${flag}`);
    }
  });

  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-cli-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('serves every service from the smallest invocation and exits 0 on SIGTERM, removing its socket', async () => {
    const driver = await startDriver({ args: ['--local-root', join(dir, 'root')] });
    try {
      const caps = await rpc(driver.identity, 'GetPluginCapabilities', {});
      assert.ok(caps.capabilities.some((c) => c.service?.type === 'CONTROLLER_SERVICE'));
      const info = await rpc(driver.node, 'NodeGetInfo', {});
      assert.equal(info.node_id, 'test-node');
    } catch (err) {
      await driver.stop();
      throw err;
    }
    const socket = driver.socket;
    assert.equal(await driver.stop(), 0);
    assert.equal(existsSync(socket), false);
  });

  it('finishes in-flight calls before exiting on SIGTERM', async () => {
    const driver = await startDriver({ args: ['--local-root', join(dir, 'root')] });
    const creates = Array.from({ length: 30 }, (_, i) =>
      rpc(driver.controller, 'CreateVolume', { name: `v${i}`, volume_capabilities: [mountCapability()] }),
    );
    await new Promise((r) => setTimeout(r, 2));
    driver.process.kill('SIGTERM');
    const results = await Promise.allSettled(creates);
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const refused = results.filter(
      (r) => r.status === 'rejected' && /UNAVAILABLE|14/.test(String((r.reason as Error).message)),
    );
    assert.equal(ok + refused.length, 30, 'every call either completed or was refused before starting');
    assert.equal(await driver.stop(), 0);
  });

  it('replaces a stale socket file left by a crashed run', async () => {
    const first = await startDriver({ args: ['--local-root', join(dir, 'root')], dir });
    first.process.kill('SIGKILL');
    await first.stop();
    assert.equal(existsSync(first.socket), true, 'a crash leaves the socket file');
    const second = await startDriver({ args: ['--local-root', join(dir, 'root')], dir });
    try {
      assert.ok((await rpc(second.identity, 'Probe', {})).ready?.value);
    } finally {
      await second.stop();
    }
  });

  it('refuses a socket a live process is serving', async () => {
    const socket = join(dir, 'busy.sock');
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      await assert.rejects(
        run(DRIVER_BIN, ['--endpoint', `unix://${socket}`, '--local-root', join(dir, 'root')]),
        (err: { code: number; stderr: string }) =>
          err.code === 1 && /in use by a running process/.test(err.stderr),
      );
    } finally {
      server.close();
    }
  });

  it('lets a group use its socket (--endpoint-group), so that sidecars need not be root', async () => {
    await chmod(dir, 0o711); // other users may reach the socket, as in a pod's shared socket volume
    const driver = await startDriver({
      args: ['--local-root', join(dir, 'root'), '--endpoint-group', '4242'],
      dir,
    });
    try {
      const socket = await stat(driver.socket);
      assert.equal(socket.gid, 4242);
      assert.equal(socket.mode & 0o777, 0o660);
      assert.equal(await connectsAs(driver.socket, 4243, 4242), 'connected', 'a member of the group');
      assert.equal(await connectsAs(driver.socket, 4243, 4243), 'EACCES', 'anyone else');
    } finally {
      assert.equal(await driver.stop(), 0);
    }
  });

  it('hands its socket to a group it belongs to as root without capabilities (the local overlay)', async () => {
    await chmod(dir, 0o711);
    const rootWithoutCapabilities = (groups: string) => [
      'setpriv',
      `--groups=${groups}`,
      '--inh-caps=-all',
      '--bounding-set=-all',
      '--',
    ];
    const args = ['--local-root', join(dir, 'root'), '--endpoint-group', '4242'];
    const driver = await startDriver({ args, dir, launcher: rootWithoutCapabilities('4242') });
    try {
      assert.equal(await connectsAs(driver.socket, 4243, 4242), 'connected');
    } finally {
      assert.equal(await driver.stop(), 0);
    }
    // Not a member: only CAP_CHOWN could give the socket away. The start fails and leaves no socket.
    const [setpriv, ...options] = rootWithoutCapabilities('4243');
    const endpoint = `unix://${join(dir, 'csi.sock')}`;
    await assert.rejects(
      run(setpriv!, [...options, DRIVER_BIN, '--endpoint', endpoint, ...args]),
      (err: { code: number; stderr: string }) =>
        err.code === 1 && /--endpoint-group 4242: EPERM/.test(err.stderr),
    );
    assert.equal(existsSync(join(dir, 'csi.sock')), false);
  });

  it('refuses --endpoint-group that is not a number or for a tcp endpoint', async () => {
    await assert.rejects(
      run(DRIVER_BIN, ['--endpoint', `unix://${join(dir, 's.sock')}`, '--endpoint-group', 'csi']),
      (err: { stderr: string }) => /--endpoint-group.*numeric group id/.test(err.stderr),
    );
    await assert.rejects(
      run(DRIVER_BIN, ['--endpoint', 'tcp://127.0.0.1:1', '--endpoint-group', '1', '--local-root', dir]),
      (err: { stderr: string }) => /--endpoint-group applies to a unix:\/\/ endpoint only/.test(err.stderr),
    );
  });

  it('serves on tcp://host:port as well', async () => {
    const port = await freePort();
    const child = spawn(
      DRIVER_BIN,
      ['--endpoint', `tcp://127.0.0.1:${port}`, '--local-root', join(dir, 'root')],
      {
        stdio: 'ignore',
      },
    );
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const csi = connectCsi(`tcp://127.0.0.1:${port}`);
    try {
      let info;
      for (let i = 0; i < 100 && !info; i++) {
        info = await rpc(csi.identity, 'GetPluginInfo', {}).catch(
          () => new Promise((r) => setTimeout(r, 50)),
        );
      }
      assert.equal((info as { name: string }).name, 'csi.sharedvolume.io');
    } finally {
      csi.close();
      child.kill('SIGTERM');
      await exited;
    }
  });

  it('explains a missing backend configuration', async () => {
    await assert.rejects(
      run(DRIVER_BIN, ['--endpoint', `unix://${join(dir, 's.sock')}`]),
      (err: { stderr: string }) => /--local-root DIR or --backends FILE/.test(err.stderr),
    );
  });

  it('reads flags from SHAREDVOLUME_* environment variables', async () => {
    const driver = await startDriver({
      args: [],
      env: { SHAREDVOLUME_LOCAL_ROOT: join(dir, 'root'), SHAREDVOLUME_DRIVER_NAME: 'x.example.com' },
    });
    assert.equal((await rpc(driver.identity, 'GetPluginInfo', {})).name, 'x.example.com');
    await driver.stop();
  });
});
