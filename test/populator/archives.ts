import { crc32, deflateRawSync, gzipSync } from 'node:zlib';

/**
 * Archive builders for tests. They write exactly the names and types given, including the hostile
 * ones (`../x`, absolute paths, links out) that real archivers refuse to produce.
 */

export type ArchiveEntry =
  | { type: 'file'; name: string; content: string | Buffer; mode?: number }
  | { type: 'dir'; name: string }
  | { type: 'symlink'; name: string; target: string }
  | { type: 'hardlink'; name: string; target: string };

const TAR_TYPES = { file: '0', hardlink: '1', symlink: '2', dir: '5' } as const;

export function tar(entries: ArchiveEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const body = entry.type === 'file' ? Buffer.from(entry.content) : Buffer.alloc(0);
    const header = Buffer.alloc(512);
    header.write(entry.name, 0, 100, 'utf8');
    const mode = entry.type === 'file' ? (entry.mode ?? 0o644) : entry.type === 'dir' ? 0o755 : 0o777;
    header.write(octal(mode, 8), 100);
    header.write(octal(0, 8), 108);
    header.write(octal(0, 8), 116);
    header.write(octal(body.length, 12), 124);
    header.write(octal(1_700_000_000, 12), 136);
    header.write('        ', 148);
    header.write(TAR_TYPES[entry.type], 156);
    if (entry.type === 'symlink' || entry.type === 'hardlink') header.write(entry.target, 157, 100, 'utf8');
    header.write('ustar\u000000', 257, 'latin1');
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'latin1');
    blocks.push(header, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

export const tarGz = (entries: ArchiveEntry[]) => gzipSync(tar(entries));

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\u0000`;
}

const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFDIR = 0o040000;

/** A zip archive; files are deflated (so a run of zeros makes a small "bomb"). */
export function zip(entries: ArchiveEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    if (entry.type === 'hardlink') throw new Error('zip has no hard links');
    const name = Buffer.from(
      entry.type === 'dir' && !entry.name.endsWith('/') ? `${entry.name}/` : entry.name,
    );
    const data =
      entry.type === 'file'
        ? Buffer.from(entry.content)
        : entry.type === 'symlink'
          ? Buffer.from(entry.target)
          : Buffer.alloc(0);
    const method = entry.type === 'file' ? 8 : 0;
    const stored = method === 8 ? deflateRawSync(data) : data;
    const mode =
      entry.type === 'file'
        ? S_IFREG | (entry.mode ?? 0o644)
        : entry.type === 'symlink'
          ? S_IFLNK | 0o777
          : S_IFDIR | 0o755;
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6); // names are UTF-8
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(stored.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(name.length, 26);
    locals.push(local, name, stored);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4); // made by Unix: external attributes carry the mode
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(stored.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE((mode << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += local.length + name.length + stored.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}
