// Routes of the transport policies: CRUD, bulk import, the default transport, and the legacy body of
// the original system. Every change is re-applied to open connections (the reply's liveUpdate).
import type { FastifyPluginAsync } from 'fastify';
import { mptcpCapabilities } from '../../kernel/capabilities.js';
import { legacyFieldOf, looksLegacy, parseLegacyFile, storedClashes, translateLegacy, type LegacyPolicy } from '../../policy/legacy.js';
import { pathManagerChoices, PolicyError } from '../../policy/service.js';
import type { Transport as TransportValue } from '../../policy/types.js';
import { ApiError, renameField } from '../errors.js';
import * as S from '../schemas.js';
import { BODY_ERRORS, BULK_BODY_LIMIT, errors, type ApiDeps } from '../common.js';

export function policyRoutes(deps: ApiDeps): FastifyPluginAsync {
  const { policies } = deps;
  return async (app) => {

    app.get('/policies', { schema: { tags: ['policies'], summary: 'List policies', response: { 200: S.PolicyList, ...errors() } } }, async () => ({
      policies: policies.list(),
    }));

    app.post<{ Body: S.PolicyInputBody | S.LegacyPolicyBody }>(
      '/policies',
      {
        config: { bodyBranch: (body) => (looksLegacy(body) ? 1 : 0) },
        schema: {
          tags: ['policies'],
          summary: 'Create a policy',
          description: 'Takes a policy, or the legacy body of the original system ({"enable","ip","scheduler","path_manager"}), which is translated; `notes` says how.',
          body: S.CreatePolicyBody,
          response: { 201: S.PolicyChanged, ...errors(...BODY_ERRORS, 409, 422) },
        },
      },
      async (req, reply) => {
        let created;
        let notes: string[] | undefined;
        if (looksLegacy(req.body)) {
          const t = translateLegacy(req.body as LegacyPolicy);
          if (!t.ok) {
            const available = t.error.field === 'path_manager' ? pathManagerChoices(mptcpCapabilities().pathManagers) : undefined;
            throw new ApiError(422, t.error.code, `body.${t.error.field}`, t.error.message, available);
          }
          notes = t.notes;
          try {
            created = await policies.create(t.input);
          } catch (e) {
            if (!(e instanceof PolicyError)) throw e;
            const legacy = legacyFieldOf(e.field);
            throw legacy && e.field ? renameField(e, e.field, `body.${legacy}`) : e;
          }
        } else {
          created = await policies.create(req.body as S.PolicyInputBody);
        }
        const liveUpdate = await deps.reapply();
        reply.code(201).header('location', `/api/v1/policies/${created.id}`);
        return notes && notes.length > 0 ? { ...created, liveUpdate, notes } : { ...created, liveUpdate };
      },
    );

    app.post<{ Body: S.BulkBodyType }>(
      '/policies/bulk',
      {
        bodyLimit: BULK_BODY_LIMIT,
        schema: {
          tags: ['policies'],
          summary: 'Create many policies, all or none',
          description: `Up to ${S.MAX_BULK} policies in one transaction; an error names the first bad entry as policies[i].`,
          body: S.BulkBody,
          response: { 201: S.BulkCreated, ...errors(...BODY_ERRORS, 409, 422) },
        },
      },
      async (req, reply) => {
        const created = await policies.createMany(req.body.policies);
        const liveUpdate = await deps.reapply();
        reply.code(201);
        return { policies: created, liveUpdate };
      },
    );

    app.post<{ Body: { text: string } }>(
      '/policies/import',
      {
        bodyLimit: BULK_BODY_LIMIT,
        schema: {
          tags: ['policies'],
          summary: "Import the original system's flat file, all or none",
          description: 'Every bad line is named in the error (field body.text); an entry the store refuses is named by its line.',
          body: S.ImportBody,
          response: { 201: S.Imported, ...errors(...BODY_ERRORS, 409, 422) },
        },
      },
      async (req, reply) => {
        const parsed = parseLegacyFile(req.body.text);
        if (parsed.errors.length > 0) {
          const shown = parsed.errors.slice(0, 20).map((e) => `line ${e.line}: ${e.message}`);
          if (parsed.errors.length > shown.length) shown.push(`and ${parsed.errors.length - shown.length} more`);
          throw new ApiError(422, 'invalid', 'body.text', `${parsed.errors.length} bad line(s), nothing imported: ${shown.join('; ')}`);
        }
        if (parsed.policies.length === 0) throw new ApiError(422, 'invalid', 'body.text', 'the file has no entries');
        let created;
        try {
          created = await policies.createMany(parsed.policies.map((p) => p.input));
        } catch (e) {
          if (!(e instanceof PolicyError)) throw e;
          const clashes = e.code === 'conflict' ? storedClashes(policies.list(), parsed.policies) : [];
          if (clashes.length > 0) throw new ApiError(409, 'conflict', 'body.text', `${clashes.map((c) => `line ${c.line}: policy ${c.id} already has the same match`).join('; ')}; nothing imported`);
          const m = e.field !== null ? /^policies\[(\d+)\]/.exec(e.field) : null;
          const entry = m ? parsed.policies[Number(m[1])] : undefined;
          if (!entry) throw e;
          throw new ApiError(e.code === 'conflict' ? 409 : 422, e.code, 'body.text', `line ${entry.line}: ${e.message.replace(/^policies\[\d+\]:?\s*/, '')}; nothing imported`, e.available);
        }
        const notes = [...new Set(parsed.policies.flatMap((p) => p.notes))].map((note) => `${note} (lines ${parsed.policies.filter((p) => p.notes.includes(note)).map((p) => p.line).join(', ')})`);
        reply.code(201);
        return { policies: created, liveUpdate: await deps.reapply(), notes };
      },
    );

    app.get('/policies/default', { schema: { tags: ['policies'], summary: 'The default transport', description: 'Applies to destinations no policy matches, and fills the fields a matching policy leaves out.', response: { 200: S.Transport, ...errors() } } }, async () =>
      policies.getDefault(),
    );

    app.put<{ Body: TransportValue }>(
      '/policies/default',
      { schema: { tags: ['policies'], summary: 'Replace the default transport', body: S.Transport, response: { 200: S.DefaultChanged, ...errors(...BODY_ERRORS, 422) } } },
      async (req) => {
        let t: TransportValue;
        try {
          t = await policies.setDefault(req.body);
        } catch (e) {
          throw e instanceof PolicyError ? renameField(e, 'transport', 'body') : e;
        }
        return { ...t, liveUpdate: await deps.reapply() };
      },
    );

    const idRoute = { tags: ['policies'], params: S.PolicyIdParams };

    app.get<{ Params: { id: string } }>('/policies/:id', { schema: { ...idRoute, summary: 'One policy', response: { 200: S.Policy, ...errors(400, 404) } } }, async (req) =>
      policies.get(Number(req.params.id)),
    );

    app.put<{ Params: { id: string }; Body: S.PolicyInputBody }>(
      '/policies/:id',
      { schema: { ...idRoute, summary: 'Replace a policy', body: S.PolicyInput, response: { 200: S.PolicyChanged, ...errors(...BODY_ERRORS, 404, 409, 422) } } },
      async (req) => {
        const p = await policies.replace(Number(req.params.id), req.body);
        return { ...p, liveUpdate: await deps.reapply() };
      },
    );

    app.patch<{ Params: { id: string }; Body: S.PolicyPatchBody }>(
      '/policies/:id',
      {
        schema: {
          ...idRoute,
          summary: 'Change part of a policy (JSON merge patch)',
          description: 'Fields present replace the stored ones; null removes a field. Content-type application/json or application/merge-patch+json.',
          body: S.PolicyPatch,
          response: { 200: S.PolicyChanged, ...errors(...BODY_ERRORS, 404, 409, 422) },
        },
      },
      async (req) => {
        const p = await policies.patch(Number(req.params.id), req.body);
        return { ...p, liveUpdate: await deps.reapply() };
      },
    );

    app.delete<{ Params: { id: string } }>(
      '/policies/:id',
      { schema: { ...idRoute, summary: 'Remove a policy', description: 'Open connections it applied to are matched again.', response: { 204: { type: 'null', description: 'removed' }, ...errors(400, 404) } } },
      async (req, reply) => {
        await policies.remove(Number(req.params.id));
        await deps.reapply();
        return reply.code(204).send();
      },
    );

  };
}
