/**
 * The operator module owns `operator_credentials`: the platform operator's bearer token, stored
 * only as its SHA-256. Rules: with ADMIN_TOKEN set, that token is the only one; without it, the
 * first start generates one, prints it once, and stores only its hash; rotating revokes the old
 * one in the same transaction that stores the new one (other processes notice within CACHE_MS).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Db } from '../../db/client.js';
import { type Actor, authorize, type RequestContext } from '../../lib/authz.js';
import { newId } from '../../lib/ids.js';
import { AppError } from '../../lib/problem.js';
import * as repo from './operator.repo.js';

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function sameHash(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

/**
 * SHA-256 of recently presented tokens: an operator or a bench sends the same token with every
 * request, and hashing it each time was a measurable share of a request's CPU. Bounded, so
 * guessed tokens cannot grow it.
 */
const recentHashes = new Map<string, string>();
function hashOf(token: string): string {
  let hash = recentHashes.get(token);
  if (hash === undefined) {
    hash = hashToken(token);
    if (recentHashes.size >= 64) recentHashes.clear();
    recentHashes.set(token, hash);
  }
  return hash;
}

/** How long a process trusts its copy of the stored token hash before reading it again. */
const CACHE_MS = 5_000;

/** The platform operator's bearer token: bootstrap, rotation (`orgbase admin-token rotate`), checks. */
export function createOperatorService(deps: { db: Db; adminToken: string | undefined }) {
  const envHash = deps.adminToken ? hashToken(deps.adminToken) : undefined;
  let cached: { hashes: { id: string; hash: string }[]; at: number } | undefined;

  async function storedHashes() {
    if (cached && Date.now() - cached.at < CACHE_MS) return cached.hashes;
    const rows = await repo.findLiveCredentials(deps.db);
    cached = { hashes: rows.map((r) => ({ id: r.id, hash: r.token_hash })), at: Date.now() };
    return cached.hashes;
  }

  async function issue(): Promise<string> {
    const token = `obo_${randomBytes(32).toString('base64url')}`;
    await deps.db
      .transaction()
      .execute((tx) => repo.replaceCredential(tx, { id: newId('opc'), token_hash: hashToken(token) }));
    cached = undefined;
    return token;
  }

  return {
    /** At start: returns a newly generated token when there was none, for printing once. */
    async bootstrap(): Promise<{ generatedToken: string | undefined }> {
      if (envHash) return { generatedToken: undefined };
      if ((await storedHashes()).length > 0) return { generatedToken: undefined };
      return { generatedToken: await issue() };
    },

    rotate: issue,

    /**
     * The operator API's rotation (the CLI's cannot run beside a server on PGlite): revokes the
     * stored token and returns its replacement, which is never readable again. Refused while
     * ADMIN_TOKEN is set, since the stored token is then not the one in use.
     */
    async rotateToken(ctx: RequestContext): Promise<{ token: string; rotated_at: string }> {
      authorize(ctx, ['admin_token:rotate'], null);
      if (envHash)
        throw new AppError(
          'admin_token_from_environment',
          'ADMIN_TOKEN is set, so the stored token is not in use: change the variable instead',
        );
      const token = await issue();
      return { token, rotated_at: new Date().toISOString() };
    },

    async authenticate(token: string): Promise<Actor | undefined> {
      const hash = hashOf(token);
      if (envHash) return sameHash(hash, envHash) ? { type: 'operator', id: 'env' } : undefined;
      const match = (await storedHashes()).find((h) => sameHash(hash, h.hash));
      return match ? { type: 'operator', id: match.id } : undefined;
    },
  };
}

export type OperatorService = ReturnType<typeof createOperatorService>;
