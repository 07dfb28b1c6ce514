import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { createNfsBackend, type NfsConfig } from '../../../src/backends/nfs/index.js';
import { parseBackendsFile } from '../../../src/backends/registry.js';

const DOC = new URL('../../../../docs/backends/nfs.md', import.meta.url);

async function yamlBlocks(): Promise<string[]> {
  const text = await readFile(DOC, 'utf8');
  return [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

function nfsConfigs(yaml: string): NfsConfig[] {
  return parseBackendsFile(yaml, 'docs/backends/nfs.md').map((config) => {
    assert.equal(config.kind, 'nfs');
    return config as NfsConfig;
  });
}

describe('NFS instance configuration', () => {
  it('defaults to controller access: mount and no mount options', () => {
    const [config] = nfsConfigs('backends: [{name: nfs-main, kind: nfs, server: nfs1, share: /srv/k8s}]');
    assert.deepEqual(config!.controller, { access: 'mount' });
    assert.deepEqual(config!.mountOptions, []);
  });

  it('requires a path for access: path', () => {
    assert.throws(
      () => nfsConfigs('backends: [{name: n, kind: nfs, server: s, share: /x, controller: {access: path}}]'),
      /path/,
    );
  });

  it('rejects a relative share and unknown keys', () => {
    assert.throws(() => nfsConfigs('backends: [{name: n, kind: nfs, server: s, share: srv}]'), /share/);
    assert.throws(
      () => nfsConfigs('backends: [{name: n, kind: nfs, server: s, share: /srv, export: /srv}]'),
      /export/,
    );
  });
});

describe('docs/backends/nfs.md examples', () => {
  it('has backends files the driver accepts', async () => {
    const files = (await yamlBlocks()).filter((block) => block.startsWith('backends:'));
    assert.ok(files.length >= 2);
    for (const file of files) assert.ok(nfsConfigs(file).length > 0);
  });

  it('mounts the path-mode volume where the path-mode instance looks for it', async () => {
    const blocks = await yamlBlocks();
    const instance = blocks
      .filter((block) => block.startsWith('backends:'))
      .flatMap(nfsConfigs)
      .find((config) => config.controller.access === 'path');
    const deployment = blocks.map((block) => parseYaml(block)).find((doc) => doc?.kind === 'Deployment');
    const container = deployment.spec.template.spec.containers[0];
    const volume = deployment.spec.template.spec.volumes[0];
    assert.ok(instance && instance.controller.access === 'path');
    assert.equal(container.volumeMounts[0].mountPath, instance.controller.path);
    assert.equal(container.volumeMounts[0].name, volume.name);
    assert.deepEqual(volume.nfs, { server: instance.server, path: instance.share });
  });

  it('has a StorageClass whose parameters the NFS backend accepts', async () => {
    const storageClass = (await yamlBlocks())
      .map((block) => parseYaml(block))
      .find((doc) => doc?.kind === 'StorageClass');
    const [config] = nfsConfigs((await yamlBlocks()).find((block) => block.startsWith('backends:'))!);
    assert.equal(storageClass.provisioner, 'csi.sharedvolume.io');
    const share = createNfsBackend(config!, { stateDir: '/nonexistent' }).parseParameters(
      storageClass.parameters,
    );
    assert.equal(share.subDir, '${pvc.metadata.namespace}/${pvc.metadata.name}');
    assert.equal(share.onDelete, 'archive');
    assert.equal(share.mountPermissions, 0o775);
    assert.deepEqual(share.mountOptions, ['hard', 'timeo=600']);
  });
});
