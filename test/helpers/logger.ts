import { Writable } from 'node:stream';
import winston from 'winston';

/** A winston logger whose JSON lines the test can read (and check for leaked secrets). */
export function captureLogger(): {
  logger: winston.Logger;
  lines: () => Record<string, unknown>[];
  text: () => string;
} {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      out.push(chunk.toString());
      callback();
    },
  });
  const logger = winston.createLogger({
    level: 'debug',
    format: winston.format.json(),
    transports: [new winston.transports.Stream({ stream })],
  });
  return {
    logger,
    lines: () =>
      out.flatMap((l) => l.split('\n').filter(Boolean)).map((l) => JSON.parse(l) as Record<string, unknown>),
    text: () => out.join(''),
  };
}
