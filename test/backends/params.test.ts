import assert from 'node:assert/strict';
import { fingerprintParameters, parseWith, toShareParams } from '../../src/backends/params.js';
import { nfsParamsSchema } from '../../src/backends/nfs/index.js';
import { localParamsSchema } from '../../src/backends/local/index.js';

describe('StorageClass parameter schemas', () => {
  it('applies defaults', () => {
    const share = toShareParams(parseWith(localParamsSchema, {}));
    assert.deepEqual(share, {
      subDir: '${pv.metadata.name}',
      onDelete: 'delete',
      mountPermissions: undefined,
      mountOptions: [],
    });
  });

  it('parses octal modes and option lists', () => {
    const share = toShareParams(
      parseWith(nfsParamsSchema, { mountPermissions: '0775', mountOptions: 'nfsvers=4.1,hard' }),
    );
    assert.equal(share.mountPermissions, 0o775);
    assert.deepEqual(share.mountOptions, ['nfsvers=4.1', 'hard']);
  });

  it('names an unknown key and lists the allowed ones', () => {
    assert.throws(
      () => parseWith(localParamsSchema, { mountOptions: 'x' }),
      /unknown parameter "mountOptions".*allowed keys: backend, subDir/,
    );
  });

  it('names the key of a bad value', () => {
    assert.throws(() => parseWith(localParamsSchema, { onDelete: 'shred' }), /parameter "onDelete"/);
    assert.throws(
      () => parseWith(localParamsSchema, { mountPermissions: '999' }),
      /parameter "mountPermissions"/,
    );
    assert.throws(
      () => parseWith(nfsParamsSchema, { mountOptions: 'a;rm -rf /' }),
      /parameter "mountOptions"/,
    );
  });

  it('leaves provisioner metadata out of the idempotency fingerprint', () => {
    assert.deepEqual(fingerprintParameters({ b: '2', 'csi.storage.k8s.io/pvc/name': 'x', a: '1' }), {
      a: '1',
      b: '2',
    });
  });
});
