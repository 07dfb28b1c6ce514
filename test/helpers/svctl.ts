import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { SVCTL_BIN } from './driver.js';

export interface SvctlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the compiled svctl as an operator would, with extra environment variables if given. */
export function runSvctl(args: string[], env: Record<string, string> = {}): Promise<SvctlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SVCTL_BIN, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The output of a successful run: exit 0 and nothing on stderr. */
export function ok(result: SvctlResult): string {
  assert.equal(result.code, 0, `svctl failed: ${result.stderr}`);
  assert.equal(result.stderr, '');
  return result.stdout;
}
