#!/usr/bin/env node
import { readFile, writeFile } from 'node:fs/promises';
import { parameterDocs, replaceGenerated } from '../backends/param-docs.js';

// Rewrites the generated parameter tables in each markdown file named on the command line.
for (const file of process.argv.slice(2)) {
  await writeFile(file, replaceGenerated(await readFile(file, 'utf8'), parameterDocs()));
  console.log(`updated ${file}`);
}
