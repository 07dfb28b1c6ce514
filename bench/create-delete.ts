import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { connectCsi, rpc, type CsiClients } from '../src/cli/csi-client.js';
import type { VolumeCapability } from '../src/generated/csi/v1/VolumeCapability.js';
import { DriverProcess, fileSystemName, percentile, runConcurrent } from './driver-process.js';
import { scratchFileSystem } from './scratch-fs.js';

const VOLUMES = Number(process.env.BENCH_VOLUMES ?? 500);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/**
 * Create/delete cycles before the measured rounds, reported but not counted: the first few hundred
 * calls after a start also pay for V8 compiling the hot paths (about +0.1 ms per create, on the JS
 * thread). BENCH_WARMUP=0 measures a cold driver.
 */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 200);
/** Size of the scratch file system the volumes go on (BENCH_ROOT picks a directory instead; see scratch-fs.ts). */
const IMAGE_BYTES = 4 * 2 ** 30;
const CAPABILITY: VolumeCapability = { mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } };
/** The issue's targets for each measured round. */
const TARGET = { rate: 1400, p99Ms: 25, cpuMs: 0.5, rssMiB: 80 };

type Phase = {
  name: string;
  /** ms per call on the JS thread and on all other threads. */
  jsMsPerCall: number;
  othersMsPerCall: number;
  rate: number;
  p50: number;
  p99: number;
  cpuMsPerCall: number;
  userMsPerCall: number;
  kernelMsPerCall: number;
};

async function measure(
  driver: DriverProcess,
  name: string,
  count: number,
  task: (i: number) => Promise<unknown>,
): Promise<Phase> {
  const before = await driver.cpu();
  const threadsBefore = await driver.cpuByThread();
  const started = process.hrtime.bigint();
  const latencies = await runConcurrent(count, CONCURRENCY, task);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  // Work the calls left running (purges of deleted volumes) is charged here, not to the next phase.
  await driver.settle();
  const after = await driver.cpu();
  const threadsAfter = await driver.cpuByThread();
  const perCall = (cpuSeconds: number) => (cpuSeconds * 1000) / count;
  const js = threadsAfter.js - threadsBefore.js;
  const others = threadsAfter.others - threadsBefore.others;
  // The exact total, split into user space and kernel in the proportion of the (tick-counted) stat.
  const user = after.user - before.user;
  const kernel = after.system - before.system;
  const userShare = user + kernel > 0 ? user / (user + kernel) : 1;
  return {
    name,
    jsMsPerCall: perCall(js),
    othersMsPerCall: perCall(others),
    rate: count / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    cpuMsPerCall: perCall(js + others),
    userMsPerCall: perCall((js + others) * userShare),
    kernelMsPerCall: perCall((js + others) * (1 - userShare)),
  };
}

function print(phase: Phase): void {
  console.log(
    `${phase.name.padEnd(28)} ${phase.rate.toFixed(0).padStart(6)} calls/s   p50 ${phase.p50.toFixed(2).padStart(6)} ms   p99 ${phase.p99.toFixed(2).padStart(6)} ms   driver CPU ${phase.cpuMsPerCall.toFixed(3)} ms/call (user ${phase.userMsPerCall.toFixed(3)}, kernel ${phase.kernelMsPerCall.toFixed(3)})`,
  );
  console.log(
    `${''.padEnd(28)} by thread: JS ${phase.jsMsPerCall.toFixed(3)} ms/call, others (file system workers, V8 compiler and GC) ${phase.othersMsPerCall.toFixed(3)}`,
  );
}

async function main(): Promise<void> {
  const scratch = await scratchFileSystem(IMAGE_BYTES);
  try {
    await benchmark(scratch.parent);
  } finally {
    await scratch.release();
  }
}

/** `count` CreateVolume calls, then a DeleteVolume for each, measured as two phases; returns the first. */
async function createAndDelete(
  driver: DriverProcess,
  csi: CsiClients,
  label: string,
  count: number,
): Promise<Phase> {
  const ids: string[] = [];
  const creates = await measure(driver, `${label} CreateVolume`, count, async (i) => {
    const res = await rpc(csi.controller, 'CreateVolume', {
      name: `bench-${label.replace(/\W/g, '')}-${i}`,
      volume_capabilities: [CAPABILITY],
      capacity_range: { required_bytes: 1 << 30 },
    });
    ids[i] = res.volume!.volume_id!;
  });
  print(creates);
  print(
    await measure(driver, `${label} DeleteVolume`, count, (i) =>
      rpc(csi.controller, 'DeleteVolume', { volume_id: ids[i]! }),
    ),
  );
  return creates;
}

/** One line per measured round: PASS when it meets every target, MISS naming what it missed. */
function printVerdicts(rounds: { creates: Phase; rssMiB: number }[]): void {
  rounds.forEach(({ creates, rssMiB }, i) => {
    const missed = [
      creates.rate < TARGET.rate && 'rate',
      creates.p99 > TARGET.p99Ms && 'p99',
      creates.cpuMsPerCall > TARGET.cpuMs && 'CPU',
      rssMiB > TARGET.rssMiB && 'RSS',
    ].filter(Boolean);
    console.log(
      `${missed.length ? `MISS (${missed.join(', ')})` : 'PASS'} round ${i + 1}  CreateVolume ${creates.rate.toFixed(0)}/s (target >= ${TARGET.rate})  p99 ${creates.p99.toFixed(1)} ms (<= ${TARGET.p99Ms})  CPU ${creates.cpuMsPerCall.toFixed(3)} ms (<= ${TARGET.cpuMs})  RSS ${rssMiB.toFixed(1)} MiB (<= ${TARGET.rssMiB})`,
    );
  });
  // Full collections come and go, so RSS moves within a band; growth shows as a trend over rounds.
  const rss = rounds.map((r) => r.rssMiB);
  console.log(
    `RSS after the rounds: ${Math.min(...rss).toFixed(1)}-${Math.max(...rss).toFixed(1)} MiB (BENCH_ROUNDS=10 shows whether it trends)`,
  );
}

async function benchmark(parent: string): Promise<void> {
  const dir = await mkdtemp(join(parent, 'sv-bench-'));
  const driver = new DriverProcess(join(dir, 'csi.sock'), [
    '--node-id',
    'bench',
    '--local-root',
    join(dir, 'root'),
    '--state-dir',
    join(dir, 'state'),
    ...(process.env.BENCH_DRIVER_ARGS ?? '').split(' ').filter(Boolean),
  ]);
  try {
    await driver.ready();
    const csi = connectCsi(`unix://${join(dir, 'csi.sock')}`);
    console.log(
      `sharedvolume-csi benchmark: ${VOLUMES} creates then ${VOLUMES} deletes, ${CONCURRENCY} concurrent, local backend on ${await fileSystemName(dir)} (${dir}), ${ROUNDS} rounds`,
    );
    await runConcurrent(200, CONCURRENCY, () => rpc(csi.identity, 'GetPluginInfo', {}));
    print(
      await measure(driver, 'GetPluginInfo (client ceiling)', 2000, () =>
        rpc(csi.identity, 'GetPluginInfo', {}),
      ),
    );
    console.log(`RSS before: ${(await driver.rssMiB()).toFixed(1)} MiB`);
    if (WARMUP > 0) {
      await createAndDelete(driver, csi, 'warm-up', WARMUP);
      console.log(
        `RSS after the warm-up (${WARMUP} create/delete cycles, not counted): ${(await driver.rssMiB()).toFixed(1)} MiB`,
      );
    }
    const rounds: { creates: Phase; rssMiB: number }[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const creates = await createAndDelete(driver, csi, `round ${round}`, VOLUMES);
      const rssMiB = await driver.rssMiB();
      console.log(
        `RSS after round ${round} (${round * VOLUMES} create/delete cycles): ${rssMiB.toFixed(1)} MiB`,
      );
      rounds.push({ creates, rssMiB });
    }
    printVerdicts(rounds);
    csi.close();
  } finally {
    await driver.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
