// Routes of the users (SOCKS username/password, TURN long-term credentials, rendezvous accounts).
import type { FastifyPluginAsync } from 'fastify';
import * as S from '../schemas.js';
import { BODY_ERRORS, errors, type ApiDeps } from '../common.js';
import type { UserRecord } from '../../store/store.js';

function userView(u: UserRecord): S.UserType {
  return { username: u.username, createdAt: u.createdAt, turnRealm: u.turnRealm, socks: u.socks, rendezvous: u.rendezvous, console: u.console };
}

export function userRoutes(deps: ApiDeps): FastifyPluginAsync {
  const { users } = deps;
  return async (app) => {

    app.get('/users', { schema: { tags: ['users'], summary: 'List users', response: { 200: S.UserList, ...errors() } } }, async () => ({
      users: (await users.list()).map(userView),
    }));

    app.post<{ Body: S.UserInputBody }>(
      '/users',
      { schema: { tags: ['users'], summary: 'Add a user (SOCKS; TURN with turn: true; rendezvous with rendezvous: true)', body: S.UserInput, response: { 201: S.User, ...errors(...BODY_ERRORS, 409, 422) } } },
      async (req, reply) => {
        const b = req.body;
        const u = await users.create(b.username, b.password, { turn: b.turn ?? false, rendezvous: b.rendezvous ?? false, socks: b.socks ?? true, console: b.console ?? false });
        reply.code(201);
        return userView(u);
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
