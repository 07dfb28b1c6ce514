/**
 * Child-process entry of test/helpers/s3rver.ts. Runs under `node --openssl-legacy-provider`: s3rver's
 * ListObjectsV2 continuation tokens use DES, which OpenSSL 3 disables (every listing of more than
 * 1,000 keys fails with HTTP 500 otherwise).
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// s3rver ships no types.
const S3rver = require('s3rver') as new (options: Record<string, unknown>) => { run(): Promise<unknown> };

const [port, directory, ...buckets] = process.argv.slice(2);
new S3rver({
  port: Number(port),
  address: '127.0.0.1',
  silent: true,
  directory,
  configureBuckets: buckets.map((name) => ({ name })),
})
  .run()
  .then(() => process.stdout.write('ready\n'))
  .catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
