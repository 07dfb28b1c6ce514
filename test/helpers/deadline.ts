import type { Client } from '@grpc/grpc-js';
import { rpc } from '../../src/cli/csi-client.js';

/** A unary call with a deadline `timeoutMs` from now, as the Kubernetes sidecars send them. */
export function callWithDeadline<C extends Client, M extends keyof C & string>(
  client: C,
  method: M,
  req: Parameters<typeof rpc<C, M>>[2],
  timeoutMs: number,
) {
  return rpc(client, method, req, timeoutMs);
}
