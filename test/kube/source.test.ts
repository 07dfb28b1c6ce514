import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectKube, lazyKube, type KubeClientFactory } from '../../src/kube/client.js';
import { resolveVolumeSource, SOURCE_ANNOTATION } from '../../src/kube/source.js';
import { CsiError } from '../../src/rpc/errors.js';
import { startKubeApi, type KubeApiStandIn } from '../helpers/kube-api.js';
import { withEnv } from '../helpers/env.js';

const GIT_CLASS = {
  'source.type': 'git',
  'source.git.url': 'https://git.example.com/team/site.git',
  'source.secretRef.name': 'site-token',
  syncInterval: '2m',
  backend: 'local',
};

/** Asserts a CsiError with the code and a message matching `pattern`. */
function csiError(code: status, pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof CsiError, `expected a CsiError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return true;
  };
}

describe('kube/source: the effective source of a new volume', function () {
  this.timeout(30_000);
  let api: KubeApiStandIn;
  let dir: string;
  let restoreEnv: () => void;
  let kube: KubeClientFactory;
  const pvcCalls = () => api.requests.filter((r) => r.path.includes('/persistentvolumeclaims/')).length;

  before(async () => {
    api = await startKubeApi();
    dir = await mkdtemp(join(tmpdir(), 'sv-kube-source-'));
    restoreEnv = withEnv({ KUBECONFIG: await api.writeKubeconfig(dir) });
    kube = lazyKube(connectKube);
  });
  after(async () => {
    restoreEnv?.();
    await api?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('a class without source keys gives a plain volume, without any API call', async () => {
    const before = api.requests.length;
    assert.equal(await resolveVolumeSource({ parameters: { backend: 'local' }, kube }), undefined);
    assert.equal(api.requests.length, before);
  });

  it("takes the class's source; its Secret defaults to the PVC's namespace", async () => {
    const source = await resolveVolumeSource({
      parameters: GIT_CLASS,
      pvc: { namespace: 'team-a', name: 'site' },
      kube,
    });
    assert.equal(source?.origin, 'storageclass');
    assert.equal(source?.spec.git?.url, 'https://git.example.com/team/site.git');
    assert.equal(source?.spec.syncInterval, 120_000);
    assert.deepEqual(source?.secretRef, { namespace: 'team-a', name: 'site-token' });
    assert.deepEqual(source?.pvc, { namespace: 'team-a', name: 'site' });
  });

  it("a class may name a Secret in any namespace; without one and without the PVC's, it must", async () => {
    const withNs = await resolveVolumeSource({
      parameters: { ...GIT_CLASS, 'source.secretRef.namespace': 'sharedvolume-csi' },
      pvc: { namespace: 'team-a', name: 'site' },
      kube,
    });
    assert.deepEqual(withNs?.secretRef, { namespace: 'sharedvolume-csi', name: 'site-token' });
    await assert.rejects(
      resolveVolumeSource({ parameters: GIT_CLASS, kube }),
      csiError(status.INVALID_ARGUMENT, /parameter "source\.secretRef\.namespace": required/),
    );
  });

  it('refuses a bad class key by name', async () => {
    await assert.rejects(
      resolveVolumeSource({ parameters: { ...GIT_CLASS, 'source.git.branch': 'main' }, kube }),
      csiError(status.INVALID_ARGUMENT, /unknown parameter "source\.git\.branch"/),
    );
    await assert.rejects(
      resolveVolumeSource({ parameters: { ...GIT_CLASS, allowPVCSource: 'yes' }, kube }),
      csiError(status.INVALID_ARGUMENT, /parameter "allowPVCSource": must be "true" or "false"/),
    );
  });

  it('ignores the annotation unless the class sets allowPVCSource: "true" (the PVC is not even read)', async () => {
    api.setPvc('team-a', 'sneaky', {
      [SOURCE_ANNOTATION]: 'type: http\nhttp: { url: "https://evil.example.com/x.tar" }\n',
    });
    const before = pvcCalls();
    const source = await resolveVolumeSource({
      parameters: { backend: 'local' },
      pvc: { namespace: 'team-a', name: 'sneaky' },
      kube,
    });
    assert.equal(source, undefined);
    assert.equal(pvcCalls(), before);
  });

  it("with allowPVCSource, the annotation is the source, and the class's keys are its defaults", async () => {
    const uid = api.setPvc('team-a', 'docs', {
      [SOURCE_ANNOTATION]: [
        'type: git',
        'git:',
        '  url: https://git.example.com/team/docs.git',
        '  ref: v2.4.0',
        '  sparsePaths: [public]',
        'secretRef: { name: docs-git }',
        'publish: symlink',
      ].join('\n'),
    });
    const source = await resolveVolumeSource({
      parameters: { allowPVCSource: 'true', syncInterval: '10m', syncMode: 'additive', backend: 'nfs' },
      pvc: { namespace: 'team-a', name: 'docs' },
      kube,
    });
    assert.equal(source?.origin, 'pvc');
    assert.deepEqual(source?.pvc, { namespace: 'team-a', name: 'docs', uid });
    assert.equal(source?.spec.git?.ref, 'v2.4.0');
    assert.deepEqual(source?.spec.git?.sparsePaths, ['public']);
    assert.equal(source?.spec.publish, 'symlink', 'the annotation overrides');
    assert.equal(source?.spec.syncInterval, 600_000, 'the class default applies');
    assert.equal(source?.spec.syncMode, 'additive');
    assert.deepEqual(source?.secretRef, { namespace: 'team-a', name: 'docs-git' });
  });

  it('a PVC may only use Secrets in its own namespace', async () => {
    api.setPvc('team-a', 'steal', {
      [SOURCE_ANNOTATION]:
        'type: http\nhttp: { url: "https://h.example.com/a.tar" }\nsecretRef: { name: db-root, namespace: kube-system }\n',
    });
    await assert.rejects(
      resolveVolumeSource({
        parameters: { allowPVCSource: 'true' },
        pvc: { namespace: 'team-a', name: 'steal' },
        kube,
      }),
      csiError(
        status.INVALID_ARGUMENT,
        /PVC team-a\/steal: parameter "secretRef\.namespace": a PVC may only use Secrets in its own namespace "team-a"/,
      ),
    );
    // Naming its own namespace explicitly is fine.
    api.setPvc('team-a', 'own', {
      [SOURCE_ANNOTATION]:
        'type: http\nhttp: { url: "https://h.example.com/a.tar" }\nsecretRef: { name: mine, namespace: team-a }\n',
    });
    const own = await resolveVolumeSource({
      parameters: { allowPVCSource: 'true' },
      pvc: { namespace: 'team-a', name: 'own' },
      kube,
    });
    assert.deepEqual(own?.secretRef, { namespace: 'team-a', name: 'mine' });
  });

  it('names the annotation key at fault, and refuses YAML that is not a mapping', async () => {
    const cases: [string, RegExp][] = [
      [
        'type: git\ngit: { url: "file:///etc" }\n',
        /annotation "sharedvolume\.io\/source" of PVC team-a\/bad: parameter "git\.url"/,
      ],
      ['type: s3\ns3: { bucket: b1, color: red }\n', /unknown parameter "s3\.color"/],
      ['type: http\nhttp: { url: "https://h/x" }\nsyncInterval: 1s\n', /parameter "syncInterval"/],
      ['- a\n- b\n', /must be a YAML mapping/],
      ['type: [unclosed\n', /not valid YAML/],
    ];
    for (const [yaml, pattern] of cases) {
      api.setPvc('team-a', 'bad', { [SOURCE_ANNOTATION]: yaml });
      await assert.rejects(
        resolveVolumeSource({
          parameters: { allowPVCSource: 'true' },
          pvc: { namespace: 'team-a', name: 'bad' },
          kube,
        }),
        csiError(status.INVALID_ARGUMENT, pattern),
      );
    }
  });

  it("the class's limits are ceilings the annotation may lower but not raise", async () => {
    api.setPvc('team-a', 'big', {
      [SOURCE_ANNOTATION]:
        'type: http\nhttp: { url: "https://h.example.com/a.tar" }\nlimits: { maxBytes: 10Gi, maxFiles: 10 }\n',
    });
    const source = await resolveVolumeSource({
      parameters: { allowPVCSource: 'true', 'limits.maxBytes': '1Gi', 'limits.maxFiles': '1000' },
      pvc: { namespace: 'team-a', name: 'big' },
      kube,
    });
    assert.equal(source?.spec.limits.maxBytes, 2 ** 30);
    assert.equal(source?.spec.limits.maxFiles, 10);
  });

  it('with allowPVCSource and no annotation: the class source if any, else a plain volume', async () => {
    api.setPvc('team-a', 'plain');
    assert.equal(
      await resolveVolumeSource({
        parameters: { allowPVCSource: 'true', syncInterval: '10m' },
        pvc: { namespace: 'team-a', name: 'plain' },
        kube,
      }),
      undefined,
    );
    const fallback = await resolveVolumeSource({
      parameters: { ...GIT_CLASS, allowPVCSource: 'true' },
      pvc: { namespace: 'team-a', name: 'plain' },
      kube,
    });
    assert.equal(fallback?.origin, 'storageclass');
    assert.ok(fallback?.pvc?.uid, 'the PVC was read, so Events get its uid');
  });

  it("validates the class's defaults even when every PVC brings its own source", async () => {
    api.setPvc('team-a', 'plain');
    await assert.rejects(
      resolveVolumeSource({
        parameters: { allowPVCSource: 'true', syncInterval: 'often' },
        pvc: { namespace: 'team-a', name: 'plain' },
        kube,
      }),
      csiError(status.INVALID_ARGUMENT, /^parameter "syncInterval"/),
    );
  });

  it('allowPVCSource needs the PVC name and namespace (--extra-create-metadata)', async () => {
    await assert.rejects(
      resolveVolumeSource({ parameters: { allowPVCSource: 'true' }, kube }),
      csiError(status.INVALID_ARGUMENT, /parameter "allowPVCSource".*--extra-create-metadata/),
    );
  });

  it('a missing PVC is NOT_FOUND; an unreachable API is UNAVAILABLE', async () => {
    await assert.rejects(
      resolveVolumeSource({
        parameters: { allowPVCSource: 'true' },
        pvc: { namespace: 'team-a', name: 'gone' },
        kube,
      }),
      csiError(status.NOT_FOUND, /persistentvolumeclaims "gone" not found/),
    );
    const unreachable: KubeClientFactory = async () => {
      throw new Error('no Kubernetes API: set KUBECONFIG or run in a cluster');
    };
    await assert.rejects(
      resolveVolumeSource({
        parameters: { allowPVCSource: 'true' },
        pvc: { namespace: 'team-a', name: 'x' },
        kube: unreachable,
      }),
      csiError(status.UNAVAILABLE, /no Kubernetes API/),
    );
  });
});
