import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';
import { sendProblem } from './http.js';
import { AppError } from './problem.js';

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Whether PUBLIC_URL is https: HSTS and upgrade-insecure-requests only then. */
export const isHttps = (publicUrl: string | undefined) => publicUrl?.startsWith('https:') ?? false;

/**
 * Security headers on every response (helmet: nosniff, no framing, a same-origin CSP, HSTS when
 * PUBLIC_URL is https), `Cache-Control: no-store` on every /api/ answer that sets none, and the
 * Origin check for cookie-authenticated state changes. Installed before any route.
 */
export async function installSecurity(app: FastifyInstance, opts: { publicUrl: string | undefined }) {
  const https = isHttps(opts.publicUrl);
  await app.register(helmet, {
    contentSecurityPolicy: {
      directives: {
        'frame-ancestors': ["'none'"],
        // On plain http it would send the pages' own requests to an https that is not there.
        'upgrade-insecure-requests': https ? [] : null,
      },
    },
    frameguard: { action: 'deny' },
    // Not includeSubDomains: PUBLIC_URL's host says nothing of its siblings.
    strictTransportSecurity: https ? { maxAge: 31_536_000, includeSubDomains: false } : false,
  });

  app.addHook('onSend', (req, reply, payload, done) => {
    if (req.url.startsWith('/api/') && !reply.hasHeader('cache-control'))
      reply.header('cache-control', 'no-store');
    done(null, payload);
  });

  // A browser attaches the session cookie to requests any site makes; a bearer token it never
  // attaches by itself, so requests carrying one (and no cookie) are not checked.
  const allowed = opts.publicUrl ? new URL(opts.publicUrl).origin : undefined;
  app.addHook('onRequest', (req, reply, done) => {
    if (!STATE_CHANGING.has(req.method) || !req.headers.cookie || req.headers.authorization) return done();
    const expected = allowed ?? `${req.protocol}://${req.host}`;
    const origin = req.headers.origin;
    const site = req.headers['sec-fetch-site'];
    // Without Origin (a client that is not a browser), a browser's Sec-Fetch-Site still tells.
    const foreign =
      origin !== undefined
        ? origin !== expected
        : site !== undefined && site !== 'same-origin' && site !== 'none';
    if (!foreign) return done();
    sendProblem(
      reply,
      new AppError(
        'origin_not_allowed',
        origin === undefined
          ? `A cross-site request (Sec-Fetch-Site: ${site}) cannot use the session cookie`
          : `Origin ${origin} cannot use the session cookie; only ${expected} can`,
      ),
      req.id,
    );
  });
}
