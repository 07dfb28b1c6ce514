import winston from 'winston';

export type LogFormat = 'json' | 'text';

export function createLogger(level: string, format: LogFormat): winston.Logger {
  const formats =
    format === 'json'
      ? winston.format.combine(winston.format.timestamp(), winston.format.json())
      : winston.format.combine(
          winston.format.timestamp(),
          winston.format.printf(({ timestamp, level: lvl, message, ...fields }) => {
            const rest = Object.entries(fields)
              .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
              .join(' ');
            return `${String(timestamp)} ${lvl} ${String(message)}${rest ? ' ' + rest : ''}`;
          }),
        );
  return winston.createLogger({
    level,
    format: formats,
    transports: [new winston.transports.Console({ stderrLevels: [] })],
  });
}

/** Removes every occurrence of the given secret values from a message. */
export function scrub(message: string, secrets: Iterable<string>): string {
  let out = message;
  for (const secret of secrets) {
    if (secret.length >= 3) out = out.split(secret).join('[REDACTED]');
  }
  return out;
}
