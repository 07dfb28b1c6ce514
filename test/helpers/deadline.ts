import type { Client, ServiceError } from '@grpc/grpc-js';

type Callback<Res> = (err: ServiceError | null, res?: Res) => void;
type Method<Req, Res> = (req: Req, options: { deadline: number }, cb: Callback<Res>) => unknown;
type RequestOf<F> = F extends (req: infer Req, cb: Callback<infer _Res>) => unknown ? Req : never;
type ResponseOf<F> = F extends (req: infer _Req, cb: Callback<infer Res>) => unknown ? Res : never;

/** A unary call with a deadline `timeoutMs` from now, as the Kubernetes sidecars send them. */
export function callWithDeadline<C extends Client, M extends keyof C & string>(
  client: C,
  method: M,
  req: RequestOf<C[M]>,
  timeoutMs: number,
): Promise<ResponseOf<C[M]>> {
  return new Promise((resolve, reject) => {
    const fn = client[method] as unknown as Method<RequestOf<C[M]>, ResponseOf<C[M]>>;
    fn.call(client, req, { deadline: Date.now() + timeoutMs }, (err, res) =>
      err ? reject(err) : resolve(res!),
    );
  });
}
