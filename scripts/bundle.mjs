// Bundles the driver as tsc compiled it (dist/src/cli/sharedvolume-csi.js) into dist/bundle/, which
// bin/sharedvolume-csi runs. V8 keeps the source text of every loaded module in the heap, as two-byte
// strings where a file holds any non-Latin-1 character (zod's do); a bundle written in ASCII without
// comments or indentation, a handful of files instead of some 400 modules, leaves about 2 MiB less
// resident memory (npm run bench). Names are kept, so stack traces in logs stay readable.
import { build } from 'esbuild';
import { rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = 'dist/bundle';

await rm(join(ROOT, OUT), { recursive: true, force: true });
const { metafile } = await build({
  // Paths below, and those in the metafile, are relative to the package root.
  absWorkingDir: ROOT,
  entryPoints: { 'sharedvolume-csi': 'dist/src/cli/sharedvolume-csi.js' },
  outdir: OUT,
  bundle: true,
  // What src/ imports on first use (the populator, archive tools) becomes files of its own, loaded then.
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  charset: 'ascii',
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  // Large SDKs the driver loads only for the features that need them: resolved from node_modules then.
  external: ['@aws-sdk/*', '@kubernetes/client-node'],
  // The CommonJS packages inside call require() for Node's built-in modules.
  banner: {
    js: "import { createRequire as __bundleRequire } from 'node:module'; const require = __bundleRequire(import.meta.url);",
  },
  metafile: true,
  logLevel: 'warning',
});
// Which modules went into which file, beside the bundle (the image does not need it): the start-up test
// reads it to tell which modules a chunk the driver loaded holds.
await writeFile(join(ROOT, 'dist', 'bundle-meta.json'), JSON.stringify(metafile));
