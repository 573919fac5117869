import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import helmet, { type HelmetOptions } from 'helmet';
import { sendProblem } from './http.js';
import { AppError } from './problem.js';

declare module 'fastify' {
  interface FastifyReply {
    /**
     * Makes this response an HTML page: helmet's full set of headers, with a CSP whose script
     * and style sources are fresh nonces, returned for the page's own inline script and style.
     */
    htmlPage(): { script: string; style: string };
  }
}

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Whether PUBLIC_URL is https: HSTS and upgrade-insecure-requests only then. */
export const isHttps = (publicUrl: string | undefined) => publicUrl?.startsWith('https:') ?? false;

/** The headers helmet writes for `options`, collected once instead of being rebuilt per response. */
function helmetHeaders(options: HelmetOptions): Record<string, string> {
  const headers: Record<string, string> = {};
  const res = {
    setHeader: (name: string, value: unknown) => {
      headers[name.toLowerCase()] = String(value);
    },
    removeHeader: (name: string) => {
      delete headers[name.toLowerCase()];
    },
  };
  helmet(options)({} as IncomingMessage, res as unknown as ServerResponse, () => {});
  return headers;
}

/**
 * Security headers on every response, and the Origin check for cookie-authenticated state
 * changes, in one hook whose headers are computed once at start (helmet's middleware rebuilt its
 * policy on every request, and its dozen headers halved what one process answers per second).
 * - JSON answers carry what an API needs (OWASP's REST Security cheat sheet): nosniff, no
 *   framing, a CSP that allows nothing, HSTS when PUBLIC_URL is https, and on /api/
 *   `Cache-Control: no-store` unless the route sets its own.
 * - HTML pages (`reply.htmlPage()`) get helmet's full set, with nonces for their inline parts.
 *   Swagger UI's /docs sends its own CSP, with the hashes of its inline scripts.
 */
export function installSecurity(app: FastifyInstance, opts: { publicUrl: string | undefined }) {
  const https = isHttps(opts.publicUrl);
  const hsts: Record<string, string> = https ? { 'strict-transport-security': 'max-age=31536000' } : {};
  const api = {
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
    ...hsts,
  };
  const pageOptions = (nonce: { script: string; style: string }): HelmetOptions => {
    const defaults = helmet.contentSecurityPolicy.getDefaultDirectives();
    return {
      contentSecurityPolicy: {
        directives: {
          'frame-ancestors': ["'none'"],
          'script-src': ["'self'", `'nonce-${nonce.script}'`],
          'style-src': [...(defaults['style-src'] ?? ["'self'"]), `'nonce-${nonce.style}'`],
          // On plain http it would send the page's own requests to an https that is not there.
          'upgrade-insecure-requests': https ? [] : null,
        },
      },
      frameguard: { action: 'deny' },
      // Not includeSubDomains: PUBLIC_URL's host says nothing of its siblings.
      strictTransportSecurity: https ? { maxAge: 31_536_000, includeSubDomains: false } : false,
    };
  };
  app.decorateReply('htmlPage', function htmlPage(this: { headers(h: Record<string, string>): unknown }) {
    const nonce = { script: randomBytes(16).toString('hex'), style: randomBytes(16).toString('hex') };
    this.headers(helmetHeaders(pageOptions(nonce)));
    return nonce;
  });

  // A browser attaches the session cookie to requests any site makes; a bearer token it never
  // attaches by itself, so requests carrying one (and no cookie) are not checked.
  const allowed = opts.publicUrl ? new URL(opts.publicUrl).origin : undefined;
  app.addHook('onRequest', (req, reply, done) => {
    reply.headers(api);
    if (req.url.startsWith('/api/')) reply.header('cache-control', 'no-store');
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
