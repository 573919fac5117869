/**
 * The engine's one-round-trip path decides from the `credits` states this process wrote last,
 * and commits only if their row versions are still current. These tests change the rows behind
 * the engine's back (as another process, an operator's SQL or a settings change would) and check
 * that every decision is still made against the current row: never against the remembered one.
 */
import fc from 'fast-check';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { createPostgresDb } from '../../src/db/client.js';
import { pgArray } from '../../src/db/pg-array.js';
import { createFundedOrg } from '../factories.js';
import { ADMIN_TOKEN, createTestApp, onPostgres, type TestContext } from '../harness.js';

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

/** A funded organization's id. */
const fundedOrg = async (amount: string) => (await createFundedOrg(t, amount)).id;

const deduct = (org: string, amount: string, key?: string) =>
  t.call({
    method: 'POST',
    url: `/api/organizations/${org}/credits/deduct`,
    payload: { amount },
    headers: key ? { 'idempotency-key': key } : {},
  });

async function available(org: string): Promise<string> {
  return (await t.call({ method: 'GET', url: `/api/organizations/${org}/balance` })).json().available;
}

async function version(org: string): Promise<bigint> {
  const { rows } = await sql<{ version: bigint }>`select version from ledger_accounts
    where organization_id = ${org} and code = 'credits'`.execute(t.db.db);
  return BigInt(rows[0]?.version ?? -1);
}

/**
 * Another writer moves `micros` into (or, negative, out of) the organization's `credits` from an
 * existing counter account, with its transaction, so the books still balance: nothing the engine
 * remembers knows of it.
 */
async function moveBehindEngine(org: string, counter: string, micros: bigint, type: string) {
  const amount = micros < 0n ? -micros : micros;
  await sql`update ledger_accounts set balance = balance + ${micros}
    where organization_id = ${org} and code = 'credits'`.execute(t.db.db);
  await sql`update ledger_accounts set balance = balance - ${micros}
    where organization_id = ${org} and code = ${counter}`.execute(t.db.db);
  await sql`insert into ledger_transactions (organization_id, id, type, amount, entry_accounts, entry_amounts,
      balance_after, actor_type)
    select ${org}, 'txn_01zzzzzzzzzzzzzzzzzzzzzzzz', ${type}, ${amount},
      array[${counter}, 'credits'], array[${-micros}, ${micros}]::bigint[], balance, 'operator'
    from ledger_accounts where organization_id = ${org} and code = 'credits'`.execute(t.db.db);
}

async function verified() {
  expect((await t.call({ method: 'GET', url: '/api/ledger/verify' })).json()).toMatchObject({ ok: true });
}

describe('the one-statement ledger path', () => {
  it('advances the row version on every change, the engine’s and anyone else’s', async () => {
    const org = await fundedOrg('10');
    const v0 = await version(org);
    expect((await deduct(org, '1')).statusCode).toBe(201);
    expect(await version(org)).toBe(v0 + 1n);
    // A writer that does not know about versions still advances it (the trigger).
    await sql`update ledger_accounts set monthly_spending_limit = 5000000
      where organization_id = ${org} and code = 'credits'`.execute(t.db.db);
    expect(await version(org)).toBe(v0 + 2n);
  });

  it('decides from the current balance when the row changed behind the engine', async () => {
    const org = await fundedOrg('10');
    expect((await deduct(org, '1')).statusCode).toBe(201); // the engine now knows 9
    await moveBehindEngine(org, 'sys:adjustments', -8_500_000n, 'deduction'); // another writer takes 8.5
    // Remembered: 9 available; current: 0.5. One credit must be refused, and nothing written.
    const refused = await deduct(org, '1');
    expect(refused.statusCode, refused.body).toBe(402);
    expect(refused.json().code).toBe('insufficient_credits');
    expect(await available(org)).toBe('0.5');
    expect((await deduct(org, '0.5')).statusCode).toBe(201);
    expect(await available(org)).toBe('0');
    await verified();
  });

  it('does not refuse from a remembered balance that another writer has since raised', async () => {
    const org = await fundedOrg('1');
    expect((await deduct(org, '1')).statusCode).toBe(201); // the engine now knows 0
    await moveBehindEngine(org, 'sys:top_ups', 5_000_000n, 'top_up'); // another writer adds 5
    // Decided from memory this is a refusal with nothing to write; it must still be checked.
    const res = await deduct(org, '2');
    expect(res.statusCode, res.body).toBe(201);
    expect(await available(org)).toBe('3');
    await verified();
  });

  it('applies a spending limit set behind the engine to the very next debit', async () => {
    const org = await fundedOrg('100');
    expect((await deduct(org, '1')).statusCode).toBe(201);
    await sql`update ledger_accounts set monthly_spending_limit = 1500000
      where organization_id = ${org} and code = 'credits'`.execute(t.db.db);
    const res = await deduct(org, '1');
    expect(res.statusCode, res.body).toBe(402);
    expect(res.json().code).toBe('spending_limit_exceeded');
    expect((await deduct(org, '0.5')).statusCode).toBe(201);
    expect(await available(org)).toBe('98.5');
  });

  it('replays a key stored before the engine knew the organization’s state, moving nothing', async () => {
    const org = await fundedOrg('10');
    const first = await deduct(org, '2', 'known-replay-1');
    expect(first.statusCode).toBe(201);
    expect((await deduct(org, '1')).statusCode).toBe(201); // state known again, key not in memory
    const replay = await deduct(org, '2', 'known-replay-1');
    expect(replay.statusCode).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toEqual(first.json());
    expect(await available(org)).toBe('7');
    // A refusal replays as a refusal, even once the balance would allow it.
    const refused = await deduct(org, '100', 'known-replay-2');
    expect(refused.statusCode).toBe(402);
    await t.call({
      method: 'POST',
      url: `/api/organizations/${org}/credits/add`,
      payload: { amount: '1000' },
    });
    const again = await deduct(org, '100', 'known-replay-2');
    expect(again.statusCode).toBe(402);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(await available(org)).toBe('1007');
    await verified();
  });

  it('answers a batch decided from a stale state exactly as the locking path would', async () => {
    const org = await fundedOrg('3');
    expect((await deduct(org, '1')).statusCode).toBe(201); // known: 2
    await sql`update ledger_accounts set overdraft_enabled = true, overdraft_limit = 1000000
      where organization_id = ${org} and code = 'credits'`.execute(t.db.db);
    const res = await t.call({
      method: 'POST',
      url: '/api/usage',
      payload: {
        events: Array.from({ length: 4 }, (_, i) => ({
          organization_id: org,
          credits: '1',
          idempotency_key: `stale-batch-${i}`,
        })),
      },
    });
    expect(res.statusCode, res.body).toBe(200);
    // 2 available plus 1 of overdraft: three applied, the fourth refused, in order.
    expect(res.json().results.map((r: { status: string }) => r.status)).toEqual([
      'applied',
      'applied',
      'applied',
      'rejected',
    ]);
    expect(await available(org)).toBe('-1');
    await verified();
  });
});

describe('pgArray', () => {
  it('round-trips any strings and nulls through a text[] parameter', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.string({ unit: 'grapheme', maxLength: 12 }),
            fc.constantFrom(
              '',
              'NULL',
              'null',
              'NuLl',
              ' x',
              '{a,b}',
              '"q"',
              'back\\slash',
              'a,b',
              'sys:usage',
            ),
            fc.constant(null),
          ),
          { maxLength: 8 },
        ),
        async (values) => {
          const clean = values.map((v) => (v === null ? null : v.replaceAll('\u0000', '')));
          const { rows } = await t.db.prepared('test_text_array', 'select $1::text[] as a', [pgArray(clean)]);
          expect(rows[0]?.a).toEqual(clean);
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe.runIf(onPostgres)('two processes, one of them without prepared statements', () => {
  it('alternate debits on one organization exactly, each deciding again when the other wrote', async () => {
    const other = await buildApp({
      db: createPostgresDb(t.db.poolUrl as string, 3, { prepare: false }),
      adminToken: ADMIN_TOKEN,
    });
    try {
      const org = await fundedOrg('10');
      const there = (amount: string) =>
        other.inject({
          method: 'POST',
          url: `/api/organizations/${org}/credits/deduct`,
          payload: { amount },
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        });
      // Each side remembers the state it wrote last, which the other side has since changed.
      for (let i = 0; i < 4; i++) {
        expect((await deduct(org, '1')).statusCode).toBe(201);
        expect((await there('1')).statusCode).toBe(201);
      }
      expect((await there('3')).statusCode).toBe(402); // 2 left, whatever `other` remembers
      expect((await deduct(org, '2')).statusCode).toBe(201);
      expect(await available(org)).toBe('0');
      await verified();
    } finally {
      await other.close();
    }
  });
});

describe.runIf(onPostgres)('the hot statement’s connections', () => {
  it('force generic plans, and only they: other queries keep plans for their values', async () => {
    const db = createPostgresDb(t.db.poolUrl as string, 3);
    try {
      const mode = async (run: () => Promise<{ rows: unknown[] }>) =>
        ((await run()).rows[0] as { plan_cache_mode?: string } | undefined)?.plan_cache_mode;
      expect(await mode(() => db.prepared('test_plan_mode', 'show plan_cache_mode', []))).toBe(
        'force_generic_plan',
      );
      expect(await mode(() => sql`show plan_cache_mode`.execute(db.db))).toBe('auto');
      // Behind a pooler (no prepared statements, no startup options) everything keeps the default.
      const pooled = createPostgresDb(t.db.poolUrl as string, 3, { prepare: false });
      try {
        expect(await mode(() => pooled.prepared('test_plan_mode', 'show plan_cache_mode', []))).toBe('auto');
      } finally {
        await pooled.close();
      }
    } finally {
      await db.close();
    }
  });
});
