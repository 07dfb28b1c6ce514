import { createReadStream } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import { Parser, type ReadEntry } from 'tar';
import yauzl from 'yauzl';
import { syncError, SyncError } from './errors.js';
import { printable } from './paths.js';
import type { Publication } from './publish.js';

/**
 * Unpacks tar (plain, gzip or zstd) and zip archives into a Publication. Every name and link target
 * goes through the publication's safety checks; hard links become copies; devices and FIFOs are
 * refused. The tar parser's decompression-ratio guard and the publication's limits stop bombs.
 */

export type ArchiveFormat = 'tar' | 'zip' | 'file';

/** Recognises the format by its first bytes, not by a name or Content-Type the server chose. */
export async function detectFormat(path: string): Promise<ArchiveFormat> {
  const file = await openFile(path, 'r');
  try {
    const head = Buffer.alloc(512);
    const { bytesRead } = await file.read(head, 0, 512, 0);
    const bytes = head.subarray(0, bytesRead);
    if (bytes[0] === 0x50 && bytes[1] === 0x4b && (bytes[2] === 3 || bytes[2] === 5)) return 'zip';
    if (bytes[0] === 0x1f && bytes[1] === 0x8b) return 'tar'; // gzip: only tar.gz is supported
    if (bytesRead >= 4 && bytes.readUInt32LE(0) === 0xfd2fb528) return 'tar'; // zstd
    if (bytesRead >= 263 && bytes.toString('latin1', 257, 262) === 'ustar') return 'tar';
    return 'file';
  } finally {
    await file.close();
  }
}

const isRootDir = (name: string) => /^(\.\/?)*$/.test(name) || name === '/';

export async function extractTar(path: string, pub: Publication, signal?: AbortSignal): Promise<void> {
  const parser = new Parser({ strict: true });
  let failure: unknown;
  let chain: Promise<void> = Promise.resolve();
  parser.on('entry', (entry: ReadEntry) => {
    chain = chain.then(async () => {
      if (failure !== undefined) return void entry.resume();
      try {
        await writeTarEntry(entry, pub);
      } catch (err) {
        failure ??= err;
        entry.resume();
      }
    });
  });
  // After an error the parser emits neither `drain` nor `end`: every wait also ends on `error`.
  const event = (name: string) =>
    new Promise<void>((resolve) => {
      const settle = () => {
        parser.off(name, settle);
        parser.off('error', settle);
        resolve();
      };
      parser.on(name, settle);
      parser.on('error', settle);
    });
  parser.on('error', (err: Error) => {
    failure ??= syncError('invalid', `the archive is not a readable tar archive: ${err.message}`, err);
  });
  const done = event('end');
  for await (const chunk of createReadStream(path, { highWaterMark: 256 * 1024 })) {
    signal?.throwIfAborted();
    if (failure !== undefined) break;
    if (!parser.write(chunk as Buffer)) await event('drain');
  }
  if (failure === undefined) {
    parser.end();
    await done;
  }
  await chain;
  if (failure !== undefined)
    throw failure instanceof SyncError ? failure : syncError('invalid', String(failure));
}

async function writeTarEntry(entry: ReadEntry, pub: Publication): Promise<void> {
  const name = entry.path;
  switch (entry.type) {
    case 'File':
    case 'OldFile':
    case 'ContiguousFile':
      await pub.writeFile(name, entry, entry.mode ?? 0o644);
      return;
    case 'Directory':
      entry.resume();
      if (!isRootDir(name)) await pub.addDirectory(name);
      return;
    case 'SymbolicLink':
      entry.resume();
      return pub.addSymlink(name, entry.linkpath ?? '');
    case 'Link':
      entry.resume();
      return pub.copyEntry(name, entry.linkpath ?? '');
    default:
      throw syncError(
        'invalid',
        `archive entry "${printable(name)}" refused: unsupported type ${entry.type}`,
      );
  }
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

export async function extractZip(path: string, pub: Publication, signal?: AbortSignal): Promise<void> {
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.openPromise(path, { lazyEntries: true, autoClose: false, validateEntrySizes: true });
  } catch (err) {
    throw syncError('invalid', `the archive is not a readable zip archive: ${(err as Error).message}`, err);
  }
  try {
    for (;;) {
      signal?.throwIfAborted();
      const entry = await nextZipEntry(zip);
      if (!entry) return;
      await writeZipEntry(zip, entry, pub);
    }
  } catch (err) {
    if (err instanceof SyncError || signal?.aborted) throw err;
    // yauzl's own name checks ("invalid relative path", "absolute path") are path attacks.
    const message = (err as Error).message;
    const reason = /relative path|absolute path|invalid characters/i.test(message) ? 'unsafe' : 'invalid';
    throw syncError(reason, `zip archive refused: ${message}`, err);
  } finally {
    zip.close();
  }
}

function nextZipEntry(zip: yauzl.ZipFile): Promise<yauzl.Entry | undefined> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      zip.off('entry', onEntry);
      zip.off('end', onEnd);
      zip.off('error', onError);
    };
    const onEntry = (entry: yauzl.Entry) => (cleanup(), resolve(entry));
    const onEnd = () => (cleanup(), resolve(undefined));
    const onError = (err: Error) => (cleanup(), reject(err));
    zip.on('entry', onEntry);
    zip.on('end', onEnd);
    zip.on('error', onError);
    zip.readEntry();
  });
}

async function writeZipEntry(zip: yauzl.ZipFile, entry: yauzl.Entry, pub: Publication): Promise<void> {
  const name = entry.fileName;
  const unixMode = entry.externalFileAttributes >>> 16;
  const type = unixMode & S_IFMT;
  if (name.endsWith('/') || type === S_IFDIR) {
    if (!isRootDir(name)) await pub.addDirectory(name);
    return;
  }
  if (type === S_IFLNK) {
    const target = await readAll(await zip.openReadStreamPromise(entry), 4096);
    return pub.addSymlink(name, target.toString('utf8'));
  }
  if (type !== 0 && type !== S_IFREG) {
    throw syncError('invalid', `archive entry "${printable(name)}" refused: unsupported file type`);
  }
  await pub.writeFile(name, await zip.openReadStreamPromise(entry), unixMode & 0o777);
}

async function readAll(stream: AsyncIterable<Uint8Array>, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += chunk.byteLength;
    if (size > max) throw syncError('invalid', 'a symlink target in the archive is too long');
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}
