import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpError, pathParameter, sendJson } from './http-server.js';
import type { VolumeSyncState } from './service.js';

/**
 * The operator's endpoint behind `svctl sync`. It has no authentication, so it only ever listens
 * on a loopback address (the runtime refuses anything else): reach it with `kubectl exec` or
 * `kubectl port-forward`. It shows no credential, only Secret names.
 *
 *   GET  /sync/status          every volume this replica schedules
 *   GET  /sync/status/<id>     one volume (404 if unknown)
 *   POST /sync/<id>            sync now (202; 404 if unknown)
 */

export interface AdminTarget {
  status(volumeId?: string): Promise<VolumeSyncState[]>;
  syncNow(volumeId: string): Promise<boolean>;
}

export function adminHandler(target: AdminTarget) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const { pathname } = new URL(req.url ?? '/', 'http://admin');
    if (pathname === '/sync/status' || pathname.startsWith('/sync/status/')) {
      if (req.method !== 'GET') throw new HttpError(405, 'use GET');
      return showStatus(target, pathParameter(pathname, '/sync/status/'), res);
    }
    const id = pathParameter(pathname, '/sync/');
    if (!id) throw new HttpError(404, 'not found');
    if (req.method !== 'POST') throw new HttpError(405, 'use POST');
    if (!(await target.syncNow(id))) throw new HttpError(404, `no populated volume ${id}`);
    sendJson(res, 202, { triggered: [id] });
  };
}

async function showStatus(target: AdminTarget, id: string | undefined, res: ServerResponse) {
  const volumes = await target.status(id);
  if (id && volumes.length === 0) throw new HttpError(404, `no populated volume ${id}`);
  volumes.sort((a, b) => a.volume.localeCompare(b.volume));
  sendJson(res, 200, { volumes });
}
