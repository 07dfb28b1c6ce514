import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { notFound } from '../rpc/errors.js';
import type { SnapshotRecord } from './catalog.js';
import type { SnapshotStore, StoredSnapshot, WriteJob } from './store.js';
import { ARCHIVE_SUFFIX, extractArchiveFile, writeArchiveFile, type Compression } from './stream.js';

const rename = promisify(fs.rename);
const stat = promisify(fs.stat);
const unlink = promisify(fs.unlink);

function compressionOf(record: SnapshotRecord): Compression {
  return record.compression ?? 'zstd';
}

async function removeFile(path: string): Promise<void> {
  await unlink(path).catch((err: NodeJS.ErrnoException) =>
    err.code === 'ENOENT' ? undefined : Promise.reject(err),
  );
}

/**
 * Archives beside the volume, in the backend's `.sharedvolume/snapshots/data/`. An archive is written
 * under a temporary name and renamed once tar, the compressor and the file agree: no file under
 * `data/` is ever partial.
 */
export const archiveStore: SnapshotStore = {
  async write({ record, catalog, sourceDir, signal }: WriteJob): Promise<SnapshotRecord> {
    const compression = compressionOf(record);
    // A name of this run's own: a writer a crash orphaned may still be appending to an earlier one.
    const partial = catalog.tmpPath(`${record.token}.${randomBytes(4).toString('hex')}.partial`);
    try {
      const digest = await writeArchiveFile(sourceDir, compression, partial, signal);
      const stored = (await stat(partial)).size;
      if (stored !== digest.bytes)
        throw new Error(`archive is ${stored} bytes on the backend, ${digest.bytes} were written`);
      const name = `${record.token}${ARCHIVE_SUFFIX[compression]}`;
      await rename(partial, catalog.dataPath(name));
      return {
        ...record,
        state: 'ready',
        sizeBytes: record.sizeBytes || digest.dataBytes,
        archive: {
          name,
          bytes: digest.bytes,
          sha256: digest.sha256,
          formatChecksum: digest.formatChecksum,
          dataBytes: digest.dataBytes,
        },
      };
    } catch (err) {
      await removeFile(partial);
      throw err;
    }
  },

  async filling({ record, catalog }: StoredSnapshot) {
    const archive = record.archive!;
    if (!catalog) throw notFound(`snapshot "${record.id}" has no catalog on any configured backend`);
    const path = catalog.dataPath(archive.name);
    await stat(path).catch(() => {
      throw notFound(`the archive of snapshot "${record.id}" is missing from the backend`);
    });
    return {
      kind: 'write' as const,
      write: (dir: string) => extractArchiveFile(path, compressionOf(record), dir, archive),
    };
  },

  async remove({ record, catalog }: StoredSnapshot) {
    if (!catalog) return;
    if (record.archive) await removeFile(catalog.dataPath(record.archive.name));
    await catalog.clearScratch(record.token);
  },
};
