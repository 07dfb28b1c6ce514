import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { REPO, listFiles } from './deploy-files.js';

/** The driver's own TypeScript sources (generated gRPC types excluded). */
export function sourceFiles(): string[] {
  return listFiles(join(REPO, 'src'), ['.ts']).filter(
    (f) => !f.includes('/src/generated/') && !f.endsWith('.d.ts'),
  );
}

function compilerOptions(): ts.CompilerOptions {
  const configPath = join(REPO, 'tsconfig.json');
  const config = ts.readConfigFile(configPath, ts.sys.readFile);
  return { ...ts.parseJsonConfigFileContent(config.config, ts.sys, REPO).options, noEmit: true };
}

/**
 * A type-checked program over `files`; `virtual` adds in-memory files (for the scanners' own
 * tests), resolved as if they sat at the given paths in the repository.
 */
export function createSourceProgram(files: string[], virtual: Record<string, string> = {}): ts.Program {
  const options = compilerOptions();
  const host = ts.createCompilerHost(options);
  const { fileExists, readFile, getSourceFile } = host;
  host.fileExists = (f) => f in virtual || fileExists(f);
  host.readFile = (f) => virtual[f] ?? readFile(f);
  host.getSourceFile = (f, lang, ...rest) =>
    f in virtual ? ts.createSourceFile(f, virtual[f]!, lang, true) : getSourceFile(f, lang, ...rest);
  return ts.createProgram([...files, ...Object.keys(virtual)], options, host);
}

export interface Located {
  file: string;
  line: number;
}

export function location(node: ts.Node): Located {
  const source = node.getSourceFile();
  return {
    file: source.fileName.replace(`${REPO}/`, ''),
    line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1,
  };
}

export function visitCalls(source: ts.SourceFile, visit: (call: ts.CallExpression) => void): void {
  const walk = (node: ts.Node): void => {
    if (ts.isCallExpression(node)) visit(node);
    ts.forEachChild(node, walk);
  };
  walk(source);
}

export const readSource = (file: string) => readFileSync(file, 'utf8');
