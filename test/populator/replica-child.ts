/**
 * One controller replica's populator, in its own process, for tests of two replicas on one
 * backend. The first stdin line is its JSON config; each further line is a command:
 * `sync <volume id>` (sync now) or `stop`. It prints its log as JSON lines (with timestamps) and
 * `ready` once started.
 */
import { createInterface } from 'node:readline';
import winston from 'winston';
import { PopulatorService } from '../../src/populator/service.js';

interface Config {
  stateRoot: string;
  owner: string;
  leaseDurationMs: number;
}

const lines = createInterface({ input: process.stdin });
const iterator = lines[Symbol.asyncIterator]();
const config = JSON.parse((await iterator.next()).value as string) as Config;
const logger = winston.createLogger({
  level: 'debug',
  format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
  defaultMeta: { owner: config.owner },
  transports: [new winston.transports.Console()],
});
const service = new PopulatorService({
  logger,
  stateRoots: async () => [config.stateRoot],
  owner: config.owner,
  leaseDurationMs: config.leaseDurationMs,
  leaseRetryMs: 50,
  kube: async () => {
    throw new Error('no Kubernetes API in this test');
  },
});
await service.start();
process.stdout.write('ready\n');
for await (const line of { [Symbol.asyncIterator]: () => iterator }) {
  const [command, argument] = line.split(' ');
  if (command === 'sync') await service.syncNow(argument!);
  if (command === 'stop') break;
}
await service.stop();
process.exit(0);
