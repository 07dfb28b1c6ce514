import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import {
  createNfsBackend,
  nfsConfigSchema,
  nfsMountSpec,
  type NfsConfig,
} from '../../../src/backends/nfs/index.js';
import { mountArgs } from '../../../src/mount/mounter.js';
import { CsiError } from '../../../src/rpc/errors.js';

const config = (overrides: Partial<NfsConfig> = {}): NfsConfig =>
  nfsConfigSchema.parse({
    kind: 'nfs',
    name: 'nfs',
    server: 'nfs.example.internal',
    share: '/exports/k8s',
    ...overrides,
  });

describe('nfsMountSpec', () => {
  it('names the volume directory below the share', () => {
    assert.deepEqual(nfsMountSpec(config(), 'team-a/data', []), {
      source: 'nfs.example.internal:/exports/k8s/team-a/data',
      fsType: 'nfs',
      options: [],
    });
  });

  it('names the share itself for the controller mount', () => {
    assert.equal(nfsMountSpec(config(), '', []).source, 'nfs.example.internal:/exports/k8s');
  });

  it('ignores trailing slashes on the share', () => {
    assert.equal(
      nfsMountSpec(config({ share: '/exports/k8s//' }), 'pvc-1', []).source,
      'nfs.example.internal:/exports/k8s/pvc-1',
    );
  });

  it('keeps "/" for an NFSv4 pseudo root share', () => {
    assert.equal(nfsMountSpec(config({ share: '/' }), '', []).source, 'nfs.example.internal:/');
    assert.equal(nfsMountSpec(config({ share: '/' }), 'pvc-1', []).source, 'nfs.example.internal:/pvc-1');
  });

  it('brackets an IPv6 server address', () => {
    assert.equal(
      nfsMountSpec(config({ server: 'fd00::10' }), 'pvc-1', []).source,
      '[fd00::10]:/exports/k8s/pvc-1',
    );
    assert.equal(nfsMountSpec(config({ server: '[fd00::10]' }), '', []).source, '[fd00::10]:/exports/k8s');
  });

  it('puts instance options first, then class options, each once', () => {
    const spec = nfsMountSpec(config({ mountOptions: ['nfsvers=4.1', 'hard'] }), 'pvc-1', [
      'hard',
      'timeo=600',
    ]);
    assert.deepEqual(spec.options, ['nfsvers=4.1', 'hard', 'timeo=600']);
  });
});

describe('mountArgs for NFS', () => {
  it('gives mount(8) the type, the joined options, the source and the target', () => {
    const spec = nfsMountSpec(config({ mountOptions: ['nfsvers=3'] }), 'pvc-1', ['hard']);
    assert.deepEqual(mountArgs(spec, '/var/lib/kubelet/staging/pvc-1'), [
      '-t',
      'nfs',
      '-o',
      'nfsvers=3,hard',
      'nfs.example.internal:/exports/k8s/pvc-1',
      '/var/lib/kubelet/staging/pvc-1',
    ]);
  });

  it('passes no -o when there are no options', () => {
    assert.deepEqual(mountArgs(nfsMountSpec(config(), 'pvc-1', []), '/mnt/x'), [
      '-t',
      'nfs',
      'nfs.example.internal:/exports/k8s/pvc-1',
      '/mnt/x',
    ]);
  });
});

describe('NFS backend node mount', () => {
  const backend = createNfsBackend(config({ mountOptions: ['nfsvers=4.1'] }), { stateDir: '/nonexistent' });

  it('adds the class mount options carried in the volume context', () => {
    const spec = backend.nodeMount('ns/pvc', { mountOptions: 'hard,,timeo=600' });
    assert.deepEqual(spec, {
      source: 'nfs.example.internal:/exports/k8s/ns/pvc',
      fsType: 'nfs',
      options: ['nfsvers=4.1', 'hard', 'timeo=600'],
    });
  });

  it('uses the instance options alone without a context', () => {
    assert.deepEqual(backend.nodeMount('pvc-1', {}).options, ['nfsvers=4.1']);
  });

  it('turns the class mountOptions parameter into share options', () => {
    assert.deepEqual(backend.parseParameters({ mountOptions: 'nfsvers=4.2,hard' }).mountOptions, [
      'nfsvers=4.2',
      'hard',
    ]);
  });

  it('rejects mountOptions that could smuggle other arguments, naming the key', () => {
    for (const bad of ['hard vers=3', 'hard;reboot', 'a\tb']) {
      assert.throws(
        () => backend.parseParameters({ mountOptions: bad }),
        (err: unknown) =>
          err instanceof CsiError && err.code === status.INVALID_ARGUMENT && /mountOptions/.test(err.message),
      );
    }
  });
});
