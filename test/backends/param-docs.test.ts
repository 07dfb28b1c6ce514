import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parameterDocs, parameterTable, replaceGenerated } from '../../src/backends/param-docs.js';
import { nfsParamsSchema } from '../../src/backends/nfs/index.js';

describe('parameter docs generated from the schemas', () => {
  it('lists every schema key with its default', () => {
    const table = parameterTable(nfsParamsSchema);
    for (const key of Object.keys(nfsParamsSchema.shape)) assert.ok(table.includes(`| \`${key}\` |`), key);
    assert.match(table, /\| `onDelete` \|.*\| `delete` \|$/m);
  });

  it('matches the README exactly (run `npm run docs:params` after changing a schema)', () => {
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
    assert.equal(replaceGenerated(readme, parameterDocs()), readme);
  });
});
