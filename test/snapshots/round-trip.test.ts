import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rpc } from '../../src/cli/csi-client.js';
import { mountCapability } from '../helpers/csi.js';
import { startDriver, type RunningDriver } from '../helpers/driver.js';
import { buildTree, describeTree } from '../helpers/tree.js';

describe('snapshot round trip of a large tree', function () {
  let dir: string;
  let root: string;
  let driver: RunningDriver;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-roundtrip-'));
    root = join(dir, 'root');
    driver = await startDriver({ args: ['--local-root', root] });
  });

  after(async () => {
    await driver?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('restores 5,000 files, symlinks, hard links, empty directories, modes, owners and mtimes exactly', async () => {
    const { volume } = await rpc(driver.controller, 'CreateVolume', {
      name: 'many-files',
      capacity_range: { required_bytes: 1 << 30 },
      volume_capabilities: [mountCapability()],
    });
    await rm(join(root, 'many-files'), { recursive: true });
    await buildTree(join(root, 'many-files'), { files: 5000, maxFileBytes: 128 * 1024, seed: 2024 });
    const original = await describeTree(join(root, 'many-files'));
    assert.ok(Object.keys(original).length > 5100);

    const { snapshot } = await rpc(driver.controller, 'CreateSnapshot', {
      name: 'many-files-snap',
      source_volume_id: volume!.volume_id,
      parameters: { compression: 'zstd' },
    });
    assert.equal(snapshot!.ready_to_use, true);
    await rpc(driver.controller, 'CreateVolume', {
      name: 'many-files-restored',
      volume_capabilities: [mountCapability()],
      volume_content_source: { snapshot: { snapshot_id: snapshot!.snapshot_id } },
    });
    const restored = await describeTree(join(root, 'many-files-restored'));
    const differing = Object.keys(original).filter(
      (path) => JSON.stringify(original[path]) !== JSON.stringify(restored[path]),
    );
    assert.deepEqual(differing, [], 'every entry matches');
    assert.deepEqual(Object.keys(restored).sort(), Object.keys(original).sort(), 'nothing extra');
  });
});
