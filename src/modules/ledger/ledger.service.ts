/**
 * The credits ledger owns every organization's accounts (`credits`, `held`, the system accounts)
 * and their balances, the immutable double-entry transactions that move them, holds, top-ups,
 * credit settings (overdraft, monthly spending limit, auto-recharge), idempotency records, and the
 * usage roll-ups each debit adds to; other modules read all of it through this service, never
 * through its tables or repos.
 */
/*
 * The ledger's files, by layer:
 * - routes: ledger.routes.ts (HTTP in; outcomes rendered as JSON or problem+json), with the
 *   request and response schemas in ledger.schema.ts;
 * - service: this file, assembling the parts that share one engine (ledger.context.ts):
 *   ledger.accounts.ts (balance, settings, history, export, verify), ledger.credits.ts (add,
 *   deduct, transfer, usage), ledger.holds.ts, ledger.top-ups.ts (with the payment provider of
 *   payments.ts), and the usage read model ledger.usage.ts;
 * - decisions: ledger.core.ts, the rules as pure functions over in-memory state, and
 *   ledger.outcome.ts, what an operation decided (applied, or refused with a catalogue code);
 * - book: ledger.book.ts, one batch's in-memory view that operations decide against and post to;
 * - engine: ledger.engine.ts, group commit: queues, batches, the one-round-trip and locking paths;
 * - batch statement: ledger.batch.ts, a batch's whole outcome written as one SQL statement;
 * - views: ledger.views.ts, amounts parsed from requests and rows formatted for responses;
 * - repo: ledger.repo.ts (accounts, transactions, idempotency records, teams' budgets, invariants),
 *   ledger.holds.repo.ts, ledger.top-ups.repo.ts and ledger.usage.repo.ts (roll-up reads): the
 *   only SQL besides the batch statement.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Db, DbHandle } from '../../db/client.js';
import type { EventBus } from '../../lib/events.js';
import type { AuditService } from '../audit/audit.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import { createLedgerAccounts } from './ledger.accounts.js';
import { createLedgerContext, type SettingsGuard } from './ledger.context.js';
import { createLedgerCredits } from './ledger.credits.js';
import { createLedgerEngine } from './ledger.engine.js';
import { batchPublisher } from './ledger.events.js';
import { createLedgerHolds } from './ledger.holds.js';
import { createLedgerTopUps, queueAutoRecharge } from './ledger.top-ups.js';
import { createLedgerUsage } from './ledger.usage.js';
import type { PaymentProvider } from './payments.js';

export type { Outcome } from './ledger.outcome.js';
export type { LedgerUsage, UsageTotals } from './ledger.usage.js';

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
  /** Where each committed batch publishes its credits.*, hold.*, top_up.paid and usage.recorded events. */
  events: EventBus;
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
 * credits (add, deduct, transfer, usage), holds, and top-ups; and the usage read model. An
 * operation that moves credits answers an Outcome (ledger.outcome.ts), rendered by the routes.
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
    events: batchPublisher(deps.events),
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
    ...createLedgerUsage(),
  };
}

export type LedgerService = ReturnType<typeof createLedgerService>;
