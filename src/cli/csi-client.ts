import { credentials, type Client, type ServiceError } from '@grpc/grpc-js';
import type { ControllerClient } from '../generated/csi/v1/Controller.js';
import type { IdentityClient } from '../generated/csi/v1/Identity.js';
import type { NodeClient } from '../generated/csi/v1/Node.js';
import { grpcAddress, parseEndpoint } from '../rpc/endpoint.js';
import { loadCsi } from '../rpc/proto.js';

type Callback<Res> = (err: ServiceError | null, res?: Res) => void;
type RequestOf<F> = F extends (req: infer Req, cb: Callback<infer _Res>) => unknown ? Req : never;
type ResponseOf<F> = F extends (req: infer _Req, cb: Callback<infer Res>) => unknown ? Res : never;

/**
 * Promise form of a generated unary method, keeping its request and response types. With
 * `timeoutMs`, the call carries a gRPC deadline that far ahead, as the Kubernetes sidecars send them.
 */
export function rpc<C extends Client, M extends keyof C & string>(
  client: C,
  method: M,
  req: RequestOf<C[M]>,
  timeoutMs?: number,
): Promise<ResponseOf<C[M]>> {
  return new Promise((resolve, reject) => {
    const done: Callback<ResponseOf<C[M]>> = (err, res) => (err ? reject(err) : resolve(res!));
    const fn = client[method] as (req: unknown, ...rest: unknown[]) => unknown;
    if (timeoutMs === undefined) fn.call(client, req, done);
    else fn.call(client, req, { deadline: Date.now() + timeoutMs }, done);
  });
}

export interface CsiClients {
  identity: IdentityClient;
  controller: ControllerClient;
  node: NodeClient;
  close(): void;
}

/** gRPC clients for the three CSI services over one endpoint (unix:///path.sock or tcp://host:port). */
export function connectCsi(endpoint: string): CsiClients {
  const csi = loadCsi().csi.v1;
  const address = grpcAddress(parseEndpoint(endpoint));
  const creds = credentials.createInsecure();
  const identity = new csi.Identity(address, creds);
  const clients: Client[] = [identity];
  const controller = new csi.Controller(address, creds, { channelOverride: identity.getChannel() });
  const node = new csi.Node(address, creds, { channelOverride: identity.getChannel() });
  clients.push(controller, node);
  return { identity, controller, node, close: () => clients.forEach((c) => c.close()) };
}
