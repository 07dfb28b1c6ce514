/**
 * A reader racing the publisher, in its own process (so its reads really interleave with renames).
 * Usage: node reader-child.js files|symlink <volumeDir> <fileCount>
 * Prints "seen <version>" for each new version; reads until a line arrives on stdin, then prints
 * "report <json>":
 *   files mode: every read of every file must be whole (one repeated character, full length).
 *   symlink mode: `current` must always exist; the tree it names must hold one version only.
 */
import { readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';

const [mode, volume, countText] = process.argv.slice(2) as [string, string, string];
const count = Number(countText);
const report = { reads: 0, torn: 0, mixed: 0, missingCurrent: 0, retired: 0, versions: new Set<string>() };
let stop = false;
process.stdin.on('data', () => (stop = true));

/** A file is "<version char> x size"; returns the char or undefined if torn. */
function versionOf(content: Buffer, size: number): string | undefined {
  if (content.length !== size) return undefined;
  const first = content[0]!;
  return content.every((b) => b === first) ? String.fromCharCode(first) : undefined;
}

async function readFilesMode(): Promise<void> {
  for (let i = 0; i < count; i++) {
    const content = await readFile(join(volume, `f${i}`));
    report.reads++;
    const version = versionOf(content, 256 * 1024);
    if (version === undefined) report.torn++;
    else see(version);
  }
}

/** Announces each version the first time it is read, so the writer can pace itself on the reader. */
function see(version: string): void {
  if (report.versions.has(version)) return;
  report.versions.add(version);
  process.stdout.write(`seen ${version}\n`);
}

async function readSymlinkMode(): Promise<void> {
  let target: string;
  try {
    target = await readlink(join(volume, 'current'));
  } catch {
    report.missingCurrent++;
    return;
  }
  const seen = new Set<string>();
  for (let i = 0; i < count; i++) {
    let content: Buffer;
    try {
      content = await readFile(join(volume, target, `f${i}`));
    } catch {
      // Allowed only for a version that is no longer current or previous (cleaned up).
      const now = await readlink(join(volume, 'current')).catch(() => '');
      if (now === target) report.torn++;
      else report.retired++;
      return;
    }
    report.reads++;
    const version = versionOf(content, 4096);
    if (version === undefined) report.torn++;
    else seen.add(version);
  }
  if (seen.size > 1) report.mixed++;
  else for (const v of seen) see(v);
}

while (!stop) {
  await (mode === 'files' ? readFilesMode() : readSymlinkMode());
  await new Promise((resolve) => setImmediate(resolve));
}
process.stdout.write(`report ${JSON.stringify({ ...report, versions: [...report.versions].sort() })}\n`);
process.exit(0);
