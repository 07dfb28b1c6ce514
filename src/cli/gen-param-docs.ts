#!/usr/bin/env node
import { readFile, writeFile } from 'node:fs/promises';
import { PARAMETER_MARKERS, parameterDocs, replaceGenerated } from '../backends/param-docs.js';
import { SOURCE_KEY_MARKERS, sourceParameterDocs } from '../populator/param-docs.js';

// Rewrites the tables generated from the parameter schemas (run from the repository root).
const targets = [
  { file: 'README.md', generated: parameterDocs(), markers: PARAMETER_MARKERS },
  { file: 'docs/populator.md', generated: sourceParameterDocs(), markers: SOURCE_KEY_MARKERS },
];
for (const { file, generated, markers } of targets) {
  await writeFile(file, replaceGenerated(await readFile(file, 'utf8'), generated, markers));
  console.log(`updated ${file}`);
}
