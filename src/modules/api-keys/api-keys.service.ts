/**
 * The api-keys module owns `api_keys`: organization API keys, `obk_<prefix>_<secret>`, of which
 * only the prefix (for lookup) and the SHA-256 of the whole key are stored. Rules: a key acts in
 * its organization with its scopes (an agent's key as that agent, following it when it moves);
 * lookups are cached in-process, and every change that could make a cached key wrong (creation,
 * revocation, a move) is announced with NOTIFY in its transaction, so every process drops the key
 * the moment it commits; wrong secrets are counted per prefix; keys die with their organization
 * or agent.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { type Static, Type } from 'typebox';
import type { Db, DbHandle, Executor, Tx } from '../../db/client.js';
import { createAttemptCounter } from '../../lib/attempts.js';
import {
  type Actor,
  API_KEY_SCOPES,
  type ApiKeyScope,
  authorize,
  type RequestContext,
} from '../../lib/authz.js';
import { setBounded } from '../../lib/bounded.js';
import { newId } from '../../lib/ids.js';
import { AppError, invalidField } from '../../lib/problem.js';
import type { AuditService } from '../audit/audit.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import * as repo from './api-keys.repo.js';

export const KEY_PREFIX = 'obk_';
const CHANNEL = 'orgbase_api_keys';
/** A backstop only: revocations reach every process at once through NOTIFY. */
const CACHE_MS = 60_000;
const TOUCH_MS = 60_000;
/** Prefixes remembered as unknown: a flood of random ones costs bounded memory. */
export const NEGATIVE_CACHE_MAX = 10_000;

export const CreateApiKeyBody = Type.Object(
  {
    name: Type.String({
      minLength: 1,
      maxLength: 100,
      pattern: '^[^\\u0000-\\u001F]*\\S[^\\u0000-\\u001F]*$',
      'x-message': 'must not be blank or contain control characters',
    }),
    scopes: Type.Array(Type.Union(API_KEY_SCOPES.map((s) => Type.Literal(s))), {
      minItems: 1,
      uniqueItems: true,
      description: '`read`, `write` (write includes read)',
    }),
    expires_at: Type.Optional(Type.String({ format: 'date-time' })),
  },
  { additionalProperties: false },
);

export const ApiKeyResponse = Type.Object({
  id: Type.String(),
  organization_id: Type.String(),
  name: Type.String(),
  prefix: Type.String({ description: 'The public start of the key, to recognize it' }),
  scopes: Type.Array(Type.String()),
  created_at: Type.String({ format: 'date-time' }),
  expires_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  last_used_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  revoked_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  agent_id: Type.Union([Type.String(), Type.Null()], { description: 'Set for an agent’s own key' }),
});

export const CreateAgentKeyBody = Type.Object(
  { name: CreateApiKeyBody.properties.name, expires_at: CreateApiKeyBody.properties.expires_at },
  { additionalProperties: false },
);

export const CreatedApiKeyResponse = Type.Object({
  ...ApiKeyResponse.properties,
  key: Type.String({ description: 'The secret: shown this once, stored only as a SHA-256 hash' }),
});

type KeyRow = repo.KeyRow;

function view(k: KeyRow): Static<typeof ApiKeyResponse> {
  return {
    id: k.id,
    organization_id: k.organization_id,
    name: k.name,
    prefix: k.prefix,
    scopes: k.scopes,
    created_at: k.created_at.toISOString(),
    expires_at: k.expires_at?.toISOString() ?? null,
    last_used_at: k.last_used_at?.toISOString() ?? null,
    revoked_at: k.revoked_at?.toISOString() ?? null,
    agent_id: k.agent_id,
  };
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** API keys: issued, listed, revoked, and checked on every request that presents one. */
export function createApiKeysService(deps: {
  db: DbHandle;
  audit: AuditService;
  organizations: OrganizationsService;
  /** The agent, once the caller may manage it (404 or 403 if not). */
  agents: { authorizeManage(ctx: RequestContext, agentId: string): Promise<{ organization_id: string }> };
  /** Failed attempts per minute on one key's prefix, from all addresses together. */
  failuresPerPrefix?: number;
}) {
  const db: Db = deps.db.db;
  // Known keys (as many as exist); unknown prefixes apart, bounded, in insertion order.
  const cache = new Map<string, { row: KeyRow; at: number }>();
  const unknown = new Map<string, number>();
  const touched = new Map<string, number>();
  const failures = createAttemptCounter({
    max: deps.failuresPerPrefix ?? 1200,
    windowMs: 60_000,
    maxEntries: NEGATIVE_CACHE_MAX,
  });

  async function lookup(prefix: string): Promise<KeyRow | undefined> {
    const now = Date.now();
    const hit = cache.get(prefix);
    if (hit && now - hit.at < CACHE_MS) return hit.row;
    const miss = unknown.get(prefix);
    if (miss !== undefined && now - miss < CACHE_MS) return undefined;
    const row = await repo.findKeyByPrefix(db, prefix);
    if (row) {
      cache.set(prefix, { row, at: now });
      return row;
    }
    setBounded(unknown, prefix, now, NEGATIVE_CACHE_MAX);
    return undefined;
  }

  function forget(prefix: string) {
    cache.delete(prefix);
    unknown.delete(prefix);
  }

  /**
   * The key's actor, or why not. A wrong secret (or a revoked or expired key) is a failed
   * attempt on its prefix, counted apart from the key's own rate budget: once a prefix has failed
   * `failuresPerPrefix` times in a minute, further failures carry `retryAfter` (seconds).
   */
  async function verify(token: string): Promise<{ actor?: Actor; retryAfter: number }> {
    const m = /^obk_([a-z0-9]{12})_[A-Za-z0-9_-]{43}$/.exec(token);
    if (!m?.[1]) return { retryAfter: 0 };
    const row = await lookup(m[1]);
    if (!row) return { retryAfter: 0 };
    if (
      row.revoked_at ||
      (row.expires_at && row.expires_at <= new Date()) ||
      !timingSafeEqual(Buffer.from(sha256(token)), Buffer.from(row.key_hash))
    ) {
      const retryAfter = failures.retryAfter(row.prefix);
      failures.fail(row.prefix);
      return { retryAfter };
    }
    const now = Date.now();
    if (now - (touched.get(row.id) ?? 0) > TOUCH_MS) {
      // Last-used is informational: written at most once a minute per key, off the request path.
      touched.set(row.id, now);
      void repo.updateLastUsed(db, row, new Date(now)).catch(() => {});
    }
    return {
      actor: {
        type: 'api_key',
        id: row.id,
        organizationId: row.organization_id,
        scopes: row.scopes as ApiKeyScope[],
        agentId: row.agent_id ?? undefined,
      },
      retryAfter: 0,
    };
  }

  async function revokeIn(tx: Tx, rows: repo.KeyRef[]) {
    for (const r of rows) {
      await repo.updateRevoked(tx, r);
      await repo.notify(tx, CHANNEL, r.prefix);
    }
  }

  async function issue(
    ctx: RequestContext,
    organizationId: string,
    opts: { name: string; scopes: ApiKeyScope[]; expiresAt: string | undefined; agentId: string | null },
  ) {
    const expires = opts.expiresAt ? new Date(opts.expiresAt) : null;
    if (expires && expires <= new Date()) throw invalidField('expires_at', 'must be in the future');
    const prefix = randomBytes(9)
      .toString('base64url')
      .toLowerCase()
      .replace(/[^a-z0-9]/g, '0')
      .slice(0, 12);
    const key = `${KEY_PREFIX}${prefix}_${randomBytes(32).toString('base64url')}`;
    return db.transaction().execute(async (tx) => {
      const row = await repo.insertKey(tx, {
        organization_id: organizationId,
        id: newId('key'),
        name: opts.name,
        prefix,
        key_hash: sha256(key),
        scopes: opts.scopes,
        created_by: ctx.actor.id,
        expires_at: expires,
        agent_id: opts.agentId,
      });
      // A process that remembers the prefix as unknown forgets that when this commits.
      await repo.notify(tx, CHANNEL, prefix);
      await deps.audit.record(tx, ctx, {
        organizationId,
        action: 'api_key.created',
        targetType: 'api_key',
        targetId: row.id,
        changes: {
          name: { before: null, after: row.name },
          scopes: { before: null, after: row.scopes },
          ...(opts.agentId ? { agent_id: { before: null, after: opts.agentId } } : {}),
        },
      });
      return { ...view(row), key };
    });
  }

  return {
    /** Starts hearing other processes' revocations. */
    async start(): Promise<() => Promise<void>> {
      return deps.db.listen(CHANNEL, forget, () => {
        cache.clear();
        unknown.clear();
      });
    },

    verify,

    /** What the process holds in memory for keys (for tests and diagnostics). */
    cacheSizes: () => ({ known: cache.size, unknown: unknown.size, failing: failures.size }),

    async create(ctx: RequestContext, idOrSlug: string, body: Static<typeof CreateApiKeyBody>) {
      const org = await deps.organizations.load(db, idOrSlug);
      authorize(ctx, ['api_keys:manage'], org.id);
      return issue(ctx, org.id, {
        name: body.name,
        scopes: body.scopes,
        expiresAt: body.expires_at,
        agentId: null,
      });
    },

    /**
     * An agent's own key: it records usage as that agent and reads its organization, whichever
     * organization the agent works for at the time.
     */
    async createForAgent(ctx: RequestContext, agentId: string, body: Static<typeof CreateAgentKeyBody>) {
      const agent = await deps.agents.authorizeManage(ctx, agentId);
      authorize(ctx, ['api_keys:manage'], agent.organization_id);
      return issue(ctx, agent.organization_id, {
        name: body.name,
        scopes: ['write'],
        expiresAt: body.expires_at,
        agentId,
      });
    },

    /** The agent moved: its keys follow it (and every process forgets them). */
    async onAgentMoved(tx: Tx, agentId: string, organizationId: string) {
      const prefixes = await repo.moveAgentKeys(tx, agentId, organizationId);
      // Every process, this one included, drops these keys when the NOTIFY arrives after commit.
      for (const prefix of prefixes) await repo.notify(tx, CHANNEL, prefix);
      for (const prefix of prefixes) forget(prefix);
    },

    /** The agent was deleted: so are its keys' rights. */
    async onAgentDeleted(tx: Tx, agentId: string) {
      const rows = await repo.findLiveKeys(tx, { agentId });
      await revokeIn(tx, rows);
      for (const r of rows) forget(r.prefix);
    },

    async list(ctx: RequestContext, idOrSlug: string) {
      const org = await deps.organizations.load(db, idOrSlug);
      authorize(ctx, ['api_keys:read'], org.id);
      return { data: (await repo.findKeysOf(db, org.id, 'desc')).map(view) };
    },

    async revoke(ctx: RequestContext, idOrSlug: string, keyId: string) {
      const org = await deps.organizations.load(db, idOrSlug);
      authorize(ctx, ['api_keys:manage'], org.id);
      let revokedPrefix: string | undefined;
      await db.transaction().execute(async (tx) => {
        const row = await repo.findKeyForUpdate(tx, org.id, keyId);
        if (!row) throw new AppError('not_found', 'No such API key');
        if (row.revoked_at) return;
        await revokeIn(tx, [row]);
        revokedPrefix = row.prefix;
        await deps.audit.record(tx, ctx, {
          organizationId: org.id,
          action: 'api_key.revoked',
          targetType: 'api_key',
          targetId: row.id,
        });
      });
      // Committed: this process must not wait for its own NOTIFY to stop trusting the key.
      if (revokedPrefix) forget(revokedPrefix);
    },

    /** Key metadata for the export: never secrets or hashes. */
    async exportSection(ex: Executor, organizationId: string) {
      return { api_keys: (await repo.findKeysOf(ex, organizationId, 'asc')).map(view) };
    },

    /** An organization's keys die with it. */
    async onOrganizationDeleted(tx: Tx, organizationId: string) {
      await revokeIn(tx, await repo.findLiveKeys(tx, { organizationId }));
    },
  };
}

export type ApiKeysService = ReturnType<typeof createApiKeysService>;
