#!/usr/bin/env node
import { readFile, writeFile } from 'node:fs/promises';
import { parameterDocs } from '../backends/param-docs.js';

/** Rewrites the generated parameter section between markers in the given markdown files. */
export const BEGIN = '<!-- BEGIN GENERATED PARAMETERS: npm run docs:params -->';
export const END = '<!-- END GENERATED PARAMETERS -->';

export function replaceGenerated(text: string, generated: string): string {
  const start = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (start < 0 || end < start) throw new Error('generated-parameter markers not found');
  return `${text.slice(0, start + BEGIN.length)}\n\n${generated}\n${text.slice(end)}`;
}

const files = process.argv.slice(2);
for (const file of files) {
  await writeFile(file, replaceGenerated(await readFile(file, 'utf8'), parameterDocs()));
  console.log(`updated ${file}`);
}
