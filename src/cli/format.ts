/** Sizes and tables for svctl's human output. */

const BINARY_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** Kubernetes-style quantity suffixes: binary (Ki, Mi, ...) and decimal (k/K, M, G, T). */
const SIZE_SUFFIXES: Record<string, number> = {
  '': 1,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  k: 1e3,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
};

const SIZE_SYNTAX = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|K|M|G|T)?$/;

/**
 * Parses "1073741824", "1Gi", "512Mi", "1.5Gi" or "10G" into bytes. Fractions round up, as
 * Kubernetes does, so the result is never less than what was asked for.
 */
export function parseSize(text: string): number {
  const match = SIZE_SYNTAX.exec(text.trim());
  if (!match) {
    throw new Error(
      `invalid size "${text}": use bytes or a number with a suffix Ki, Mi, Gi, Ti (powers of 1024) or K, M, G, T (powers of 1000), e.g. 512Mi or 10G`,
    );
  }
  const bytes = Math.ceil(Number(match[1]) * SIZE_SUFFIXES[match[2] ?? '']!);
  if (!Number.isSafeInteger(bytes)) throw new Error(`invalid size "${text}": too large`);
  return bytes;
}

/** 1610612736 -> "1.5 GiB"; at most one decimal, none when the value is whole. */
export function formatBytes(value: number | string): string {
  let n = Number(value);
  let unit = 0;
  // Compare the rounded value, so that 1023.96 KiB prints as "1 MiB", not "1024 KiB".
  while (Math.round(Math.abs(n) * 10) / 10 >= 1024 && unit < BINARY_UNITS.length - 1) {
    n /= 1024;
    unit++;
  }
  const rounded = Math.round(n * 10) / 10;
  return `${Number.isInteger(rounded) ? rounded.toFixed(0) : rounded.toFixed(1)} ${BINARY_UNITS[unit]}`;
}

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, i) =>
    Math.max(header.length, ...rows.map((row) => (row[i] ?? '').length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [headers, ...rows].map(line).join('\n');
}

/** "label  value" lines with the values aligned, for one object's details. */
export function formatFields(fields: [label: string, value: string][]): string {
  const width = Math.max(...fields.map(([label]) => label.length));
  return fields.map(([label, value]) => `${`${label}:`.padEnd(width + 1)}  ${value}`).join('\n');
}
