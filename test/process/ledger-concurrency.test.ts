import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { createPostgresDb, type Db } from '../../src/db/client.js';
import {
  ADMIN_TOKEN,
  createScratchDatabase,
  createTestApp,
  onPostgres,
  type TestContext,
} from '../harness.js';
import { listening, orgbase, type Run } from './cli.js';

// Exactness under concurrency: thousands of debits race for one small balance, over real HTTP,
// through one or two real server processes. Whatever the interleaving, exactly balance/amount
// debits are accepted, the rest are refused whole, and nothing is lost, doubled or negative.

const AUTH = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
const IN_FLIGHT_PER_PROCESS = 64;

/** Test-local decimal -> micro-units, so the checks do not lean on the code under test. */
function micros(text: string): bigint {
  const m = /^(-)?(\d+)(?:\.(\d{1,6}))?$/.exec(text);
  if (!m?.[2]) throw new Error(`not an amount: ${text}`);
  const v = BigInt(m[2]) * 1_000_000n + BigInt((m[3] ?? '').padEnd(6, '0'));
  return m[1] ? -v : v;
}

interface Reply {
  status: number;
  body: Record<string, unknown>;
  replayed: boolean;
}

async function call(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  key?: string,
): Promise<Reply> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: key ? { ...AUTH, 'idempotency-key': key } : AUTH,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed: Record<string, unknown>;
  try {
    parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    parsed = { raw: text };
  }
  return { status: res.status, body: parsed, replayed: res.headers.get('idempotent-replayed') === 'true' };
}

type Kind = 'deduct' | 'usage';

interface Outcome {
  index: number;
  base: string;
  kind: Kind;
  /** HTTP status; 0 when the request itself failed. */
  status: number;
  verdict: 'accepted' | 'refused' | 'other';
  transactionId?: string;
  balanceAfter?: string;
  detail?: string;
  raw?: unknown;
}

interface UsageResultView {
  status: 'applied' | 'rejected';
  transaction_id: string | null;
  balance_after: string | null;
  code: string | null;
  detail: string | null;
  replayed: boolean;
}

function usageBody(org: string, credits: string, key: string) {
  return { events: [{ organization_id: org, credits, idempotency_key: key }] };
}

async function debit(
  base: string,
  org: string,
  kind: Kind,
  amount: string,
  key: string,
  index: number,
): Promise<Outcome> {
  const o: Outcome = { index, base, kind, status: 0, verdict: 'other' };
  try {
    if (kind === 'deduct') {
      const r = await call(
        base,
        'POST',
        `/api/organizations/${org}/credits/deduct`,
        { amount, reason: 'burst' },
        key,
      );
      o.status = r.status;
      o.raw = r.body;
      if (r.status === 201) {
        o.verdict = 'accepted';
        o.transactionId = r.body.id as string;
        o.balanceAfter = r.body.balance_after as string;
      } else if (r.status === 402 && r.body.code === 'insufficient_credits') {
        o.verdict = 'refused';
        o.detail = r.body.detail as string;
      }
    } else {
      const r = await call(base, 'POST', '/api/usage', usageBody(org, amount, key));
      o.status = r.status;
      o.raw = r.body;
      const result = (r.body.results as UsageResultView[] | undefined)?.[0];
      if (r.status === 200 && result?.status === 'applied') {
        o.verdict = 'accepted';
        o.transactionId = result.transaction_id ?? undefined;
        o.balanceAfter = result.balance_after ?? undefined;
      } else if (
        r.status === 200 &&
        result?.status === 'rejected' &&
        result.code === 'insufficient_credits'
      ) {
        o.verdict = 'refused';
        o.detail = result.detail ?? undefined;
      }
    }
  } catch (err) {
    o.raw = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  }
  return o;
}

/** Runs `count` tasks with at most `width` in flight. */
async function bounded<T>(count: number, width: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      out[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, count) }, worker));
  return out;
}

/**
 * Fires `total` single-event debits of `amount` at `org`, request i going to bases[i % n] and
 * alternating deduct/usage per process, each with its own idempotency key.
 */
async function burst(bases: string[], org: string, total: number, amount: string, label: string) {
  const perBase = bases.map((_, b) =>
    Array.from({ length: total }, (_, i) => i).filter((i) => i % bases.length === b),
  );
  const started = performance.now();
  const outcomes = (
    await Promise.all(
      bases.map((base, b) => {
        const indices = perBase[b] as number[];
        return bounded(indices.length, IN_FLIGHT_PER_PROCESS, (j) => {
          const i = indices[j] as number;
          const kind: Kind = Math.floor(i / bases.length) % 2 === 0 ? 'deduct' : 'usage';
          return debit(base, org, kind, amount, `${label}-${i}`, i);
        });
      }),
    )
  ).flat();
  const ms = performance.now() - started;
  const accepted = outcomes.filter((o) => o.verdict === 'accepted').length;
  console.log(
    `[ledger-concurrency] ${label}: ${total} debits over ${bases.length} process(es) in ${ms.toFixed(0)} ms = ` +
      `${((total / ms) * 1000).toFixed(0)} req/s (${accepted} accepted, ${total - accepted} refused)`,
  );
  return outcomes;
}

/** The exactness assertions over one burst's answers. */
function expectExact(outcomes: Outcome[], initial: string, amount: string, bases: string[]) {
  const others = outcomes.filter((o) => o.verdict === 'other');
  expect(others.slice(0, 5), `${others.length} unexpected answers`).toEqual([]);
  expect(outcomes.filter((o) => o.status >= 500 || o.status === 0)).toEqual([]);

  const accepted = outcomes.filter((o) => o.verdict === 'accepted');
  const refused = outcomes.filter((o) => o.verdict === 'refused');
  const start = micros(initial);
  const step = micros(amount);
  expect(start % step).toBe(0n);
  const expected = Number(start / step);
  expect(accepted.length).toBe(expected);
  expect(refused.length).toBe(outcomes.length - expected);
  expect(BigInt(accepted.length) * step).toBe(start);

  // Every accepted debit saw a distinct balance: exactly start-step, start-2·step, …, 0.
  const after = accepted
    .map((o) => micros(o.balanceAfter as string))
    .sort((a, b) => (a < b ? 1 : a > b ? -1 : 0));
  expect(after).toEqual(Array.from({ length: expected }, (_, k) => start - BigInt(k + 1) * step));
  expect(after.every((b) => b >= 0n)).toBe(true);
  expect(new Set(accepted.map((o) => o.transactionId)).size).toBe(expected);
  // A refusal only ever happened once the balance was spent: none was premature.
  const refusedDetails = new Set(refused.map((o) => o.detail));
  expect([...refusedDetails]).toEqual(refused.length ? [`Needs ${amount} but only 0 can be spent`] : []);

  // Both request shapes, and every process, really took part in the race.
  for (const kind of ['deduct', 'usage'] as const)
    expect(accepted.filter((o) => o.kind === kind).length, `accepted ${kind}`).toBeGreaterThan(0);
  for (const base of bases)
    expect(accepted.filter((o) => o.base === base).length, `accepted via ${base}`).toBeGreaterThan(0);
}

interface LedgerFacts {
  debits: bigint;
  debited: bigint;
  minBalanceAfter: bigint;
  idempotencyRecords: bigint;
}

async function ledgerFacts(db: Db, org: string): Promise<LedgerFacts> {
  const t = await sql<{ debits: bigint; debited: bigint; min_balance: bigint }>`select
      count(*) filter (where type in ('deduction', 'usage')) as debits,
      coalesce(sum(amount) filter (where type in ('deduction', 'usage')), 0)::bigint as debited,
      min(balance_after) as min_balance
    from ledger_transactions where organization_id = ${org}`.execute(db);
  const k = await sql<{ n: bigint }>`select count(*) as n from idempotency_records
    where organization_id = ${org}`.execute(db);
  const row = t.rows[0];
  return {
    debits: BigInt(row?.debits ?? -1),
    debited: BigInt(row?.debited ?? -1),
    minBalanceAfter: BigInt(row?.min_balance ?? -1),
    idempotencyRecords: BigInt(k.rows[0]?.n ?? -1),
  };
}

async function newFundedOrg(base: string, funds: string): Promise<string> {
  const created = await call(base, 'POST', '/api/organizations', { name: 'Concurrency Org' });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const org = created.body.id as string;
  const added = await call(base, 'POST', `/api/organizations/${org}/credits/add`, { amount: funds });
  expect(added.status, JSON.stringify(added.body)).toBe(201);
  return org;
}

async function balanceOf(base: string, org: string) {
  const r = await call(base, 'GET', `/api/organizations/${org}/balance`);
  expect(r.status).toBe(200);
  return r.body as { available: string; held: string; month: string; month_spend: string };
}

async function expectVerified(base: string) {
  const r = await call(base, 'GET', '/api/ledger/verify');
  expect(r.status).toBe(200);
  expect(r.body).toMatchObject({ ok: true, violations: [] });
}

/**
 * One Idempotency-Key, one body, 50 times at once across `bases`, for deduct and for usage:
 * credits move once, every answer carries the same transaction, 49 of them are replays.
 */
async function expectIdempotentUnderRace(bases: string[], org: string) {
  const before = micros((await balanceOf(bases[0] as string, org)).available);
  const deducts = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      call(
        bases[i % bases.length] as string,
        'POST',
        `/api/organizations/${org}/credits/deduct`,
        { amount: '0.25', reason: 'same request' },
        'race-same-deduct',
      ),
    ),
  );
  expect(deducts.filter((r) => r.status !== 201)).toEqual([]);
  expect(new Set(deducts.map((r) => r.body.id)).size).toBe(1);
  expect(new Set(deducts.map((r) => r.body.balance_after))).toEqual(
    new Set([formatMicros(before - 250_000n)]),
  );
  expect(deducts.filter((r) => !r.replayed).length).toBe(1);
  expect(micros((await balanceOf(bases[0] as string, org)).available)).toBe(before - 250_000n);

  const usages = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      call(
        bases[i % bases.length] as string,
        'POST',
        '/api/usage',
        usageBody(org, '0.25', 'race-same-usage'),
      ),
    ),
  );
  expect(usages.filter((r) => r.status !== 200)).toEqual([]);
  const results = usages.map((r) => (r.body.results as UsageResultView[])[0] as UsageResultView);
  expect(results.filter((r) => r.status !== 'applied')).toEqual([]);
  expect(new Set(results.map((r) => r.transaction_id)).size).toBe(1);
  expect(results.filter((r) => !r.replayed).length).toBe(1);
  expect(micros((await balanceOf(bases[0] as string, org)).available)).toBe(before - 500_000n);
}

function formatMicros(m: bigint): string {
  const neg = m < 0n;
  const a = neg ? -m : m;
  const frac = (a % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${a / 1_000_000n}${frac ? `.${frac}` : ''}`;
}

describe.runIf(onPostgres)('ledger exactness across two server processes on PostgreSQL', () => {
  const servers: Run[] = [];
  let drop: (() => Promise<void>) | undefined;
  let db: { db: Db; close: () => Promise<void> } | undefined;

  afterAll(async () => {
    for (const s of servers)
      if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
    await Promise.all(servers.map((s) => s.exited));
    await db?.close();
    await drop?.();
  });

  it('accepts exactly balance/amount of 3000 racing debits, and applies a raced idempotent request once', async () => {
    const scratch = await createScratchDatabase();
    drop = scratch.drop;
    const env = { DATABASE_URL: scratch.url, PORT: '0', ADMIN_TOKEN };
    servers.push(orgbase(['serve'], env), orgbase(['serve'], env));
    const bases = await Promise.all(servers.map((s) => listening(s)));
    expect(new Set(bases).size).toBe(2);
    db = createPostgresDb(scratch.url, 2);

    const org = await newFundedOrg(bases[0] as string, '10.000000');
    const month = (await balanceOf(bases[1] as string, org)).month;
    const outcomes = await burst(bases, org, 3000, '0.01', 'pg-burst');
    expectExact(outcomes, '10.000000', '0.01', bases);

    for (const base of bases) {
      const bal = await balanceOf(base, org);
      expect(bal.available).toBe('0');
      expect(bal.held).toBe('0');
      if (bal.month === month) expect(bal.month_spend).toBe('10');
    }
    const facts = await ledgerFacts(db.db, org);
    expect(facts).toEqual({
      debits: 1000n,
      debited: 10_000_000n,
      minBalanceAfter: 0n,
      idempotencyRecords: 3000n,
    });
    await expectVerified(bases[1] as string);

    // Top up, then race one idempotent request 50 times across both processes.
    const topped = await call(bases[1] as string, 'POST', `/api/organizations/${org}/credits/add`, {
      amount: '1',
    });
    expect(topped.status).toBe(201);
    await expectIdempotentUnderRace(bases, org);
    expect((await balanceOf(bases[0] as string, org)).available).toBe('0.5');
    expect(await ledgerFacts(db.db, org)).toEqual({
      debits: 1002n,
      debited: 10_500_000n,
      minBalanceAfter: 0n,
      idempotencyRecords: 3002n,
    });
    await expectVerified(bases[0] as string);

    for (const s of servers) s.child.kill('SIGTERM');
    expect(await Promise.all(servers.map((s) => s.exited))).toEqual([0, 0]);
    for (const s of servers) expect(s.stdout()).not.toMatch(/"level":(50|60)/);

    const verify = orgbase(['ledger', 'verify'], { DATABASE_URL: scratch.url });
    expect(await verify.exited, verify.stderr()).toBe(0);
    expect(verify.stdout()).toMatch(/transactions, \d+ accounts: OK/);
  }, 120_000);
});

describe.runIf(!onPostgres)('ledger exactness in one process on PGlite', () => {
  let t: TestContext | undefined;
  afterAll(() => t?.close());

  it('accepts exactly balance/amount of 1000 racing debits, and applies a raced idempotent request once', async () => {
    t = await createTestApp();
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;

    const org = await newFundedOrg(base, '4.000000');
    const month = (await balanceOf(base, org)).month;
    const outcomes = await burst([base], org, 1000, '0.01', 'pglite-burst');
    expectExact(outcomes, '4.000000', '0.01', [base]);

    const bal = await balanceOf(base, org);
    expect(bal.available).toBe('0');
    if (bal.month === month) expect(bal.month_spend).toBe('4');
    expect(await ledgerFacts(t.db.db, org)).toEqual({
      debits: 400n,
      debited: 4_000_000n,
      minBalanceAfter: 0n,
      idempotencyRecords: 1000n,
    });
    await expectVerified(base);

    expect((await call(base, 'POST', `/api/organizations/${org}/credits/add`, { amount: '1' })).status).toBe(
      201,
    );
    await expectIdempotentUnderRace([base], org);
    expect((await balanceOf(base, org)).available).toBe('0.5');
    expect(await ledgerFacts(t.db.db, org)).toEqual({
      debits: 402n,
      debited: 4_500_000n,
      minBalanceAfter: 0n,
      idempotencyRecords: 1002n,
    });
    await expectVerified(base);
  }, 120_000);
});
