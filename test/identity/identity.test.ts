import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, rmdir, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rpc } from '../../src/cli/csi-client.js';
import { startDriver, type RunningDriver } from '../helpers/driver.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

describe('Identity service', () => {
  let dir: string;
  let driver: RunningDriver;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-identity-'));
    await mkdir(join(dir, 'root'));
    driver = await startDriver({ args: ['--local-root', join(dir, 'root')] });
  });
  after(async () => {
    await driver?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('reports the driver name and the package version', async () => {
    const info = await rpc(driver.identity, 'GetPluginInfo', {});
    assert.equal(info.name, 'csi.sharedvolume.io');
    assert.equal(info.vendor_version, pkg.version);
  });

  it('is ready only while every backend answers', async () => {
    assert.equal((await rpc(driver.identity, 'Probe', {})).ready?.value, true);
    await rmdir(join(dir, 'root')).catch(() => rm(join(dir, 'root'), { recursive: true }));
    assert.equal((await rpc(driver.identity, 'Probe', {})).ready?.value, false);
    await mkdir(join(dir, 'root'));
    assert.equal((await rpc(driver.identity, 'Probe', {})).ready?.value, true);
  });

  it('advertises no controller service in node mode', async () => {
    const node = await startDriver({ args: ['--local-root', join(dir, 'root'), '--mode', 'node'] });
    try {
      const caps = await rpc(node.identity, 'GetPluginCapabilities', {});
      assert.equal(caps.capabilities.length, 0);
      await assert.rejects(rpc(node.controller, 'ControllerGetCapabilities', {}), /UNIMPLEMENTED/);
    } finally {
      await node.stop();
    }
  });
});
