/**
 * A replay answers the first answer's bytes, not only its members: for every endpoint that takes
 * an idempotency key, a success and a refusal are sent twice with one key and their raw bodies
 * compared. The ledger keeps each outcome as JSON text (ledger.outcome.ts); a jsonb body reordered
 * the keys of the answer and of the metadata inside it. Records written before that (status and
 * jsonb body, migration 0013) still replay.
 */
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestContext } from '../harness.js';

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

let seq = 0;
async function newOrg(funds?: string): Promise<string> {
  const res = await t.call({ method: 'POST', url: '/api/organizations', payload: { name: `Idem ${++seq}` } });
  expect(res.statusCode, res.body).toBe(201);
  const id = res.json().id as string;
  if (funds) await post(`/api/organizations/${id}/credits/add`, { amount: funds });
  return id;
}

function post(url: string, payload?: Record<string, unknown>, key?: string) {
  const opts: InjectOptions = { method: 'POST', url, headers: key ? { 'idempotency-key': key } : {} };
  if (payload !== undefined) opts.payload = payload;
  return t.call(opts);
}

/** Free-form metadata whose keys jsonb would reorder (it sorts them by length, then bytes). */
const METADATA = { zeta: 1, a: { yy: 2, b: [3, { k2: 'x', k1: 'y' }] }, mid: null, '10': 'n', '9': 'm' };

/** Sends the same request twice (a new request id each time) and expects the same bytes back. */
async function expectReplayed(send: () => Promise<LightMyRequestResponse>, status: number) {
  const first = await send();
  expect(first.statusCode, first.body).toBe(status);
  expect(first.headers['idempotent-replayed']).toBeUndefined();
  const replay = await send();
  expect(replay.headers['idempotent-replayed']).toBe('true');
  expect(replay.statusCode).toBe(first.statusCode);
  expect(replay.headers['content-type']).toBe(first.headers['content-type']);
  expect(replay.body).toBe(first.body);
  expect(replay.rawPayload.equals(first.rawPayload)).toBe(true);
  return first;
}

async function hold(org: string, amount: string) {
  const res = await post(`/api/organizations/${org}/holds`, { amount });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().id as string;
}

describe('a replay is byte-identical to the first answer', () => {
  it('credits/add: an addition, and one past the largest balance', async () => {
    const org = await newOrg();
    const url = `/api/organizations/${org}/credits/add`;
    const body = { amount: '1000000000000', description: 'all of it', metadata: METADATA };
    const first = await expectReplayed(() => post(url, body, 'add-ok'), 201);
    expect(Object.keys(first.json().metadata)).toEqual(['9', '10', 'zeta', 'a', 'mid']);
    const refusal = await expectReplayed(() => post(url, { amount: '1' }, 'add-refused'), 409);
    expect(refusal.json().code).toBe('balance_limit_exceeded');
  });

  it('credits/deduct: a deduction, and one past the balance', async () => {
    const org = await newOrg('10');
    const url = `/api/organizations/${org}/credits/deduct`;
    await expectReplayed(
      () => post(url, { amount: '2.5', reason: 'why', metadata: METADATA }, 'ded-ok'),
      201,
    );
    const refusal = await expectReplayed(() => post(url, { amount: '50' }, 'ded-refused'), 402);
    expect(refusal.json()).toMatchObject({ code: 'insufficient_credits', status: 402 });
  });

  it('credits/transfer: a transfer, and one past the balance', async () => {
    const from = await newOrg('10');
    const to = await newOrg();
    const url = `/api/organizations/${from}/credits/transfer`;
    await expectReplayed(
      () => post(url, { to_organization_id: to, amount: '3', metadata: METADATA }, 'tr-ok'),
      201,
    );
    const refusal = await expectReplayed(
      () => post(url, { to_organization_id: to, amount: '30' }, 'tr-refused'),
      402,
    );
    expect(refusal.json().code).toBe('insufficient_credits');
  });

  it('holds: creating one, and one past the balance', async () => {
    const org = await newOrg('10');
    const url = `/api/organizations/${org}/holds`;
    await expectReplayed(() => post(url, { amount: '4', metadata: METADATA }, 'hold-ok'), 201);
    const refusal = await expectReplayed(() => post(url, { amount: '40' }, 'hold-refused'), 402);
    expect(refusal.json().code).toBe('insufficient_credits');
  });

  it('holds/capture: a capture, one of a closed hold, and one past the held amount (field errors)', async () => {
    const org = await newOrg('10');
    const id = await hold(org, '4');
    const url = `/api/organizations/${org}/holds/${id}/capture`;
    await expectReplayed(() => post(url, { amount: '3' }, 'cap-ok'), 200);
    const closed = await expectReplayed(() => post(url, { amount: '1' }, 'cap-closed'), 409);
    expect(closed.json().code).toBe('hold_not_active');
    const other = await hold(org, '1');
    const tooMuch = await expectReplayed(
      () => post(`/api/organizations/${org}/holds/${other}/capture`, { amount: '2' }, 'cap-over'),
      400,
    );
    expect(tooMuch.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'amount' }] });
  });

  it('holds/release: a release, and one of a hold already released', async () => {
    const org = await newOrg('10');
    const id = await hold(org, '4');
    const url = `/api/organizations/${org}/holds/${id}/release`;
    await expectReplayed(() => post(url, undefined, 'rel-ok'), 200);
    const refusal = await expectReplayed(() => post(url, undefined, 'rel-refused'), 409);
    expect(refusal.json().code).toBe('hold_not_active');
  });

  it('usage: each event answers again as it first did, marked replayed', async () => {
    const org = await newOrg('1');
    const events = [
      { organization_id: org, credits: '0.5', idempotency_key: 'use-ok', metadata: METADATA },
      { organization_id: org, credits: '5', idempotency_key: 'use-refused' },
    ];
    const first = await post('/api/usage', { events });
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json()).toMatchObject({
      applied: 1,
      rejected: 1,
      results: [
        { status: 'applied', replayed: false },
        { status: 'rejected', code: 'insufficient_credits', replayed: false },
      ],
    });
    const replay = await post('/api/usage', { events });
    expect(replay.statusCode).toBe(200);
    // An event's answer says whether it is a replay: that, and only that, differs.
    expect(replay.body).toBe(first.body.replaceAll('"replayed":false', '"replayed":true'));
  });

  it('replays duplicates decided in one batch with the same bytes as from the record', async () => {
    const org = await newOrg('100');
    const send = () =>
      post(`/api/organizations/${org}/credits/deduct`, { amount: '1', metadata: METADATA }, 'dup');
    const answers = await Promise.all(Array.from({ length: 8 }, send));
    const later = await send();
    const firsts = answers.filter((a) => a.headers['idempotent-replayed'] === undefined);
    expect(firsts).toHaveLength(1);
    for (const a of [...answers, later]) expect(a.body).toBe(firsts[0]?.body);
  });
});

describe('records written before outcomes were stored', () => {
  /** Rewrites a record as a version before migration 0013 wrote it: status and jsonb body. */
  async function toLegacy(org: string, key: string, answer: LightMyRequestResponse) {
    const { numAffectedRows } = await sql`update idempotency_records
      set status_code = ${answer.statusCode}, response = ${answer.body}::jsonb, outcome = null
      where organization_id = ${org} and key = ${key}`.execute(t.db.db);
    expect(numAffectedRows).toBe(1n);
  }

  it('replays a stored success and a stored refusal, with their members', async () => {
    const org = await newOrg('10');
    const url = `/api/organizations/${org}/credits/deduct`;
    const ok = await post(url, { amount: '1', metadata: METADATA }, 'old-ok');
    const refused = await post(url, { amount: '100' }, 'old-refused');
    expect([ok.statusCode, refused.statusCode]).toEqual([201, 402]);
    await toLegacy(org, 'old-ok', ok);
    await toLegacy(org, 'old-refused', refused);
    for (const [key, first, amount] of [
      ['old-ok', ok, '1'],
      ['old-refused', refused, '100'],
    ] as const) {
      const replay = await post(url, amount === '1' ? { amount, metadata: METADATA } : { amount }, key);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.statusCode).toBe(first.statusCode);
      expect(replay.headers['content-type']).toBe(first.headers['content-type']);
      expect(replay.json()).toEqual(first.json());
    }
    const balance = await t.call({ method: 'GET', url: `/api/organizations/${org}/balance` });
    expect(balance.json().available).toBe('9');
  });

  it('replays a stored usage event', async () => {
    const org = await newOrg('1');
    const events = [{ organization_id: org, credits: '0.25', idempotency_key: 'old-use' }];
    const first = await post('/api/usage', { events });
    const result = first.json().results[0];
    await sql`update idempotency_records
      set status_code = 200, outcome = null,
        response = ${JSON.stringify({ transaction_id: result.transaction_id, balance_after: result.balance_after })}::jsonb
      where organization_id = ${org} and key = 'old-use'`.execute(t.db.db);
    const replay = await post('/api/usage', { events });
    expect(replay.json().results[0]).toEqual({ ...result, replayed: true });
  });
});
