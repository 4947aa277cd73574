// Routes of the devices (rendezvous): register one for a user (its token is shown once), list,
// remove. With the API token; a user sees their own devices through the rendezvous service.
import type { FastifyPluginAsync } from 'fastify';
import type { DeviceRecord } from '../../store/store.js';
import { BODY_ERRORS, errors, type ApiDeps } from '../common.js';
import * as S from '../schemas.js';

/** A device as the API shows it. */
export function deviceView(d: DeviceRecord): { id: number; user: string; name: string; createdAt: string } {
  return { id: d.id, user: d.username, name: d.name, createdAt: d.createdAt };
}

export function deviceRoutes(deps: ApiDeps): FastifyPluginAsync {
  const { devices } = deps;
  const tags = ['devices'];
  return async (app) => {
    app.get<{ Querystring: { user?: string } }>('/devices', { schema: { tags, summary: 'List devices (of one user with ?user=)', querystring: S.DeviceQuery, response: { 200: S.DeviceList, ...errors(400) } } }, async (req) => ({
      devices: (await devices.list(req.query.user)).map(deviceView),
    }));

    app.post<{ Body: S.DeviceInputBody }>(
      '/devices',
      { schema: { tags, summary: 'Register a device of a user; its token is in this answer only', body: S.DeviceInput, response: { 201: S.DeviceCreated, ...errors(...BODY_ERRORS, 404, 409, 422) } } },
      async (req, reply) => {
        const { device, token } = await devices.add(req.body.user, req.body.name);
        reply.code(201);
        return { device: deviceView(device), token };
      },
    );

    app.delete<{ Params: { id: string } }>(
      '/devices/:id',
      { schema: { tags, summary: 'Remove a device (its token stops working; a presence connection it holds ends)', params: S.DeviceIdParams, response: { 204: { type: 'null', description: 'removed' }, ...errors(400, 404) } } },
      async (req, reply) => {
        const id = Number(req.params.id);
        await devices.remove(id);
        return reply.code(204).send();
      },
    );
  };
}
