import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A directory tree as a plain object for assertions: file -> content, symlink -> "-> target",
 * directory -> "/". Never follows symlinks.
 */
export async function readTree(root: string, prefix = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const entries = await readdir(join(root, prefix), { withFileTypes: true });
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isSymbolicLink()) out[rel] = `-> ${await readlink(join(root, rel))}`;
    else if (entry.isDirectory()) {
      out[`${rel}/`] = '/';
      Object.assign(out, await readTree(root, rel));
    } else out[rel] = await readFile(join(root, rel), 'utf8');
  }
  return out;
}

/** Every regular file under root (relative paths), symlinks not followed. */
export async function listFiles(root: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(root, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await listFiles(root, rel)));
    else if (entry.isFile()) out.push(rel);
  }
  return out.sort();
}

/** Inode of each file: a file rewritten (temp + rename) gets a new one. */
export async function inodes(root: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const rel of await listFiles(root)) out[rel] = (await lstat(join(root, rel))).ino;
  return out;
}

/** True if any file under `root` contains `needle` (binary-safe). */
export async function treeContains(root: string, needle: string): Promise<string[]> {
  const hits: string[] = [];
  for (const rel of await listFiles(root)) {
    if ((await readFile(join(root, rel))).includes(needle)) hits.push(rel);
  }
  return hits;
}
