/**
 * One batch's view of the ledger, and what an operation on it is: the operations decide against a
 * Book (the `credits` states of the batch, in memory), and the engine writes what they posted.
 */
import { hash } from 'node:crypto';
import type { Tx } from '../../db/client.js';
import type { Actor } from '../../lib/authz.js';
import { newId } from '../../lib/ids.js';
import {
  CREDITS,
  type CreditState,
  crossedRechargeThreshold,
  monthOf,
  recordSpend,
  type TeamState,
  type TransactionType,
} from './ledger.core.js';
import type { Outcome } from './ledger.outcome.js';
import type * as repo from './ledger.repo.js';

/** An operation the engine decides in a batch; `V` is the value it answers when applied. */
export interface LedgerOp<V = unknown> {
  /** The organizations whose `credits` rows this operation locks; the first scopes its idempotency key. */
  organizationIds: string[];
  /** Teams whose budgets this operation spends from: their rows are locked too. */
  teamIds?: string[] | undefined;
  idempotency?: { key: string; fingerprint: string } | undefined;
  requestId: string;
  /**
   * True when `run` decides from the book's states alone and runs no SQL of its own (it never
   * touches `book.tx`): such operations may be decided from the engine's cached states and
   * committed in one guarded statement.
   */
  inMemory?: boolean;
  run(book: Book): Promise<Outcome<V>> | Outcome<V>;
}

/**
 * What a replay must repeat, hashed. Amounts (bigint) hash as their decimal strings; they are only
 * ever top-level parts (nested values come from JSON), so no replacer walks the whole tree.
 */
export function fingerprint(parts: unknown[]): string {
  const plain = parts.map((v) => (typeof v === 'bigint' ? v.toString() : v));
  return hash('sha256', JSON.stringify(plain), 'hex');
}

export interface Posting {
  type: TransactionType;
  amount: bigint;
  /** [account, signed amount]: credits to an account are positive; they must sum to zero. */
  legs: Array<[string, bigint]>;
  /** How much of this counts as spend in the calendar month. */
  spend?: bigint;
  description?: string | null;
  metadata?: Record<string, unknown>;
  relatedId?: string | null;
  actor: Actor;
}

/**
 * One database transaction's view of the ledger: the locked `credits` states, the deltas to
 * other accounts, and the transactions to write. Operations decide against it in order.
 */
export class Book {
  readonly month: string;
  /** The UTC day usage is rolled up under, e.g. "2026-11-30". */
  readonly day: string;
  readonly transactions: repo.NewTransaction[] = [];
  readonly deltas = new Map<string, bigint>();
  readonly touched = new Set<CreditState>();
  readonly recharge = new Set<CreditState>();
  /** Usage roll-ups per organization, UTC day and agent, written with the batch. */
  readonly usage = new Map<string, repo.UsageRollup>();

  readonly touchedTeams = new Set<TeamState>();

  constructor(
    private readonly transaction: Tx | undefined,
    readonly states: Map<string, CreditState>,
    readonly now: Date,
    readonly teams: Map<string, TeamState> = new Map(),
  ) {
    this.month = monthOf(now);
    this.day = now.toISOString().slice(0, 10);
  }

  /** The database transaction holding the rows' locks; absent for in-memory operations. */
  get tx(): Tx {
    if (!this.transaction) throw new Error('an in-memory ledger operation used the database');
    return this.transaction;
  }

  /** Counts a usage event into its organization's roll-up for today (by agent; '' for none). */
  countUsage(
    organizationId: string,
    agentId: string | undefined,
    u: { credits: bigint; tokensIn: number; tokensOut: number; cost: bigint },
  ) {
    const day = this.day;
    const agent = agentId ?? '';
    const k = `${organizationId}\u0000${day}\u0000${agent}`;
    const r = this.usage.get(k) ?? {
      organization_id: organizationId,
      day,
      agent_id: agent,
      events: 0n,
      credits: 0n,
      tokens_in: 0n,
      tokens_out: 0n,
      cost: 0n,
    };
    r.events += 1n;
    r.credits += u.credits;
    r.tokens_in += BigInt(u.tokensIn);
    r.tokens_out += BigInt(u.tokensOut);
    r.cost += u.cost;
    this.usage.set(k, r);
  }

  /** Adds to a team's spend this month (its budget was checked with checkTeam). */
  spendByTeam(team: TeamState, amount: bigint) {
    team.monthSpend = (team.spendMonth === this.month ? team.monthSpend : 0n) + amount;
    team.spendMonth = this.month;
    this.touchedTeams.add(team);
  }

  state(organizationId: string): CreditState {
    const s = this.states.get(organizationId);
    if (!s) throw new Error(`credits account of ${organizationId} is not locked in this book`);
    return s;
  }

  post(organizationId: string, p: Posting): repo.NewTransaction {
    let sum = 0n;
    for (const [, amount] of p.legs) sum += amount;
    if (sum !== 0n) throw new Error(`unbalanced ${p.type}: legs sum to ${sum}`);
    const s = this.state(organizationId);
    for (const [account, amount] of p.legs) {
      if (account === CREDITS) {
        const before = s.balance;
        s.balance += amount;
        if (crossedRechargeThreshold(s, before)) this.recharge.add(s);
      } else {
        const k = `${organizationId}\u0000${account}`;
        this.deltas.set(k, (this.deltas.get(k) ?? 0n) + amount);
      }
    }
    if (p.spend) recordSpend(s, p.spend, this.month);
    this.touched.add(s);
    const t: repo.NewTransaction = {
      organization_id: organizationId,
      id: newId('txn'),
      type: p.type,
      amount: p.amount,
      entries: p.legs,
      balance_after: s.balance,
      description: p.description ?? null,
      actor_type: p.actor.type,
      actor_id: p.actor.id,
      metadata: p.metadata ?? {},
      related_id: p.relatedId ?? null,
      created_at: this.now,
    };
    this.transactions.push(t);
    return t;
  }
}
