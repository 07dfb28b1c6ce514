import { readFile } from 'node:fs/promises';

/** One line of /proc/self/mountinfo (see proc(5)). */
export interface MountEntry {
  mountId: number;
  parentId: number;
  device: string;
  /** Path inside the source filesystem that is mounted here (differs from "/" for bind mounts). */
  root: string;
  mountPoint: string;
  mountOptions: string[];
  fsType: string;
  source: string;
  superOptions: string[];
}

// mountinfo escapes space, tab, newline and backslash as \ooo octal.
function unescapeOctal(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountInfoLine(line: string): MountEntry {
  const fields = line.split(' ');
  const separator = fields.indexOf('-', 6);
  if (fields.length < 10 || separator < 0 || fields.length < separator + 4) {
    throw new Error(`malformed mountinfo line: ${JSON.stringify(line)}`);
  }
  return {
    mountId: Number(fields[0]),
    parentId: Number(fields[1]),
    device: fields[2]!,
    root: unescapeOctal(fields[3]!),
    mountPoint: unescapeOctal(fields[4]!),
    mountOptions: fields[5]!.split(','),
    fsType: fields[separator + 1]!,
    source: unescapeOctal(fields[separator + 2]!),
    superOptions: fields[separator + 3]!.split(','),
  };
}

export function parseMountInfo(text: string): MountEntry[] {
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map(parseMountInfoLine);
}

export async function readMountTable(path = '/proc/self/mountinfo'): Promise<MountEntry[]> {
  return parseMountInfo(await readFile(path, 'utf8'));
}

/** The topmost mount at exactly `mountPoint`, if any (later lines stack on earlier ones). */
export function mountAt(table: MountEntry[], mountPoint: string): MountEntry | undefined {
  for (let i = table.length - 1; i >= 0; i--) {
    if (table[i]!.mountPoint === mountPoint) return table[i];
  }
  return undefined;
}

export function isReadOnly(entry: MountEntry): boolean {
  return entry.mountOptions.includes('ro');
}
