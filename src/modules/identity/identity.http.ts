import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance } from 'fastify';
import { bearerToken, sendProblem } from '../../lib/http.js';
import { AppError } from '../../lib/problem.js';
import type { IdentityService } from './identity.service.js';

/**
 * Requests per minute, counted in this process: per client address, and per API key once the
 * key is valid (a prefix alone must not spend a real key's budget). The operator is not limited.
 */
export async function installRateLimits(
  app: FastifyInstance,
  identity: IdentityService,
  limits: { perIp: number; perKey: number },
) {
  // Declared up front, so every request object has the same shape (V8 keeps one hidden class).
  app.decorateRequest('principal', undefined);
  await app.register(rateLimit, {
    global: true,
    hook: 'onRequest',
    keyGenerator: (req) => identity.rateBucket(req),
    max: (_req, key) => (key.startsWith('ip:') ? limits.perIp : limits.perKey),
    timeWindow: 60_000,
    allowList: async (req) =>
      bearerToken(req.headers) !== undefined && (await identity.of(req)).actor?.type === 'operator',
    errorResponseBuilder: (_req, context) =>
      new AppError('rate_limited', `Too many requests; retry in ${Math.ceil(context.ttl / 1000)} s`),
  });
}

/**
 * Every route of `api` needs a caller: `req.ctx` is set before the handler runs, or the request
 * is answered 401 (429 for a key throttled after failures). preParsing, not onRequest: the rate
 * limiter's onRequest hook must count a request before authentication can refuse it, or token
 * guessing would go unlimited.
 */
export function requireCaller(api: FastifyInstance, identity: IdentityService) {
  api.addHook('preParsing', async (req, reply, payload) => {
    const { actor, retryAfter } = await identity.of(req);
    if (actor) {
      req.ctx = { actor, requestId: req.id };
      return payload;
    }
    if (retryAfter) {
      reply.header('retry-after', String(retryAfter));
      return sendProblem(
        reply,
        new AppError('rate_limited', `Too many failed attempts with this key; retry in ${retryAfter} s`),
        req.id,
      );
    }
    reply.header('www-authenticate', 'Bearer');
    return sendProblem(
      reply,
      new AppError(
        'unauthenticated',
        bearerToken(req.headers) ? 'The bearer token is not valid' : 'Send Authorization: Bearer <token>',
      ),
      req.id,
    );
  });
}
