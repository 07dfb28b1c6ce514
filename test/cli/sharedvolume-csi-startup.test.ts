import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { rpc } from '../../src/cli/csi-client.js';
import { PACKAGE_ROOT } from '../../src/package-root.js';
import { mountCapability } from '../helpers/csi.js';
import { startDriver } from '../helpers/driver.js';

const TRACE = fileURLToPath(new URL('../../../test/fixtures/module-trace/trace.mjs', import.meta.url));

/**
 * The modules a loaded file holds: itself, or for a file of the driver's bundle the modules esbuild put
 * into it (scripts/bundle.mjs records them), so what the driver loaded reads the same bundled or not.
 */
async function sourceModules(loaded: string[]): Promise<string[]> {
  const meta = JSON.parse(await readFile(join(PACKAGE_ROOT, 'dist', 'bundle-meta.json'), 'utf8')) as {
    outputs: Record<string, { inputs: Record<string, unknown> }>;
  };
  return loaded.flatMap((location) => {
    const path = location.startsWith('file:') ? fileURLToPath(location) : location;
    const output = meta.outputs[relative(PACKAGE_ROOT, path)];
    return output ? Object.keys(output.inputs).map((input) => join(PACKAGE_ROOT, input)) : [path];
  });
}

/**
 * Modules that only optional features need: loading them at start costs the driver over 10 MiB. The
 * populator's flags and its parameter schema (which CreateVolume splits the parameters with) are small.
 */
const OPTIONAL =
  /\/dist\/src\/populator\/(?!flags\.js$|spec\.js$)|\/node_modules\/(@aws-sdk|@kubernetes|yaml|tar|yauzl)\//;

/** Runs the real driver with `args`, makes and deletes one volume, and returns the modules it loaded. */
async function modulesLoaded(dir: string, args: string[]): Promise<string[]> {
  const trace = join(dir, 'modules.txt');
  const driver = await startDriver({
    args,
    env: { NODE_OPTIONS: `--import=${pathToFileURL(TRACE).href}`, MODULE_TRACE_FILE: trace },
  });
  try {
    const created = await rpc(driver.controller, 'CreateVolume', {
      name: 'startup-probe',
      volume_capabilities: [mountCapability()],
    });
    await rpc(driver.controller, 'DeleteVolume', { volume_id: created.volume!.volume_id });
  } finally {
    assert.equal(await driver.stop(), 0);
  }
  const files = (await readFile(trace, 'utf8')).split('\n').filter(Boolean);
  assert.ok(
    files.some((f) => f.endsWith('/dist/bundle/sharedvolume-csi.js')),
    'the launcher runs the bundle',
  );
  const loaded = await sourceModules(files);
  assert.ok(
    loaded.some((m) => m.endsWith('/dist/src/driver.js')),
    'the trace saw the driver load (else it proves nothing)',
  );
  return loaded;
}

describe('sharedvolume-csi start-up', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-startup-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('loads neither the populator, its SDKs nor the YAML parser when they are not asked for', async () => {
    const loaded = await modulesLoaded(dir, ['--local-root', join(dir, 'root')]);
    assert.deepEqual(
      loaded.filter((m) => OPTIONAL.test(m)),
      [],
    );
  });

  it('loads the YAML parser for --backends FILE', async () => {
    const file = join(dir, 'backends.yaml');
    await writeFile(file, `backends:\n  - name: local\n    kind: local\n    root: ${join(dir, 'root')}\n`);
    const loaded = await modulesLoaded(dir, ['--backends', file]);
    assert.ok(loaded.some((m) => m.includes('/node_modules/yaml/')));
  });
});
