/**
 * Populator benchmarks against their references, run in the same process on the same data:
 *   S3 initial sync, 10,000 x 4 KiB and 20 x 50 MiB       vs `rclone sync`
 *   S3 no-change resync of the 10,000 objects              vs `rclone sync --use-server-modtime`
 *   git initial fill, 5,000 files                          vs `git clone --depth 1`
 *   git push -> visible through the real driver's webhook  target <= 5 s (reference: `git fetch
 *     --depth 1` + `git reset --hard` of a clone, for scale)
 * Servers (s3rver, git daemon) run on 127.0.0.1. Each case runs BENCH_ROUNDS times (default 3)
 * alternating ours and the reference; medians and ratios are printed.
 * Needs rclone and git on PATH. Run: npm run build && node dist/bench/sync.js
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import pLimit from 'p-limit';
import { connectCsi, rpc } from '../src/cli/csi-client.js';
import { parseSourceSpec, syncOnce, type SourceSpec } from '../src/populator/index.js';
import { signBody } from '../src/populator/webhook.js';
import { mountCapability } from '../test/helpers/csi.js';
import { DriverProcess } from './driver-process.js';
import { freePort } from '../test/helpers/ports.js';
import { S3RVER_CREDENTIALS, startS3rver, type S3rverInstance } from '../test/helpers/s3rver.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SMALL_COUNT = Number(process.env.BENCH_SMALL_OBJECTS ?? 10_000);
const LARGE_COUNT = Number(process.env.BENCH_LARGE_OBJECTS ?? 20);
const GIT_FILES = Number(process.env.BENCH_GIT_FILES ?? 5000);

interface Row {
  name: string;
  ours: number[];
  reference: number[];
  refName: string;
  /** Ratio to the reference; with `absolute`, seconds. */
  target: number;
  absolute?: boolean;
  oursCpu: number[];
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;

async function timed(task: () => Promise<unknown>): Promise<{ seconds: number; cpu: number }> {
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  await task();
  const used = process.cpuUsage(cpu);
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, cpu: (used.user + used.system) / 1e6 };
}

function rcloneEnv(endpoint: string): Record<string, string> {
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    RCLONE_CONFIG_S3_TYPE: 's3',
    RCLONE_CONFIG_S3_PROVIDER: 'Other',
    RCLONE_CONFIG_S3_ENDPOINT: endpoint,
    RCLONE_CONFIG_S3_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    RCLONE_CONFIG_S3_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    RCLONE_CONFIG_S3_FORCE_PATH_STYLE: 'true',
    RCLONE_CONFIG: '/dev/null',
  };
  // rclone 1.60 fails with LoadCustomCABundleError when AWS_CA_BUNDLE is set.
  delete env.AWS_CA_BUNDLE;
  return env;
}

async function seedS3(s3: S3rverInstance, bucket: string, count: number, size: number): Promise<void> {
  const limit = pLimit(32);
  const body = randomBytes(size);
  await Promise.all(
    Array.from({ length: count }, (_, i) =>
      limit(() => s3.put(bucket, `data/d${i % 100}/object-${i}`, body)),
    ),
  );
}

async function benchS3(work: string, rows: Row[]): Promise<void> {
  const s3 = await startS3rver(['small', 'large']);
  try {
    let t = Date.now();
    await seedS3(s3, 'small', SMALL_COUNT, 4096);
    await seedS3(s3, 'large', LARGE_COUNT, 50 * 2 ** 20);
    console.log(`seeded s3rver in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    const env = rcloneEnv(s3.endpoint);
    const spec = (bucket: string): SourceSpec =>
      parseSourceSpec({ type: 's3', s3: { bucket, prefix: 'data/', endpoint: s3.endpoint } });
    const rclone = (bucket: string, dest: string, extra: string[] = []) =>
      execa('rclone', ['sync', `s3:${bucket}/data`, dest, '--config', '/dev/null', ...extra], {
        env,
        extendEnv: false,
      });

    for (const [bucket, label] of [
      ['small', `S3 initial ${SMALL_COUNT} x 4 KiB`],
      ['large', `S3 initial ${LARGE_COUNT} x 50 MiB`],
    ] as const) {
      const row: Row = {
        name: label,
        ours: [],
        reference: [],
        refName: 'rclone sync',
        target: 1.0,
        oursCpu: [],
      };
      for (let round = 0; round < ROUNDS; round++) {
        const dir = join(work, `s3-${bucket}-${round}`);
        const ours = await timed(() =>
          syncOnce({
            spec: spec(bucket),
            credentials: S3RVER_CREDENTIALS,
            volumeDir: join(dir, 'ours'),
            stateDir: join(dir, 'state'),
          }),
        );
        row.ours.push(ours.seconds);
        row.oursCpu.push(ours.cpu);
        row.reference.push((await timed(() => rclone(bucket, join(dir, 'rclone')))).seconds);
        if (bucket === 'large' || round < ROUNDS - 1) await rm(dir, { recursive: true, force: true });
      }
      rows.push(row);
      t = Date.now();
    }

    const dir = join(work, `s3-small-${ROUNDS - 1}`);
    const row: Row = {
      name: `S3 no-change resync ${SMALL_COUNT}`,
      ours: [],
      reference: [],
      refName: 'rclone sync --use-server-modtime',
      target: 1.0,
      oursCpu: [],
    };
    for (let round = 0; round < ROUNDS; round++) {
      const ours = await timed(async () => {
        const result = await syncOnce({
          spec: spec('small'),
          credentials: S3RVER_CREDENTIALS,
          volumeDir: join(dir, 'ours'),
          stateDir: join(dir, 'state'),
        });
        if (result.changed) throw new Error('a no-change resync changed something');
      });
      row.ours.push(ours.seconds);
      row.oursCpu.push(ours.cpu);
      row.reference.push(
        (await timed(() => rclone('small', join(dir, 'rclone'), ['--use-server-modtime']))).seconds,
      );
    }
    rows.push(row);
  } finally {
    await s3.stop();
  }
}

async function git(cwd: string, args: string[]) {
  return execa('git', args, {
    cwd,
    env: {
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_AUTHOR_NAME: 'bench',
      GIT_AUTHOR_EMAIL: 'bench@example.com',
      GIT_COMMITTER_NAME: 'bench',
      GIT_COMMITTER_EMAIL: 'bench@example.com',
    },
  });
}

/** 5,000 files of about 12 KiB of hex text (compresses like source code does, roughly 2:1). */
async function makeRepo(root: string): Promise<{ bare: string; work: string }> {
  const work = join(root, 'work');
  const bare = join(root, 'repo.git');
  await mkdir(work, { recursive: true });
  await git(work, ['init', '--quiet', '--initial-branch=main']);
  const limit = pLimit(32);
  await Promise.all(
    Array.from({ length: GIT_FILES }, (_, i) =>
      limit(async () => {
        const dir = join(work, `pkg${i % 50}`, `mod${i % 7}`);
        await mkdir(dir, { recursive: true });
        await writeFile(join(dir, `file${i}.txt`), randomBytes(6 * 1024).toString('hex'));
      }),
    ),
  );
  await git(work, ['add', '-A']);
  await git(work, ['commit', '--quiet', '-m', 'initial']);
  await git(root, ['clone', '--quiet', '--bare', work, bare]);
  await git(work, ['remote', 'add', 'origin', bare]);
  return { bare, work };
}

async function benchGit(work: string, rows: Row[]): Promise<void> {
  const root = join(work, 'git');
  await mkdir(root, { recursive: true });
  const { work: tree } = await makeRepo(root);
  const port = await freePort();
  const daemon: ChildProcess = spawn(
    'git',
    [
      'daemon',
      '--reuseaddr',
      '--export-all',
      `--base-path=${root}`,
      '--listen=127.0.0.1',
      `--port=${port}`,
      root,
    ],
    { stdio: 'ignore', env: { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null' } },
  );
  try {
    await waitForGitDaemon(root, port);
    const url = `git://127.0.0.1:${port}/repo.git`;
    const spec = parseSourceSpec({ type: 'git', git: { url } });
    const fill: Row = {
      name: `git initial fill ${GIT_FILES} files`,
      ours: [],
      reference: [],
      refName: 'git clone --depth 1',
      target: 1.2,
      oursCpu: [],
    };
    for (let round = 0; round < ROUNDS; round++) {
      const dir = join(work, `git-${round}`);
      const ours = await timed(() =>
        syncOnce({ spec, volumeDir: join(dir, 'ours'), stateDir: join(dir, 'state') }),
      );
      fill.ours.push(ours.seconds);
      fill.oursCpu.push(ours.cpu);
      fill.reference.push(
        (await timed(() => git(work, ['clone', '--quiet', '--depth', '1', url, join(dir, 'clone')]))).seconds,
      );

      await rm(dir, { recursive: true, force: true });
    }
    rows.push(fill);
    rows.push(await benchPushToVisible(work, url, tree));
  } finally {
    daemon.kill();
  }
}

const WEBHOOK_SECRET = 'bench-webhook-secret';

/**
 * A git volume created through the real driver (CreateVolume, hourly interval); each round pushes
 * 10 changed files, posts the signed push event to the driver's webhook and waits until the change
 * is visible in the volume. Timed from the end of the push to the file's new content.
 */
async function benchPushToVisible(work: string, url: string, tree: string): Promise<Row> {
  const row: Row = {
    name: 'git push -> visible (webhook, driver)',
    ours: [],
    reference: [],
    refName: 'git fetch --depth 1 + reset --hard',
    target: 5,
    absolute: true,
    oursCpu: [],
  };
  const root = join(work, 'webhook-root');
  const secretFile = join(work, 'webhook-secret');
  await writeFile(secretFile, WEBHOOK_SECRET, { mode: 0o600 });
  const hook = `127.0.0.1:${await freePort()}`;
  const socket = join(work, 'webhook-csi.sock');
  const driver = new DriverProcess(socket, [
    ...['--local-root', root, '--populator', '--admin-address', 'off', '--log-level', 'warn'],
    ...['--webhook-address', hook, '--webhook-secret-file', secretFile],
  ]);
  const clone = join(work, 'webhook-clone');
  try {
    await driver.ready();
    const csi = connectCsi(`unix://${socket}`);
    const parameters = {
      'source.type': 'git',
      'source.git.url': url,
      'source.git.ref': 'main',
      syncInterval: '1h',
    };
    await rpc(csi.controller, 'CreateVolume', {
      name: 'site',
      volume_capabilities: [mountCapability()],
      parameters,
    });
    csi.close();
    await git(work, ['clone', '--quiet', '--depth', '1', url, clone]);
    const probe = join(root, 'site', 'pkg0', 'mod0', 'file0.txt');
    for (let round = 0; round < ROUNDS; round++) {
      const marker = `webhook round ${round}`;
      for (let i = 0; i < 10; i++) {
        await writeFile(join(tree, `pkg${i}`, `mod${i % 7}`, `file${i}.txt`), `${marker} change ${i}`);
      }
      await git(tree, ['add', '-A']);
      await git(tree, ['commit', '--quiet', '-m', marker]);
      await git(tree, ['push', '--quiet', 'origin', 'HEAD:main']);
      const visible = await timed(async () => {
        await postPush(hook, url);
        while ((await readFile(probe, 'utf8').catch(() => '')) !== `${marker} change 0`) {
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      });
      row.ours.push(visible.seconds);
      row.oursCpu.push(NaN); // the driver is another process
      const fetched = await timed(async () => {
        await git(clone, ['fetch', '--quiet', '--depth', '1', 'origin', 'main']);
        await git(clone, ['reset', '--quiet', '--hard', 'FETCH_HEAD']);
      });
      row.reference.push(fetched.seconds);
    }
  } finally {
    await driver.stop();
  }
  return row;
}

async function postPush(hook: string, url: string): Promise<void> {
  const body = JSON.stringify({
    ref: 'refs/heads/main',
    repository: { clone_url: url, default_branch: 'main' },
  });
  const res = await fetch(`http://${hook}/hooks/git`, {
    method: 'POST',
    body,
    headers: {
      'content-type': 'application/json',
      'x-github-event': 'push',
      'x-hub-signature-256': signBody(WEBHOOK_SECRET, body),
    },
  });
  if (res.status !== 202) throw new Error(`webhook answered ${res.status}: ${await res.text()}`);
}

async function waitForGitDaemon(cwd: string, port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const probe = await execa('git', ['ls-remote', `git://127.0.0.1:${port}/repo.git`], {
      cwd,
      reject: false,
    });
    if (probe.exitCode === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('git daemon did not start');
}

const cpuCell = (seconds: number) => (Number.isNaN(seconds) ? '-' : `${seconds.toFixed(2)}s`).padStart(7);

function print(rows: Row[]): void {
  console.log('');
  console.log(
    `${'case'.padEnd(36)} ${'ours'.padStart(8)} ${'reference'.padStart(10)} ${'ratio'.padStart(6)} ${'target'.padStart(7)}  ours CPU  reference`,
  );
  for (const row of rows) {
    const ours = median(row.ours);
    const ref = median(row.reference);
    const ratio = ours / ref;
    const target = row.absolute ? `<=${row.target}s` : `<=${row.target.toFixed(1)}`;
    console.log(
      `${row.name.padEnd(36)} ${ours.toFixed(2).padStart(7)}s ${ref.toFixed(2).padStart(9)}s ${ratio.toFixed(2).padStart(6)} ${target.padStart(7)}  ${cpuCell(median(row.oursCpu))}  ${row.refName}`,
    );
  }
  console.log(
    `\nmedians of ${ROUNDS} rounds; "ours CPU" is the populator's own process CPU (git children excluded)`,
  );
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'sv-bench-sync-'));
  const rows: Row[] = [];
  try {
    const only = process.env.BENCH_ONLY;
    if (!only || only === 's3') await benchS3(work, rows);
    if (!only || only === 'git') await benchGit(work, rows);
    print(rows);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
