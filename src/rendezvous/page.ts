// The rendezvous page at /rendezvous: static files from assets/rendezvous (plain HTML, CSS and
// JavaScript, no build step, nothing from elsewhere), served with a Content-Security-Policy that
// allows only this origin's scripts, styles and connections: no inline script, no framing.
import { readFileSync } from 'node:fs';
import type { FastifyPluginAsync } from 'fastify';

const ASSETS = new URL('../../assets/rendezvous/', import.meta.url);
const FILES: Record<string, { file: string; type: string }> = {
  '/rendezvous': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/rendezvous/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/rendezvous/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

/** The page's policy: this origin only ('self' covers its ws:/wss: too), no inline code, no framing, no plugins. */
export const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

export function pageRoutes(): FastifyPluginAsync {
  // read once at start: a missing asset fails the start, not a user's first visit
  const bodies = Object.fromEntries(Object.entries(FILES).map(([path, f]) => [path, { body: readFileSync(new URL(f.file, ASSETS)), type: f.type }]));
  return async (app) => {
    for (const [path, f] of Object.entries(bodies)) {
      app.get(path, { config: { public: true }, schema: { hide: true } }, async (_req, reply) =>
        reply
          .type(f.type)
          .header('content-security-policy', PAGE_CSP)
          .header('x-content-type-options', 'nosniff')
          .header('referrer-policy', 'no-referrer')
          .header('cache-control', 'no-cache')
          .send(f.body),
      );
    }
  };
}
