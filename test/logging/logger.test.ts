import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);
const LOGGER = new URL('../../src/logging/logger.js', import.meta.url).href;

/** Runs `body` in a fresh Node process that has imported the driver's logger module; returns its output. */
async function inChild(body: string): Promise<{ stdout: string; stderr: string }> {
  const script = `import { createLogger, logProcessWarnings } from ${JSON.stringify(LOGGER)};\n${body}`;
  return run(process.execPath, ['--input-type=module', '-e', script]);
}

const WARNING =
  "process.emitWarning('first line\\nsecond line', { type: 'DeprecationWarning', code: 'DEP0999' });";

describe('logger', () => {
  it('writes one JSON line per entry to stdout, with level, message, fields and a timestamp', async () => {
    const { stdout, stderr } = await inChild(
      `createLogger('info', 'json').info('rpc', { method: 'Probe', code: 'OK' });`,
    );
    assert.equal(stderr, '');
    const lines = stdout.trim().split('\n');
    assert.equal(lines.length, 1);
    const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.deepEqual([entry.level, entry.message, entry.method, entry.code], ['info', 'rpc', 'Probe', 'OK']);
    assert.ok(!Number.isNaN(Date.parse(String(entry.timestamp))));
  });

  it('turns process warnings into log lines instead of Node’s multi-line text on stderr', async () => {
    const plain = await inChild(WARNING);
    assert.match(plain.stderr, /DeprecationWarning: first line/, 'Node prints it by default');

    const { stdout, stderr } = await inChild(`logProcessWarnings(createLogger('info', 'json'));\n${WARNING}`);
    assert.equal(stderr, '');
    const lines = stdout.trim().split('\n');
    assert.equal(lines.length, 1);
    const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(entry.level, 'warn');
    assert.equal(entry.warning, 'DeprecationWarning');
    assert.equal(entry.code, 'DEP0999');
    assert.equal(entry.detail, 'first line\nsecond line');
  });
});
