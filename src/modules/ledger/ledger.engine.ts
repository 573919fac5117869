import { createHash } from 'node:crypto';
import type { Db, Tx } from '../../db/client.js';
import type { Actor } from '../../lib/authz.js';
import { newId } from '../../lib/ids.js';
import { formatAmount } from '../../lib/money.js';
import { AppError, type ErrorCode, toProblem } from '../../lib/problem.js';
import {
  CREDITS,
  type CreditState,
  crossedRechargeThreshold,
  monthOf,
  recordSpend,
  type TeamState,
  type TransactionType,
} from './ledger.core.js';
import * as repo from './ledger.repo.js';

/** What a ledger operation answers: an HTTP status and body, stored as-is for idempotent replays. */
export interface OpResult {
  status: number;
  body: unknown;
  replayed?: boolean;
}

export interface LedgerOp {
  /** The organizations whose `credits` rows this operation locks; the first scopes its idempotency key. */
  organizationIds: string[];
  /** Teams whose budgets this operation spends from: their rows are locked too. */
  teamIds?: string[] | undefined;
  idempotency?: { key: string; fingerprint: string } | undefined;
  requestId: string;
  run(book: Book): Promise<OpResult> | OpResult;
}

export function fingerprint(parts: unknown[]): string {
  return createHash('sha256')
    .update(JSON.stringify(parts, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)))
    .digest('hex');
}

export function refusal(code: ErrorCode, detail: string, requestId: string): OpResult {
  const err = new AppError(code, detail);
  return { status: err.status, body: toProblem(err, requestId) };
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
  readonly transactions: repo.NewTransaction[] = [];
  readonly deltas = new Map<string, bigint>();
  readonly touched = new Set<CreditState>();
  readonly recharge = new Set<CreditState>();
  /** Usage roll-ups per organization, UTC day and agent, written with the batch. */
  readonly usage = new Map<string, repo.UsageRollup>();

  readonly touchedTeams = new Set<TeamState>();

  constructor(
    readonly tx: Tx,
    readonly states: Map<string, CreditState>,
    readonly now: Date,
    readonly teams: Map<string, TeamState> = new Map(),
  ) {
    this.month = monthOf(now);
  }

  /** Counts a usage event into its organization's roll-up for today (by agent; '' for none). */
  countUsage(
    organizationId: string,
    agentId: string | undefined,
    u: { credits: bigint; tokensIn: number; tokensOut: number; cost: bigint },
  ) {
    const day = this.now.toISOString().slice(0, 10);
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

class Retry extends Error {}
const RETRYABLE_PG_CODES = new Set(['40001', '40P01']);

export interface EngineDeps {
  db: Db;
  /** Live organizations among `ids`, with whether each is active (from the organizations service). */
  organizationStates: (tx: Tx, ids: string[]) => Promise<Map<string, { active: boolean }>>;
  /** Called in the transaction for each `credits` account a change took under its auto-recharge threshold. */
  onRecharge: (tx: Tx, state: CreditState, actor: Actor) => Promise<void>;
  /** Concurrent commit lanes; an organization always uses the same lane, so its operations stay ordered. */
  lanes: number;
  maxBatch: number;
}

interface Pending {
  op: LedgerOp;
  resolve: (r: OpResult) => void;
  reject: (e: unknown) => void;
}

/**
 * Group commit. Operations queue per lane; each lane runs one database transaction at a time
 * over everything queued when it starts (up to `maxBatch`), deciding each operation exactly and
 * in arrival order against the locked rows, then writing all outcomes together. Under load one
 * commit carries many operations; idle, an operation runs at once with no added delay.
 */
export function createLedgerEngine(deps: EngineDeps) {
  const lanes = Array.from({ length: deps.lanes }, () => ({ queue: [] as Pending[], running: false }));

  function laneOf(organizationId: string) {
    let h = 0;
    for (let i = 0; i < organizationId.length; i++) h = (h * 31 + organizationId.charCodeAt(i)) | 0;
    return lanes[Math.abs(h) % lanes.length] as (typeof lanes)[number];
  }

  async function executeOnce(ops: LedgerOp[]): Promise<OpResult[]> {
    return deps.db.transaction().execute(async (tx) => {
      const ids = [...new Set(ops.flatMap((o) => o.organizationIds))].sort();
      const live = await deps.organizationStates(tx, ids);
      const liveIds = ids.filter((id) => live.has(id));
      const active = new Map([...live].map(([id, s]) => [id, s.active]));
      const keyed = ops.filter((o) => o.idempotency && live.has(o.organizationIds[0] as string));
      const locked = await repo.lockAccountsAndFindRecords(
        tx,
        liveIds,
        active,
        keyed.map((o) => [o.organizationIds[0] as string, o.idempotency?.key as string]),
      );
      const states = locked.states;
      const existing = new Map<string, repo.IdempotencyRecord>(
        locked.records.map((r) => [`${r.organization_id}\u0000${r.key}`, r]),
      );
      const teamIds = [...new Set(ops.flatMap((o) => o.teamIds ?? []))].sort();
      const book = new Book(
        tx,
        states,
        new Date(),
        teamIds.length ? await repo.lockTeams(tx, teamIds) : new Map(),
      );
      const records: repo.IdempotencyRecord[] = [];
      const results: OpResult[] = [];
      for (const op of ops) {
        // Live organizations have had their account since creation.
        const missingOrg = op.organizationIds.find((id) => !states.has(id));
        if (missingOrg) {
          results.push(refusal('not_found', `No organization "${missingOrg}"`, op.requestId));
          continue;
        }
        const scope = op.organizationIds[0] as string;
        const idem = op.idempotency;
        const k = idem ? `${scope}\u0000${idem.key}` : '';
        const prior = idem ? existing.get(k) : undefined;
        if (idem && prior) {
          results.push(
            prior.fingerprint === idem.fingerprint
              ? { status: prior.status_code, body: prior.response, replayed: true }
              : refusal(
                  'idempotency_key_reused',
                  `The key "${idem.key}" was first used for a different request`,
                  op.requestId,
                ),
          );
          continue;
        }
        let result: OpResult;
        try {
          result = await op.run(book);
        } catch (err) {
          if (!(err instanceof AppError)) throw err;
          result = { status: err.status, body: toProblem(err, op.requestId) };
        }
        results.push(result);
        if (idem) {
          const record = {
            organization_id: scope,
            key: idem.key,
            fingerprint: idem.fingerprint,
            status_code: result.status,
            response: result.body,
          };
          records.push(record);
          existing.set(k, record);
        }
      }
      for (const s of book.recharge) await deps.onRecharge(tx, s, { type: 'operator', id: 'auto_recharge' });
      const inserted = await repo.writeBatch(tx, {
        states: [...book.touched],
        deltas: [...book.deltas].map(([k, delta]) => {
          const [org, code] = k.split('\u0000') as [string, string];
          return [org, code, delta];
        }),
        transactions: book.transactions,
        records,
        usage: [...book.usage.values()],
        teams: [...book.touchedTeams],
      });
      // Another process applied one of these keys since we looked: start over, and replay it.
      if (inserted !== records.length) throw new Retry();
      return results;
    });
  }

  /** Runs a batch in one transaction, retrying on lost idempotency races and deadlocks. */
  async function execute(ops: LedgerOp[]): Promise<OpResult[]> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await executeOnce(ops);
      } catch (err) {
        const code = (err as { code?: string }).code;
        const retryable = err instanceof Retry || (code !== undefined && RETRYABLE_PG_CODES.has(code));
        if (!retryable || attempt >= 5) throw err;
      }
    }
  }

  async function drain(lane: (typeof lanes)[number]) {
    lane.running = true;
    try {
      while (lane.queue.length > 0) {
        const batch = lane.queue.splice(0, deps.maxBatch);
        try {
          const results = await execute(batch.map((p) => p.op));
          for (const [i, p] of batch.entries()) p.resolve(results[i] as OpResult);
        } catch (err) {
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      lane.running = false;
    }
  }

  return {
    /** Queues an operation on one organization; resolves when its transaction has committed. */
    submit(op: LedgerOp): Promise<OpResult> {
      const lane = laneOf(op.organizationIds[0] as string);
      return new Promise<OpResult>((resolve, reject) => {
        lane.queue.push({ op, resolve, reject });
        if (!lane.running) void drain(lane);
      });
    },
    /** Runs an operation spanning several organizations in a transaction of its own. */
    async run(op: LedgerOp): Promise<OpResult> {
      return (await execute([op]))[0] as OpResult;
    },
    format: (m: bigint) => formatAmount(m),
  };
}

export type LedgerEngine = ReturnType<typeof createLedgerEngine>;
