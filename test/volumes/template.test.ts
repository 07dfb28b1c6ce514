import assert from 'node:assert/strict';
import { renderSubDir } from '../../src/volumes/template.js';

const meta = {
  'csi.storage.k8s.io/pvc/name': 'data',
  'csi.storage.k8s.io/pvc/namespace': 'team1',
  'csi.storage.k8s.io/pv/name': 'pvc-123',
};

describe('subDir templates', () => {
  it('expands PVC and PV metadata', () => {
    assert.equal(
      renderSubDir('${pvc.metadata.namespace}/${pvc.metadata.name}', 'pvc-123', meta),
      'team1/data',
    );
    assert.equal(renderSubDir('vols/${pv.metadata.name}', 'pvc-123', meta), 'vols/pvc-123');
  });

  it('uses the volume name when no PV name was passed', () => {
    assert.equal(renderSubDir('${pv.metadata.name}', 'vol-7', {}), 'vol-7');
  });

  it('names subDir when a variable is unknown', () => {
    assert.throws(() => renderSubDir('${pvc.spec.x}', 'v', meta), /subDir.*unknown variable/);
  });

  it('names the missing provisioner metadata', () => {
    assert.throws(() => renderSubDir('${pvc.metadata.name}', 'v', {}), /extra-create-metadata/);
  });

  it('refuses results that escape the root', () => {
    assert.throws(() => renderSubDir('../${pv.metadata.name}', 'v', meta), /subDir/);
    assert.throws(
      () => renderSubDir('${pvc.metadata.name}', 'v', { 'csi.storage.k8s.io/pvc/name': '../../etc' }),
      /subDir/,
    );
    assert.throws(() => renderSubDir('/abs/${pv.metadata.name}', 'v', meta), /subDir/);
  });
});
