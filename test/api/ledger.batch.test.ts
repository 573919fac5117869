/**
 * The batch statement (ledger.batch.ts) passes each transaction's legs as one column per position
 * and builds the arrays in SQL, trimming the tail of transactions with fewer legs than the
 * batch's widest. These tests write batches straight through it, in a transaction rolled back at
 * the end, and read every row back exactly as posted.
 */
import fc from 'fast-check';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../src/lib/ids.js';
import { type BatchOutcome, writeBatch } from '../../src/modules/ledger/ledger.batch.js';
import type { NewTransaction } from '../../src/modules/ledger/ledger.repo.js';
import { createTestApp, type TestContext } from '../harness.js';

let t: TestContext;
let org: string;
beforeAll(async () => {
  t = await createTestApp();
  org = (await t.call({ method: 'POST', url: '/api/organizations', payload: { name: 'Batch' } })).json()
    .id as string;
});
afterAll(() => t.close());

class RolledBack extends Error {}

interface Row {
  id: string;
  entry_accounts: string[];
  entry_amounts: Array<string | bigint>;
  metadata: unknown;
  created_at: Date;
}

/** Writes `txs` as one batch, reads them back, and undoes it all. */
async function roundTrip(txs: NewTransaction[], at: Date): Promise<Row[]> {
  const batch: BatchOutcome = {
    at,
    states: [],
    deltas: [],
    transactions: txs,
    records: [],
    usage: [],
    teams: [],
  };
  let rows: Row[] = [];
  await t.db.db
    .transaction()
    .execute(async (tx) => {
      await writeBatch(tx, batch);
      rows = (
        await sql<Row>`select id, entry_accounts, entry_amounts, metadata, created_at
          from ledger_transactions where organization_id = ${org} and id in (${sql.join(txs.map((x) => x.id))})`.execute(
          tx,
        )
      ).rows;
      throw new RolledBack();
    })
    .catch((err: unknown) => {
      if (!(err instanceof RolledBack)) throw err;
    });
  return rows;
}

function transaction(
  legs: Array<[string, bigint]>,
  metadata: Record<string, unknown>,
  at: Date,
): NewTransaction {
  const amount = legs.reduce((sum, [, m]) => (m > 0n ? sum + m : sum), 0n);
  return {
    organization_id: org,
    id: newId('txn'),
    type: 'adjustment',
    amount: amount > 0n ? amount : 1n,
    entries: legs,
    balance_after: 0n,
    description: null,
    actor_type: 'operator',
    actor_id: null,
    metadata,
    related_id: null,
    created_at: at,
  };
}

describe('the batch statement', () => {
  it('writes two- and three-leg transactions of one batch with their own legs, metadata and time', async () => {
    const at = new Date('2026-11-30T12:34:56.789Z');
    const capture = transaction(
      [
        ['held', -500n],
        ['sys:usage', 300n],
        ['credits', 200n],
      ],
      {},
      at,
    );
    const debit = transaction(
      [
        ['credits', -7n],
        ['sys:usage', 7n],
      ],
      { agent_id: 'agt_1', note: 'a "quoted", {braced} value' },
      at,
    );
    const rows = new Map((await roundTrip([capture, debit], at)).map((r) => [r.id, r]));
    expect(rows.get(capture.id)?.entry_accounts).toEqual(['held', 'sys:usage', 'credits']);
    expect(rows.get(capture.id)?.entry_amounts.map(String)).toEqual(['-500', '300', '200']);
    expect(rows.get(capture.id)?.metadata).toEqual({});
    expect(rows.get(debit.id)?.entry_accounts).toEqual(['credits', 'sys:usage']);
    expect(rows.get(debit.id)?.entry_amounts.map(String)).toEqual(['-7', '7']);
    expect(rows.get(debit.id)?.metadata).toEqual({ agent_id: 'agt_1', note: 'a "quoted", {braced} value' });
    for (const r of rows.values()) expect(new Date(r.created_at).toISOString()).toBe(at.toISOString());
  });

  it('round-trips any mix of leg counts (property)', async () => {
    const code = fc.constantFrom('credits', 'held', 'sys:usage', 'sys:top_ups', 'sys:adjustments');
    const leg = fc.tuple(code, fc.bigInt({ min: -(10n ** 15n), max: 10n ** 15n }));
    const legs = fc.array(leg, { minLength: 2, maxLength: 5 });
    await fc.assert(
      fc.asyncProperty(fc.array(legs, { minLength: 1, maxLength: 6 }), async (batches) => {
        const at = new Date();
        const txs = batches.map((l) => transaction(l, {}, at));
        const rows = new Map((await roundTrip(txs, at)).map((r) => [r.id, r]));
        expect(rows.size).toBe(txs.length);
        for (const x of txs) {
          expect(rows.get(x.id)?.entry_accounts).toEqual(x.entries.map(([a]) => a));
          expect(rows.get(x.id)?.entry_amounts.map(String)).toEqual(x.entries.map(([, m]) => String(m)));
        }
      }),
      { numRuns: 25 },
    );
  });
});
