import type { Db, Tx } from '../../db/client.js';
import type { Actor } from '../../lib/authz.js';
import { setBounded } from '../../lib/bounded.js';
import { formatAmount } from '../../lib/money.js';
import { AppError } from '../../lib/problem.js';
import { type BatchOutcome, STALE_STATE, writeBatch, writeBatchStatement } from './ledger.batch.js';
import { Book, type LedgerOp } from './ledger.book.js';
import type { CreditState } from './ledger.core.js';
import { fromStored, type Outcome, refused, refusedBy, replayed } from './ledger.outcome.js';
import * as repo from './ledger.repo.js';

class Retry extends Error {}
const RETRYABLE_PG_CODES = new Set(['40001', '40P01']);

export interface EngineDeps {
  db: Db;
  /** One statement in a transaction of its own, kept prepared: the one-round-trip path's write. */
  prepared: (name: string, text: string, values: unknown[]) => Promise<unknown>;
  /** Live organizations among `ids`, with whether each is active (from the organizations service). */
  organizationStates: (ex: Db | Tx, ids: string[]) => Promise<Map<string, { active: boolean }>>;
  /** Called in the transaction for each `credits` account a change took under its auto-recharge threshold. */
  onRecharge: (tx: Tx, state: CreditState, actor: Actor) => Promise<void>;
  /** Concurrent commit lanes; an organization always uses the same lane, so its operations stay ordered. */
  lanes: number;
  maxBatch: number;
  /**
   * A committed batch's domain events, published in its transaction (ledger.events.ts). While
   * anyone listens, batches take the locking path: the one-round-trip statement is a
   * transaction of its own, with no place to run a handler. No one listens by default.
   */
  events?: { heard(): boolean; publish(tx: Tx, batch: BatchOutcome): Promise<void> };
}

/** The organizations a batch involves, in id order (the order every writer locks them in). */
function organizationsOf(ops: LedgerOp[]): string[] {
  return [...new Set(ops.flatMap((o) => o.organizationIds))].sort();
}

/** One operation's end in a batch: its outcome, or the error that failed it. */
type Settled = { outcome: Outcome } | { error: unknown };
export type BatchObserver = (batch: { size: number; seconds: number }) => void;

/** SQLSTATE classes of a value the database refuses: data exception, constraint, program limit. */
const DATA_CLASSES = new Set(['22', '23', '54']);

function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length === 5 && DATA_CLASSES.has(code.slice(0, 2));
}

/**
 * An error raised by this process while it decided a batch or built its statement: nothing had
 * been sent for commit, so the batch can be run again, in parts, without applying anything twice.
 */
class Unsent extends Error {
  constructor(readonly reason: unknown) {
    super('a batch failed before it was sent');
  }
}

/** Wraps an error of deciding or building, except those the engine retries itself. */
function unsent(err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (err instanceof Retry || (typeof code === 'string' && RETRYABLE_PG_CODES.has(code))) return err;
  return new Unsent(err);
}

/**
 * Whether a failed batch may be split and run again: only on proof that nothing of it committed —
 * the database refused a value (its statement then rolls back whole), or the error came before
 * anything was sent. A failure of the connection proves nothing (a COMMIT may have landed before
 * it broke), so it fails the batch as it is: running it again would apply key-less operations twice.
 */
function isolatable(err: unknown): boolean {
  return err instanceof Unsent || isDataError(err);
}

interface Pending {
  op: LedgerOp;
  resolve: (o: Outcome) => void;
  reject: (e: unknown) => void;
}

/** A `credits` state as this process last committed it, with the row version that commit left. */
interface Known {
  state: CreditState;
  version: bigint;
}

/** After another writer changed an organization's row under us, how long it takes the locking path. */
const CONTENDED_MS = 1000;
/** Organizations whose state a process remembers at most (the least recently written go first). */
const MAX_KNOWN = 100_000;

/**
 * Group commit. Operations queue per lane; each lane runs one database transaction at a time
 * over everything queued when it starts (up to `maxBatch`), deciding each operation exactly and
 * in arrival order, then writing all outcomes together. Under load one commit carries many
 * operations; idle, an operation runs at once with no added delay.
 *
 * Two ways to run a batch, with the same decisions:
 * - in one round trip, when every operation is in-memory and this process knows the current
 *   state of every organization involved (it wrote it last): decide from those states, then one
 *   guarded statement locks the rows, checks their versions and writes
 *   (writeBatchStatement in ledger.batch.ts, prepared);
 * - otherwise, or when that statement finds the state changed (another process, a settings
 *   change, an idempotency key stored meanwhile): BEGIN, lock and read the rows with the stored
 *   idempotency records, decide, write, COMMIT.
 * Either way the database has the last word: a decision stands only against the rows' current
 * versions, under their locks.
 */
export function createLedgerEngine(deps: EngineDeps) {
  const lanes = Array.from({ length: deps.lanes }, () => ({ queue: [] as Pending[], running: false }));
  const known = new Map<string, Known>();
  const observers: BatchObserver[] = [];
  const contendedUntil = new Map<string, number>();

  function laneOf(organizationId: string) {
    let h = 0;
    for (let i = 0; i < organizationId.length; i++) h = (h * 31 + organizationId.charCodeAt(i)) | 0;
    return lanes[Math.abs(h) % lanes.length] as (typeof lanes)[number];
  }

  function remember(state: CreditState, version: bigint) {
    const id = state.organizationId;
    const until = contendedUntil.get(id);
    if (until !== undefined) {
      if (Date.now() < until) return;
      contendedUntil.delete(id);
    }
    // The batch's book is done with `state`, and each batch decides from copies: no copy here.
    setBounded(known, id, { state, version }, MAX_KNOWN);
  }

  /** Remembers a committed batch's states: a row it wrote is one version past the one it read. */
  function rememberBatch(book: Book, versionsRead: Map<string, bigint>) {
    for (const [id, s] of book.states)
      remember(s, (versionsRead.get(id) ?? 0n) + (book.touched.has(s) ? 1n : 0n));
  }

  function forget(ids: string[], contended: boolean) {
    for (const id of ids) {
      known.delete(id);
      if (contended) contendedUntil.set(id, Date.now() + CONTENDED_MS);
    }
  }

  /**
   * Decides every operation in order against the book: replays and key reuse from `existing`,
   * refusals, postings. Returns each outcome and the idempotency records to store.
   */
  async function decide(ops: LedgerOp[], book: Book, existing: Map<string, repo.IdempotencyRecord>) {
    const records: repo.IdempotencyRecord[] = [];
    const outcomes: Outcome[] = [];
    for (const op of ops) {
      // Live organizations have had their account since creation.
      const missingOrg = op.organizationIds.find((id) => !book.states.has(id));
      if (missingOrg) {
        outcomes.push(refused('not_found', `No organization "${missingOrg}"`, op.requestId));
        continue;
      }
      const scope = op.organizationIds[0] as string;
      const idem = op.idempotency;
      const k = idem ? `${scope}\u0000${idem.key}` : '';
      const prior = idem ? existing.get(k) : undefined;
      if (idem && prior) {
        outcomes.push(
          prior.fingerprint === idem.fingerprint
            ? replayed(prior.outcome)
            : refused(
                'idempotency_key_reused',
                `The key "${idem.key}" was first used for a different request`,
                op.requestId,
              ),
        );
        continue;
      }
      let outcome: Outcome;
      try {
        outcome = await op.run(book);
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        outcome = refusedBy(err, op.requestId);
      }
      outcomes.push(outcome);
      if (idem) {
        const record = { organization_id: scope, key: idem.key, fingerprint: idem.fingerprint, outcome };
        records.push(record);
        existing.set(k, record);
      }
    }
    return { outcomes, records };
  }

  /**
   * What the batch's one database transaction applies, as its statement writes it: the one place
   * that holds every transaction the batch posted (see BatchOutcome).
   */
  function batchOutcome(book: Book, records: repo.IdempotencyRecord[]): BatchOutcome {
    return {
      at: book.now,
      states: [...book.touched],
      deltas: [...book.deltas].map(([k, delta]): [string, string, bigint] => {
        const [org, code] = k.split('\u0000') as [string, string];
        return [org, code, delta];
      }),
      transactions: book.transactions,
      records,
      usage: [...book.usage.values()],
      teams: [...book.touchedTeams],
    };
  }

  /**
   * The one-round-trip path. Undefined when it does not apply or the state it decided from is no
   * longer current; nothing was written then.
   */
  async function executeKnown(ops: LedgerOp[]): Promise<Outcome[] | undefined> {
    if (!ops.every((o) => o.inMemory && !o.teamIds?.length) || deps.events?.heard()) return undefined;
    const ids = organizationsOf(ops);
    const current = ids.map((id) => known.get(id));
    if (current.some((k) => k === undefined)) return undefined;
    const live = await deps.organizationStates(deps.db, ids);
    if (live.size !== ids.length) return undefined;
    const read = new Map(ids.map((id, i) => [id, (current[i] as Known).version]));
    const states = new Map(
      ids.map((id, i) => [
        id,
        { ...(current[i] as Known).state, active: live.get(id)?.active ?? false } as CreditState,
      ]),
    );
    const book = new Book(undefined, states, new Date());
    let statement: ReturnType<typeof writeBatchStatement>;
    let outcomes: Outcome[];
    try {
      const decided = await decide(ops, book, new Map());
      if (book.recharge.size > 0) return undefined; // starting a top-up takes the locking path
      outcomes = decided.outcomes;
      const batch = batchOutcome(book, decided.records);
      statement = writeBatchStatement(batch, {
        organizationIds: ids,
        versions: ids.map((id) => read.get(id) as bigint),
      });
    } catch (err) {
      throw unsent(err);
    }
    try {
      const { name, text, values } = statement;
      await deps.prepared(name, text, values);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === STALE_STATE || (code !== undefined && RETRYABLE_PG_CODES.has(code))) {
        forget(ids, true);
        return undefined;
      }
      throw err;
    }
    rememberBatch(book, read);
    return outcomes;
  }

  /** The locking path: one transaction that locks and reads the rows, decides, and writes. */
  async function executeLocked(ops: LedgerOp[]): Promise<Outcome[]> {
    const done = await repo.transaction(deps.db, async (tx) => {
      const ids = organizationsOf(ops);
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
      const existing = new Map<string, repo.IdempotencyRecord>(
        locked.records.map((r) => [
          `${r.organization_id}\u0000${r.key}`,
          {
            organization_id: r.organization_id,
            key: r.key,
            fingerprint: r.fingerprint,
            outcome: fromStored(r),
          },
        ]),
      );
      const teamIds = [...new Set(ops.flatMap((o) => o.teamIds ?? []))].sort();
      const book = new Book(
        tx,
        locked.states,
        new Date(),
        teamIds.length ? await repo.lockTeams(tx, teamIds) : new Map(),
      );
      // Inside the transaction: whatever fails here rolls back with it, so nothing was committed.
      const decided = await decide(ops, book, existing).catch((err: unknown) => {
        throw unsent(err);
      });
      for (const s of book.recharge) await deps.onRecharge(tx, s, { type: 'operator', id: 'auto_recharge' });
      const batch = batchOutcome(book, decided.records);
      const inserted = await writeBatch(tx, batch);
      // Another process applied one of these keys since we looked: start over, and replay it.
      if (inserted !== decided.records.length) throw new Retry();
      await deps.events?.publish(tx, batch);
      return { outcomes: decided.outcomes, book, versions: locked.versions };
    });
    rememberBatch(done.book, done.versions);
    return done.outcomes;
  }

  /** Runs a batch, in one round trip when it can; retries lost idempotency races and deadlocks. */
  async function execute(ops: LedgerOp[]): Promise<Outcome[]> {
    const quick = await executeKnown(ops);
    if (quick) return quick;
    for (let attempt = 0; ; attempt++) {
      try {
        return await executeLocked(ops);
      } catch (err) {
        const code = (err as { code?: string }).code;
        const retryable = err instanceof Retry || (code !== undefined && RETRYABLE_PG_CODES.has(code));
        if (!retryable || attempt >= 5) throw err;
      }
    }
  }

  /**
   * Runs a batch and answers each operation on its own. When the database (or building the
   * statement) fails the batch for something one operation carries — a value it refuses, a
   * number past a column's range — the batch is split in halves and each half is run again, until
   * the operation at fault stands alone: it is refused (validation_failed), and its batch-mates
   * commit. Input validation should already have caught such values; this is the second wall,
   * so that one tenant's request can never fail another's. A failure of the connection itself is
   * not split (every half would fail the same way): the whole batch fails.
   */
  async function executeIsolating(ops: LedgerOp[]): Promise<Settled[]> {
    try {
      return (await execute(ops)).map((outcome) => ({ outcome }));
    } catch (error) {
      const single = ops.length === 1 ? (ops[0] as LedgerOp) : undefined;
      const cause = error instanceof Unsent ? error.reason : error;
      if (single && isDataError(cause))
        return [
          {
            outcome: refused(
              'validation_failed',
              `The database refused a value of this request (SQLSTATE ${(cause as { code: string }).code})`,
              single.requestId,
            ),
          },
        ];
      if (single || !isolatable(error)) return ops.map(() => ({ error: cause }));
      const half = Math.ceil(ops.length / 2);
      const first = await executeIsolating(ops.slice(0, half));
      return [...first, ...(await executeIsolating(ops.slice(half)))];
    }
  }

  /** Hands a batch's outcomes to its waiting requests. */
  function settle(batch: Pending[], outcomes: Settled[]) {
    for (const [i, p] of batch.entries()) {
      const o = outcomes[i] as Settled;
      if ('outcome' in o) p.resolve(o.outcome);
      else p.reject(o.error);
    }
  }

  async function drain(lane: (typeof lanes)[number]) {
    lane.running = true;
    let done: { batch: Pending[]; outcomes: Settled[] } | undefined;
    try {
      while (lane.queue.length > 0) {
        const batch = lane.queue.splice(0, deps.maxBatch);
        const started = performance.now();
        // The next batch starts before the last one's requests are answered: its statement is on
        // its way to the database while this process writes those responses.
        const running = executeIsolating(batch.map((p) => p.op));
        if (done) settle(done.batch, done.outcomes);
        done = { batch, outcomes: await running };
        const seconds = (performance.now() - started) / 1000;
        for (const observe of observers) observe({ size: batch.length, seconds });
      }
    } finally {
      if (done) settle(done.batch, done.outcomes);
      lane.running = false;
    }
  }

  return {
    /** Queues an operation on one organization; resolves when its transaction has committed. */
    submit<V>(op: LedgerOp<V>): Promise<Outcome<V>> {
      const lane = laneOf(op.organizationIds[0] as string);
      return new Promise<Outcome<V>>((resolve, reject) => {
        // A replay's value was stored by an operation with the same fingerprint: the same kind.
        lane.queue.push({ op, resolve: resolve as (o: Outcome) => void, reject });
        if (!lane.running) void drain(lane);
      });
    },
    /** Runs an operation spanning several organizations in a transaction of its own. */
    async run<V>(op: LedgerOp<V>): Promise<Outcome<V>> {
      const [o] = (await executeIsolating([op])) as [Settled];
      if ('error' in o) throw o.error;
      return o.outcome as Outcome<V>;
    },
    /** Calls `observer` after each group-committed batch with its size and how long it took. */
    observe(observer: BatchObserver) {
      observers.push(observer);
    },
    /** Each lane's queue right now: operations waiting, and whether a batch is in flight. */
    stats() {
      return { lanes: lanes.map((l) => ({ queued: l.queue.length, running: l.running })) };
    },
    format: (m: bigint) => formatAmount(m),
  };
}

export type LedgerEngine = ReturnType<typeof createLedgerEngine>;
