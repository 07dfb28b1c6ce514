import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rpc } from '../../src/cli/csi-client.js';
import { startDriverWithMetrics, type RunningDriverWithMetrics } from '../helpers/driver.js';
import { mountCapability, rejectsWith } from '../helpers/csi.js';

const SECRET = 'planted-S3cret-value-4242';

describe('RPC wrapper (logging, metrics, locks, errors) on the running driver', () => {
  let dir: string;
  let driver: RunningDriverWithMetrics;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sv-wrap-'));
    driver = await startDriverWithMetrics({
      args: ['--local-root', join(dir, 'root'), '--log-level', 'debug'],
    });
  });
  after(async () => {
    await driver?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('logs one structured line per call with method, volume, duration and code', async () => {
    await rpc(driver.controller, 'CreateVolume', {
      name: 'logged-vol',
      volume_capabilities: [mountCapability()],
    });
    const lines = driver
      .log()
      .split('\n')
      .filter((l) => l.includes('"logged-vol"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.message, 'rpc');
    assert.equal(lines[0]!.method, 'CreateVolume');
    assert.equal(lines[0]!.code, 'OK');
    assert.equal(typeof lines[0]!.durationMs, 'number');
  });

  it('never logs or returns secrets, even when an error message would echo one', async () => {
    await rpc(driver.controller, 'CreateVolume', {
      name: 'with-secret',
      volume_capabilities: [mountCapability()],
      secrets: { password: SECRET },
    });
    const err = await rejectsWith(
      rpc(driver.controller, 'CreateVolume', {
        name: 'bad-secret',
        volume_capabilities: [mountCapability()],
        parameters: { onDelete: SECRET },
        secrets: { password: SECRET },
      }),
      status.INVALID_ARGUMENT,
      /onDelete/,
    );
    assert.ok(!err.details.includes(SECRET), 'secret scrubbed from the returned error');
    assert.ok(driver.log().includes('bad-secret'), 'the failed call was logged');
    assert.ok(!driver.log().includes(SECRET), 'secret absent from the log');
  });

  it('counts calls by method and code and times them', async () => {
    await rejectsWith(rpc(driver.controller, 'DeleteVolume', { volume_id: '' }), status.INVALID_ARGUMENT);
    const body = await (await fetch(`http://${driver.metricsAddress}/metrics`)).text();
    assert.match(body, /sharedvolume_csi_operations_total\{method="CreateVolume",code="OK"\} [1-9]/);
    assert.match(
      body,
      /sharedvolume_csi_operations_total\{method="DeleteVolume",code="INVALID_ARGUMENT"\} 1/,
    );
    assert.match(body, /sharedvolume_csi_operation_duration_seconds_count\{method="CreateVolume"\} [1-9]/);
    assert.match(body, /process_resident_memory_bytes \d+/);
  });

  it('answers ABORTED to a concurrent call on the same volume and runs different volumes in parallel', async () => {
    const same = await Promise.allSettled(
      Array.from({ length: 8 }, () =>
        rpc(driver.controller, 'CreateVolume', {
          name: 'contended',
          volume_capabilities: [mountCapability()],
        }),
      ),
    );
    const codes = same.map((r) =>
      r.status === 'fulfilled' ? 'OK' : status[(r.reason as { code: number }).code],
    );
    assert.ok(codes.includes('OK'));
    assert.ok(codes.includes('ABORTED'), 'overlapping calls for one volume are refused, not run twice');
    assert.ok(
      codes.every((c) => c === 'OK' || c === 'ABORTED'),
      codes.join(','),
    );
    const distinct = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        rpc(driver.controller, 'CreateVolume', {
          name: `par-${i}`,
          volume_capabilities: [mountCapability()],
        }),
      ),
    );
    assert.equal(new Set(distinct.map((r) => r.volume?.volume_id)).size, 16);
  });
});
