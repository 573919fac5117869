/**
 * What the parts of the ledger service (accounts, credits, holds, top-ups) share: built once by
 * createLedgerService and passed to each part's factory, so that they all run through one engine.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Db } from '../../db/client.js';
import { authorize, type Permission, type RequestContext } from '../../lib/authz.js';
import type { AuditService } from '../audit/audit.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import { fingerprint, type LedgerOp } from './ledger.book.js';
import type { LedgerEngine } from './ledger.engine.js';
import type { Outcome } from './ledger.outcome.js';
import type { CreditPolicy } from './ledger.repo.js';
import type { PaymentProvider } from './payments.js';

type Organization = Awaited<ReturnType<OrganizationsService['load']>>;
export type SettingsGuard = (
  ctx: RequestContext,
  organizationId: string,
  policy: CreditPolicy,
) => Promise<void>;

export interface LedgerContext {
  db: Db;
  organizations: OrganizationsService;
  payments: PaymentProvider;
  /** The one engine: every change to balances goes through it, so per-organization order holds. */
  engine: LedgerEngine;
  /** The audit trail, written in the transaction of the change it records. */
  audit: AuditService;
  /** The organization each of these live agents works for. */
  agentOrganizations: (ids: string[]) => Promise<Map<string, string>>;
  /** Where failures that are answered without failing the request are logged. */
  log: Pick<FastifyBaseLogger, 'error'>;
  /** Checks run before credit settings change (features, a parent's say over its sub-organizations). */
  settingsGuards: SettingsGuard[];
  /** The organization by id or slug, once the caller holds `permission` on it (404 or 403 if not). */
  resolve(ctx: RequestContext, idOrSlug: string, permission: Permission): Promise<Organization>;
  /** Runs an operation: group-committed when it locks one organization, alone when it spans several. */
  submit<V>(op: LedgerOp<V>): Promise<Outcome<V>>;
}

export function createLedgerContext(deps: Omit<LedgerContext, 'resolve' | 'submit'>): LedgerContext {
  const { db, organizations, engine } = deps;
  return {
    ...deps,
    async resolve(ctx, idOrSlug, permission) {
      const org = await organizations.load(db, idOrSlug);
      authorize(ctx, [permission], org.id);
      return org;
    },
    submit(op) {
      return op.organizationIds.length > 1 ? engine.run(op) : engine.submit(op);
    },
  };
}

/** The idempotency of a request sent with `key`: `parts` are what a replay must repeat exactly. */
export function idem(key: string | undefined, parts: unknown[]) {
  return key === undefined ? undefined : { key, fingerprint: fingerprint(parts) };
}
