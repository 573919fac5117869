import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { AppError } from '../../lib/problem.js';
import type { AuthService } from './auth.service.js';

/** Better Auth's routes (sign-up, sign-in, sign-out, sessions, password change and reset), proxied. */
export const authRoutes =
  (auth: AuthService, publicUrl: string | undefined): FastifyPluginAsyncTypebox =>
  async (app) => {
    app.route({
      method: ['GET', 'POST'],
      url: '/api/auth/*',
      schema: { hide: true },
      handler: async (req, reply) => {
        const url = new URL(req.url, publicUrl ?? `http://${req.headers.host ?? '127.0.0.1'}`);
        const headers = new Headers();
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers.set(k, v);
        // The body is re-serialized as JSON whatever arrived (or nothing did).
        if (req.method === 'POST') headers.set('content-type', 'application/json');
        // Browsers send Origin with every POST, and Better Auth checks it against PUBLIC_URL. A
        // request with neither Origin nor cookie is a server-side client (Node's fetch adds
        // Sec-Fetch-Mode, which would make Better Auth demand an Origin it cannot have).
        if (!headers.has('origin') && !headers.has('cookie'))
          for (const h of ['sec-fetch-site', 'sec-fetch-mode', 'sec-fetch-dest']) headers.delete(h);
        const response = await auth
          .handle(
            new Request(url, {
              method: req.method,
              headers,
              ...(req.method === 'POST' ? { body: JSON.stringify(req.body ?? {}) } : {}),
            }),
          )
          .catch((err: unknown) => {
            // Per-account throttles (sign-in failures, account mail) say when to come back.
            if (err instanceof AppError && typeof err.extra?.retry_after === 'number')
              reply.header('retry-after', String(err.extra.retry_after));
            throw err;
          });
        reply.status(response.status);
        response.headers.forEach((value, key) => {
          if (key !== 'set-cookie' && key !== 'content-length') reply.header(key, value);
        });
        const cookies = response.headers.getSetCookie();
        if (cookies.length) reply.header('set-cookie', cookies);
        return reply.send(await response.text());
      },
    });
  };
