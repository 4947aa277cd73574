// Routes of the users (SOCKS username/password, TURN long-term credentials; rendezvous accounts later).
import type { FastifyPluginAsync } from 'fastify';
import * as S from '../schemas.js';
import { BODY_ERRORS, errors, type ApiDeps } from '../common.js';

export function userRoutes(deps: ApiDeps): FastifyPluginAsync {
  const { users } = deps;
  return async (app) => {

    app.get('/users', { schema: { tags: ['users'], summary: 'List users', response: { 200: S.UserList, ...errors() } } }, async () => ({
      users: (await users.list()).map((u) => ({ username: u.username, createdAt: u.createdAt, turnRealm: u.turnRealm })),
    }));

    app.post<{ Body: S.UserInputBody }>(
      '/users',
      { schema: { tags: ['users'], summary: 'Add a user (SOCKS, and TURN with turn: true)', body: S.UserInput, response: { 201: S.User, ...errors(...BODY_ERRORS, 409, 422) } } },
      async (req, reply) => {
        const u = await users.create(req.body.username, req.body.password, { turn: req.body.turn ?? false });
        reply.code(201);
        return { username: u.username, createdAt: u.createdAt, turnRealm: u.turnRealm };
      },
    );

    app.delete<{ Params: { username: string } }>(
      '/users/:username',
      { schema: { tags: ['users'], summary: 'Remove a user', params: S.UsernameParams, response: { 204: { type: 'null', description: 'removed' }, ...errors(400, 404) } } },
      async (req, reply) => {
        await users.remove(req.params.username);
        return reply.code(204).send();
      },
    );

  };
}
