import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { CsiError } from '../../src/rpc/errors.js';
import type { CallContext } from '../../src/rpc/handler.js';
import { Operations, waitBudget } from '../../src/volumes/operations.js';

/** Work that finishes only when the test says so. */
function gate<T>() {
  let open!: (value: T) => void;
  let fail!: (err: unknown) => void;
  const promise = new Promise<T>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  return { promise, open, fail };
}

/** A call whose caller stops waiting right away: any wait ends at once. */
const impatient = (): CallContext => ({ deadline: Date.now(), signal: new AbortController().signal });

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'OK';
  } catch (err) {
    return err instanceof CsiError ? status[err.code] : `thrown: ${String(err)}`;
  }
}

describe('Operations (work that outlives its call)', () => {
  it('answers ABORTED while the work runs, joins retries to it, and gives the result once it is done', async () => {
    const ops = new Operations();
    const work = gate<string>();
    let started = 0;
    const prepare = async () => () => {
      started++;
      return work.promise;
    };
    assert.equal(await codeOf(ops.run('vol-a', prepare, impatient())), 'ABORTED');
    assert.equal(await codeOf(ops.run('vol-a', prepare, impatient())), 'ABORTED');
    assert.equal(started, 1, 'retries join the running work');
    assert.equal(ops.has('vol-a'), true);
    work.open('done');
    await work.promise;
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(ops.has('vol-a'), false, 'finished work leaves the map');
  });

  it('returns the result to a call that waits long enough, and keeps nothing after success', async () => {
    const ops = new Operations();
    const work = gate<string>();
    const waiting = ops.run('vol-b', async () => () => work.promise);
    work.open('result');
    assert.equal(await waiting, 'result');
    assert.equal(ops.has('vol-b'), false, 'success is not kept: the committed record answers later calls');
  });

  it('reports a failure once, to the next call, and then starts afresh', async () => {
    const ops = new Operations();
    const first = gate<string>();
    let prepared = 0;
    const prepare = (work: Promise<string>) => async () => {
      prepared++;
      return () => work;
    };
    assert.equal(await codeOf(ops.run('vol-c', prepare(first.promise), impatient())), 'ABORTED');
    first.fail(new CsiError(status.RESOURCE_EXHAUSTED, 'disk full'));
    await first.promise.catch(() => undefined);
    await assert.rejects(ops.run('vol-c', prepare(Promise.resolve('unused')), impatient()), /disk full/);
    assert.equal(ops.has('vol-c'), false);
    assert.equal(await ops.run('vol-c', prepare(Promise.resolve('second')), impatient()), 'second');
    assert.equal(prepared, 2, 'the call after the reported failure prepared and started new work');
  });

  it('starts nothing when preparation fails (a missing source, for example)', async () => {
    const ops = new Operations();
    await assert.rejects(
      ops.run('vol-d', async () => {
        throw new CsiError(status.NOT_FOUND, 'no such source');
      }),
      /no such source/,
    );
    assert.equal(ops.has('vol-d'), false);
  });

  it('stops waiting when the caller cancels', async () => {
    const ops = new Operations();
    const work = gate<string>();
    const cancel = new AbortController();
    const call = ops.run('vol-e', async () => () => work.promise, {
      deadline: Infinity,
      signal: cancel.signal,
    });
    cancel.abort();
    assert.equal(await codeOf(call), 'ABORTED');
    work.open('x');
  });

  it('leaves a margin before the deadline, so that the answer arrives in time', () => {
    const now = Date.now();
    assert.equal(waitBudget(undefined), undefined);
    assert.equal(waitBudget({ deadline: Infinity, signal: new AbortController().signal }), undefined);
    const budget = waitBudget({ deadline: now + 10_000, signal: new AbortController().signal })!;
    assert.ok(budget <= 9000 && budget > 8000, String(budget));
    const short = waitBudget({ deadline: now + 400, signal: new AbortController().signal })!;
    assert.ok(short <= 200, String(short));
    assert.equal(waitBudget({ deadline: now - 5, signal: new AbortController().signal }), 0);
  });
});
