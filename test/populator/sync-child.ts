/**
 * Runs one syncOnce in its own process so a test can kill it with SIGKILL mid-sync. The options
 * (credentials included) arrive as JSON on stdin, never in argv. Prints one line per progress
 * report ("progress <phase> <files>") and "done <json>" at the end.
 */
import { syncOnce, type SyncOptions } from '../../src/populator/index.js';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const options = JSON.parse(input) as SyncOptions;
const result = await syncOnce({
  ...options,
  onProgress: (p) => process.stdout.write(`progress ${p.phase} ${p.files}\n`),
});
process.stdout.write(`done ${JSON.stringify(result)}\n`);
