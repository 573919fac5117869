import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyRequest } from 'fastify';
import { bearerToken } from '../../lib/http.js';
import type { Credential, Verdict } from './identity.credential.js';

/**
 * Identity: who is calling. It owns no table: it builds each request's principal once, from the
 * first kind of credential that claims the request (the operator's token, an API key, a
 * session: `*.credential.ts`, listed in identity.module.ts), and keeps it for the request, so
 * that the rate limiter and authentication ask once. What a principal may do is the role matrix
 * and its sub-organization oversight rule, beside each other in `src/lib/authz.ts`.
 */
type Found = Verdict & { credential?: Credential };

declare module 'fastify' {
  interface FastifyRequest {
    /** The caller, found once per request (identity.of): a plain property, no WeakMap per request. */
    principal?: Promise<Found> | undefined;
  }
}

const NOBODY: Found = {};

export function createIdentityService(credentials: readonly Credential[]) {
  async function find(headers: IncomingHttpHeaders): Promise<Found> {
    const token = bearerToken(headers);
    for (const credential of credentials) {
      const claim = credential.claims(token, headers);
      if (!claim) continue;
      const { actor, retryAfter } = await credential.verify(token, headers);
      if (actor || claim === 'sole') return { actor, retryAfter, credential };
    }
    return NOBODY;
  }

  function of(req: FastifyRequest): Promise<Found> {
    req.principal ??= find(req.headers);
    return req.principal;
  }

  return {
    /** The caller of these headers, if any (pages outside /api, which ask once). */
    identify: async (headers: IncomingHttpHeaders) => (await find(headers)).actor,

    /** The request's principal (and, for a throttled credential, how long to wait), found once. */
    of,

    /**
     * The request's rate-limit bucket: a valid credential with a budget of its own (an API key)
     * is counted on it, anyone else by address, a wrong key too. Synchronous unless there is
     * such a credential to check: no promise per request for nothing.
     */
    rateBucket(req: FastifyRequest): string | Promise<string> {
      const token = bearerToken(req.headers);
      if (!credentials.some((c) => c.rateBucket && c.claims(token, req.headers))) return `ip:${req.ip}`;
      return of(req).then(({ actor, credential }) =>
        actor && credential?.rateBucket ? credential.rateBucket(actor) : `ip:${req.ip}`,
      );
    },
  };
}

export type IdentityService = ReturnType<typeof createIdentityService>;
