import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { replaceGenerated } from '../../src/backends/param-docs.js';
import { SOURCE_KEY_MARKERS, sourceParameterDocs } from '../../src/populator/param-docs.js';
import { parseSourceParameters } from '../../src/populator/spec.js';

describe('populator key tables generated from the schemas', () => {
  const docs = sourceParameterDocs();
  const documentedKeys = [...docs.matchAll(/^\| `([A-Za-z0-9.]+)` \|/gm)].map((m) => m[1]!);

  it('documents keys the schema accepts, and no other', () => {
    assert.ok(documentedKeys.length >= 20, documentedKeys.join(' '));
    for (const key of ['source.git.sparsePaths', 'source.s3.forcePathStyle', 'limits.maxBytes', 'writable']) {
      assert.ok(documentedKeys.includes(key), key);
    }
    const sourceKeys = documentedKeys.filter((k) => k !== 'allowPVCSource' && k !== 'writable');
    for (const key of sourceKeys) {
      // Every documented key is known to the schema: a wrong value is refused naming it, never as unknown.
      const type = /^source\.(git|http|s3)\./.exec(key)?.[1] ?? 'http';
      try {
        parseSourceParameters({ 'source.type': type, [key]: '\u0000bad' });
      } catch (err) {
        assert.doesNotMatch((err as Error).message, new RegExp(`unknown parameter "${key}"`), key);
      }
    }
  });

  it('matches docs/populator.md exactly (run `npm run docs:params` after changing a schema)', () => {
    const text = readFileSync(new URL('../../../docs/populator.md', import.meta.url), 'utf8');
    assert.equal(replaceGenerated(text, docs, SOURCE_KEY_MARKERS), text);
  });
});
