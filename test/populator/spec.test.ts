import assert from 'node:assert/strict';
import {
  classDefaults,
  classMayHaveSource,
  parseDuration,
  parseSize,
  parseSourceParameters,
  parseSourceSpec,
  SourceSpecError,
  sourceIdentity,
  splitSourceParameters,
} from '../../src/populator/spec.js';

describe('populator source spec', () => {
  it('turns flat StorageClass keys into a spec with defaults', () => {
    const spec = parseSourceParameters({
      'source.type': 'git',
      'source.git.url': 'https://git.example.com/team/repo.git',
      backend: 'local',
    });
    assert.deepEqual(spec, {
      type: 'git',
      git: {
        url: 'https://git.example.com/team/repo.git',
        ref: 'HEAD',
        depth: 1,
        submodules: false,
        sparsePaths: [],
      },
      syncInterval: 300_000,
      syncTimeout: 600_000,
      syncMode: 'mirror',
      publish: 'files',
      limits: { maxFiles: 1_000_000 },
    });
  });

  it('parses every key of every source', () => {
    const git = parseSourceParameters({
      'source.type': 'git',
      'source.git.url': 'git@github.com:org/repo.git',
      'source.git.ref': 'v1.2.3',
      'source.git.depth': '0',
      'source.git.submodules': 'true',
      'source.git.sparsePaths': 'docs, charts/app',
      'source.secretRef.name': 'repo-creds',
      syncInterval: '1h30m',
      syncTimeout: '90s',
      syncMode: 'additive',
      publish: 'symlink',
      'limits.maxBytes': '2Gi',
      'limits.maxFiles': '5000',
    })!;
    assert.deepEqual(git.git, {
      url: 'git@github.com:org/repo.git',
      ref: 'v1.2.3',
      depth: 0,
      submodules: true,
      sparsePaths: ['docs', 'charts/app'],
    });
    assert.deepEqual(git.secretRef, { name: 'repo-creds' });
    assert.equal(git.syncInterval, 5_400_000);
    assert.equal(git.syncTimeout, 90_000);
    assert.deepEqual(git.limits, { maxBytes: 2 * 2 ** 30, maxFiles: 5000 });

    const s3 = parseSourceParameters({
      'source.type': 's3',
      'source.s3.bucket': 'releases',
      'source.s3.prefix': 'app/v2/',
      'source.s3.endpoint': 'https://minio.example.com:9000',
      'source.s3.region': 'eu-west-1',
      'source.s3.forcePathStyle': 'true',
      syncInterval: '0',
    })!;
    assert.deepEqual(s3.s3, {
      bucket: 'releases',
      prefix: 'app/v2/',
      endpoint: 'https://minio.example.com:9000',
      region: 'eu-west-1',
      forcePathStyle: true,
    });
    assert.equal(s3.syncInterval, 0);

    const http = parseSourceParameters({
      'source.type': 'http',
      'source.http.url': 'https://example.com/a.tgz',
    })!;
    assert.deepEqual(http.http, { url: 'https://example.com/a.tgz' });
  });

  it('returns undefined for a class without a source', () => {
    assert.equal(parseSourceParameters({ backend: 'nfs', subDir: 'x' }), undefined);
  });

  it('names an unknown key', () => {
    assert.throws(
      () =>
        parseSourceParameters({
          'source.type': 'git',
          'source.git.url': 'https://h/r',
          'source.git.branch': 'x',
        }),
      (err: unknown) =>
        err instanceof SourceSpecError &&
        /unknown parameter "source\.git\.branch"/.test(err.message) &&
        err.keys.includes('source.git.branch'),
    );
    assert.throws(
      () =>
        parseSourceParameters({
          'source.type': 'git',
          'source.git.url': 'https://h/r',
          'source.gti.url': 'x',
        }),
      /unknown parameter "source\.gti"/,
    );
  });

  it('names the key of a bad value', () => {
    const base = { 'source.type': 'git', 'source.git.url': 'https://h/r' };
    assert.throws(
      () => parseSourceParameters({ ...base, syncInterval: 'often' }),
      /parameter "syncInterval"/,
    );
    assert.throws(
      () => parseSourceParameters({ ...base, syncInterval: '2s' }),
      /"syncInterval".*at least 10s/,
    );
    assert.throws(() => parseSourceParameters({ ...base, syncMode: 'sync' }), /parameter "syncMode"/);
    assert.throws(
      () => parseSourceParameters({ ...base, 'source.git.depth': '-1' }),
      /parameter "source\.git\.depth"/,
    );
    assert.throws(
      () => parseSourceParameters({ ...base, 'limits.maxBytes': '10 GB' }),
      /parameter "limits\.maxBytes"/,
    );
    assert.throws(
      () => parseSourceParameters({ ...base, 'source.git.ref': '--upload-pack=x' }),
      /"source\.git\.ref"/,
    );
    assert.throws(() => parseSourceParameters({ 'source.type': 'svn' }), /parameter "source\.type"/);
    assert.throws(
      () => parseSourceParameters({ 'source.type': 'git' }),
      /parameter "source\.git": is required/,
    );
    assert.throws(
      () => parseSourceParameters({ ...base, 'source.s3.bucket': 'abc' }),
      /parameter "source\.s3": is not allowed when type is "git"/,
    );
    assert.throws(() => parseSourceParameters({ syncInterval: '5m' }), /"syncInterval" needs a source/);
  });

  it('refuses URLs that carry credentials or reach the local machine', () => {
    const git = (url: string) => () => parseSourceParameters({ 'source.type': 'git', 'source.git.url': url });
    assert.throws(git('https://user:tok@h/r.git'), /"source\.git\.url": must not contain credentials/);
    assert.throws(git('https://tok@h/r.git'), /must not contain credentials/);
    assert.throws(git('file:///etc'), /"source\.git\.url"/);
    assert.throws(git('/srv/repo.git'), /"source\.git\.url"/);
    assert.throws(git('ext::sh -c touch% /tmp/x'), /"source\.git\.url"/);
    assert.throws(git('ssh://-oProxyCommand=x/r'), /"source\.git\.url"/);
    assert.doesNotThrow(git('ssh://git@h:2222/r.git'));
    const http = (url: string) => () =>
      parseSourceParameters({ 'source.type': 'http', 'source.http.url': url });
    assert.throws(http('https://u:p@example.com/a.tgz'), /"source\.http\.url": must not contain credentials/);
    assert.throws(http('ftp://example.com/a.tgz'), /"source\.http\.url"/);
  });

  it('parses the YAML form of the PVC annotation with the same schema', () => {
    const spec = parseSourceSpec({
      type: 'git',
      git: { url: 'https://h/r', depth: 3, submodules: true, sparsePaths: ['a', 'b/c'] },
      syncInterval: '10m',
      publish: 'symlink',
    });
    assert.equal(spec.git!.depth, 3);
    assert.deepEqual(spec.git!.sparsePaths, ['a', 'b/c']);
    assert.throws(
      () => parseSourceSpec({ type: 'git', git: { url: 'https://h/r', sparse: ['a'] } }),
      /"git\.sparse"/,
    );
    assert.throws(
      () => parseSourceSpec({ type: 'git', git: { url: 'https://h/r', sparsePaths: ['../etc'] } }),
      /"git\.sparsePaths\.0"/,
    );
  });

  it('splits StorageClass parameters between populator and backend', () => {
    assert.deepEqual(
      splitSourceParameters({ 'source.type': 'http', syncMode: 'mirror', backend: 'b', onDelete: 'retain' }),
      { source: { 'source.type': 'http', syncMode: 'mirror' }, rest: { backend: 'b', onDelete: 'retain' } },
    );
  });

  it('tells which classes may have populated volumes (whose sync state goes with them)', () => {
    assert.equal(classMayHaveSource({ 'source.type': 'git', backend: 'b' }), true);
    assert.equal(classMayHaveSource({ allowPVCSource: 'true' }), true);
    assert.equal(classMayHaveSource({ allowPVCSource: 'false', syncInterval: '1m', backend: 'b' }), false);
    assert.equal(classMayHaveSource({}), false);
  });

  it('allowPVCSource belongs to the populator but is a policy, not part of the spec', () => {
    assert.deepEqual(splitSourceParameters({ allowPVCSource: 'true', backend: 'b' }), {
      source: { allowPVCSource: 'true' },
      rest: { backend: 'b' },
    });
    assert.equal(parseSourceParameters({ allowPVCSource: 'true' }), undefined);
    const spec = parseSourceParameters({
      allowPVCSource: 'true',
      'source.type': 'http',
      'source.http.url': 'https://h/a.tgz',
    });
    assert.equal(spec?.http?.url, 'https://h/a.tgz');
    assert.deepEqual(classDefaults({ syncInterval: '10m', 'limits.maxBytes': '1Gi', 'source.type': 'git' }), {
      syncInterval: '10m',
      limits: { maxBytes: '1Gi' },
    });
  });

  it('changes identity when the data source changes, not when the schedule does', () => {
    const a = parseSourceSpec({ type: 'http', http: { url: 'https://h/a.tgz' } });
    const b = parseSourceSpec({ type: 'http', http: { url: 'https://h/a.tgz' }, syncInterval: '1h' });
    const c = parseSourceSpec({ type: 'http', http: { url: 'https://h/b.tgz' } });
    assert.equal(sourceIdentity(a), sourceIdentity(b));
    assert.notEqual(sourceIdentity(a), sourceIdentity(c));
  });

  it('parses durations and sizes', () => {
    assert.equal(parseDuration('0'), 0);
    assert.equal(parseDuration('1h2m3s'), 3_723_000);
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('5'), undefined);
    assert.equal(parseDuration('5m '), undefined);
    assert.equal(parseSize('1Ki'), 1024);
    assert.equal(parseSize('3M'), 3_000_000);
    assert.equal(parseSize('42'), 42);
    assert.equal(parseSize('1.5Gi'), undefined);
  });
});
