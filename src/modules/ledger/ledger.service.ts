import type { FastifyBaseLogger } from 'fastify';
import type { Db, DbHandle } from '../../db/client.js';
import type { AuditService } from '../audit/audit.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import { createLedgerAccounts } from './ledger.accounts.js';
import { createLedgerContext, type SettingsGuard } from './ledger.context.js';
import { createLedgerCredits } from './ledger.credits.js';
import { createLedgerEngine } from './ledger.engine.js';
import { createLedgerHolds } from './ledger.holds.js';
import { createLedgerTopUps, queueAutoRecharge } from './ledger.top-ups.js';
import type { PaymentProvider } from './payments.js';

export interface LedgerDeps {
  db: Db;
  /** One statement in a transaction of its own, kept prepared (DbHandle.prepared). */
  prepared: DbHandle['prepared'];
  organizations: OrganizationsService;
  payments: PaymentProvider;
  /** Commit lanes for group commit: 1 on PGlite (one connection), a few on PostgreSQL. */
  lanes: number;
  audit: AuditService;
  /** The organization each of these live agents works for (from the agents service). */
  agentOrganizations: (ids: string[]) => Promise<Map<string, string>>;
  /** Where failures that are answered without failing the request are logged. */
  log: Pick<FastifyBaseLogger, 'error'>;
}

/**
 * The credits ledger. Invariants: every transaction's entries sum to zero; every account's
 * balance equals the sum of its entries; a debit never takes `credits` below its floor (zero,
 * or minus the overdraft limit) nor this month's spend past the limit; a request with an
 * Idempotency-Key moves credits at most once and a replay returns the first response.
 *
 * One object over four parts that share one engine (so an organization's operations stay
 * ordered whichever part submits them): accounts (balance, settings, history, export, verify),
 * credits (add, deduct, transfer, usage), holds, and top-ups.
 */
export function createLedgerService(deps: LedgerDeps) {
  const { db, organizations, payments } = deps;
  const engine = createLedgerEngine({
    db,
    prepared: deps.prepared,
    organizationStates: (tx, ids) => organizations.liveStates(tx, ids),
    onRecharge: (tx, s) => queueAutoRecharge(tx, s, payments),
    lanes: deps.lanes,
    maxBatch: 1000,
  });
  const settingsGuards: SettingsGuard[] = [];
  const shared = createLedgerContext({
    settingsGuards,
    db,
    organizations,
    payments,
    engine,
    audit: deps.audit,
    agentOrganizations: deps.agentOrganizations,
    log: deps.log,
  });
  return {
    engine,
    /** Called after each group-committed batch with its size and duration (metrics). */
    observe: engine.observe,
    /** Each commit lane's queue depth and whether a batch is in flight (metrics). */
    stats: engine.stats,
    /** Add a check that credit settings must pass (another module's rule). */
    guardSettings: (guard: SettingsGuard) => settingsGuards.push(guard),
    ...createLedgerAccounts(shared),
    ...createLedgerCredits(shared),
    ...createLedgerHolds(shared),
    ...createLedgerTopUps(shared),
  };
}

export type LedgerService = ReturnType<typeof createLedgerService>;
