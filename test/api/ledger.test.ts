import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { createPostgresDb } from '../../src/db/client.js';
import { createOrg } from '../factories.js';
import { ADMIN_TOKEN, createTestApp, onPostgres, type TestContext, tableCounts } from '../harness.js';

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

async function newOrg(funds?: string): Promise<string> {
  const { id } = await createOrg(t);
  if (funds) await add(id, funds);
  return id;
}

function post(url: string, payload?: unknown, key?: string) {
  return t.call({
    method: 'POST',
    url,
    ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
    headers: key ? { 'idempotency-key': key } : {},
  });
}

async function add(org: string, amount: string, key?: string) {
  const res = await post(`/api/organizations/${org}/credits/add`, { amount }, key);
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

const deduct = (org: string, amount: string, key?: string) =>
  post(`/api/organizations/${org}/credits/deduct`, { amount }, key);

async function balance(org: string) {
  const res = await t.call({ method: 'GET', url: `/api/organizations/${org}/balance` });
  expect(res.statusCode).toBe(200);
  return res.json();
}

async function verified() {
  const res = await t.call({ method: 'GET', url: '/api/ledger/verify' });
  expect(res.json()).toMatchObject({ ok: true, violations: [] });
}

describe('add and deduct', () => {
  it('moves exact amounts and records double entries', async () => {
    const org = await newOrg();
    const added = await add(org, '12.5');
    expect(added).toMatchObject({
      type: 'top_up',
      amount: '12.5',
      balance_change: '12.5',
      balance_after: '12.5',
      entries: [
        { account: 'sys:top_ups', amount: '-12.5' },
        { account: 'credits', amount: '12.5' },
      ],
    });
    const res = await deduct(org, '0.000125');
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({
      type: 'deduction',
      balance_after: '12.499875',
      balance_change: '-0.000125',
    });
    expect(await balance(org)).toMatchObject({ available: '12.499875', held: '0', month_spend: '0.000125' });
    // 0.1 + 0.2 is exactly 0.3 here
    const o2 = await newOrg();
    await add(o2, '0.1');
    await add(o2, '0.2');
    expect((await balance(o2)).available).toBe('0.3');
    await verified();
  });

  it('answers 402 insufficient_credits and writes nothing', async () => {
    const org = await newOrg('5');
    const before = await tableCounts(t.db);
    const res = await deduct(org, '5.000001');
    expect(res.statusCode).toBe(402);
    expect(res.headers['content-type']).toMatch(/problem\+json/);
    expect(res.json().code).toBe('insufficient_credits');
    expect(await tableCounts(t.db)).toEqual(before);
    expect((await deduct(org, '5')).statusCode).toBe(201);
    expect((await balance(org)).available).toBe('0');
  });

  it.each([
    ['0', 'amount'],
    ['-1', 'amount'],
    ['1.0000001', 'amount'],
    ['abc', 'amount'],
    ['1e3', 'amount'],
    ['', 'amount'],
  ])('rejects amount %j with 400 naming the field', async (amount, field) => {
    const org = await newOrg('1');
    const before = await tableCounts(t.db);
    for (const path of ['add', 'deduct']) {
      const res = await post(`/api/organizations/${org}/credits/${path}`, { amount });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json().errors[0].field).toBe(field);
    }
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('rejects a missing amount, unknown fields and a non-JSON body', async () => {
    const org = await newOrg();
    expect((await post(`/api/organizations/${org}/credits/add`, {})).json().errors[0]).toEqual({
      field: 'amount',
      message: 'is required',
    });
    expect(
      (await post(`/api/organizations/${org}/credits/add`, { amount: '1', colour: 'x' })).statusCode,
    ).toBe(400);
    expect((await post(`/api/organizations/${org}/credits/add`, { amount: true })).statusCode).toBe(400);
  });

  it('answers 404 for an unknown organization', async () => {
    expect((await post('/api/organizations/nope/credits/add', { amount: '1' })).statusCode).toBe(404);
  });

  it('lets an inactive organization receive but not spend', async () => {
    const org = await newOrg('10');
    await post(`/api/organizations/${org}/toggle`);
    const res = await deduct(org, '1');
    expect(res.statusCode).toBe(403);
    expect(res.json().code).toBe('organization_inactive');
    await add(org, '1');
    await post(`/api/organizations/${org}/toggle`);
    expect((await deduct(org, '1')).statusCode).toBe(201);
  });
});

describe('overdraft and spending limit', () => {
  it('allows going below zero only down to the overdraft limit', async () => {
    const org = await newOrg('1');
    expect((await deduct(org, '2')).json().code).toBe('insufficient_credits');
    const settings = await t.call({
      method: 'PATCH',
      url: `/api/organizations/${org}/credit-settings`,
      payload: { overdraft_enabled: true, overdraft_limit: '5' },
    });
    expect(settings.json()).toMatchObject({ overdraft_enabled: true, overdraft_limit: '5', spendable: '6' });
    expect((await deduct(org, '6')).statusCode).toBe(201);
    expect((await balance(org)).available).toBe('-5');
    expect((await deduct(org, '0.000001')).json().code).toBe('insufficient_credits');
    await verified();
  });

  it('refuses debits past the monthly spending limit', async () => {
    const org = await newOrg('100');
    await t.call({
      method: 'PATCH',
      url: `/api/organizations/${org}/credit-settings`,
      payload: { monthly_spending_limit: '10' },
    });
    expect((await deduct(org, '7')).statusCode).toBe(201);
    const res = await deduct(org, '3.5');
    expect(res.statusCode).toBe(402);
    expect(res.json().code).toBe('spending_limit_exceeded');
    expect((await deduct(org, '3')).statusCode).toBe(201);
    expect(await balance(org)).toMatchObject({
      month_spend: '10',
      monthly_spending_limit: '10',
      available: '90',
    });
    await t.call({
      method: 'PATCH',
      url: `/api/organizations/${org}/credit-settings`,
      payload: { monthly_spending_limit: null },
    });
    expect((await deduct(org, '50')).statusCode).toBe(201);
    const audit = (await t.call({ method: 'GET', url: `/api/organizations/${org}/audit-log` })).json().data;
    const settings = audit.filter((e: { action: string }) => e.action === 'credits.settings_changed');
    expect(
      settings.map((e: { changes: unknown; actor: { type: string } }) => [e.changes, e.actor.type]),
    ).toEqual([
      [{ monthly_spending_limit: { before: '10', after: null } }, 'operator'],
      [{ monthly_spending_limit: { before: null, after: '10' } }, 'operator'],
    ]);
  });

  it.each([
    [{ overdraft_limit: '-1' }, 'overdraft_limit'],
    [{ monthly_spending_limit: 'x' }, 'monthly_spending_limit'],
    [{ auto_recharge: { enabled: true } }, 'auto_recharge.amount'],
    [{ auto_recharge: { enabled: true, amount: '0' } }, 'auto_recharge.amount'],
    [{ overdraft: true }, 'overdraft'],
  ])('rejects settings %j', async (payload, field) => {
    const org = await newOrg();
    const res = await t.call({ method: 'PATCH', url: `/api/organizations/${org}/credit-settings`, payload });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors[0].field).toBe(field);
  });
});

describe('idempotency', () => {
  it('replays the first response and moves nothing; a different body answers 422', async () => {
    const org = await newOrg('10');
    const first = await deduct(org, '1', 'charge-1');
    const replay = await deduct(org, '1', 'charge-1');
    expect(replay.statusCode).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toEqual(first.json());
    expect((await balance(org)).available).toBe('9');
    const other = await deduct(org, '2', 'charge-1');
    expect(other.statusCode).toBe(422);
    expect(other.json().code).toBe('idempotency_key_reused');
    expect((await balance(org)).available).toBe('9');
  });

  it('replays a refusal too', async () => {
    const org = await newOrg('1');
    expect((await deduct(org, '5', 'big')).statusCode).toBe(402);
    await add(org, '10');
    const replay = await deduct(org, '5', 'big');
    expect(replay.statusCode).toBe(402);
    expect(replay.headers['idempotent-replayed']).toBe('true');
  });

  it('applies concurrent duplicates once', async () => {
    const org = await newOrg('100');
    const results = await Promise.all(Array.from({ length: 20 }, () => deduct(org, '3', 'dup-key')));
    expect(new Set(results.map((r) => r.json().id)).size).toBe(1);
    expect((await balance(org)).available).toBe('97');
  });

  it('rejects a malformed key', async () => {
    const org = await newOrg('1');
    const res = await deduct(org, '1', 'has space');
    expect(res.statusCode).toBe(400);
    expect(res.json().errors[0].field).toBe('idempotency-key');
  });
});

describe('holds', () => {
  const holds = (org: string) => `/api/organizations/${org}/holds`;

  it('reserves, then captures part and returns the rest', async () => {
    const org = await newOrg('10');
    const hold = (await post(holds(org), { amount: '4' })).json();
    expect(hold).toMatchObject({ status: 'active', amount: '4' });
    expect(await balance(org)).toMatchObject({ available: '6', held: '4' });
    expect((await deduct(org, '7')).json().code).toBe('insufficient_credits');
    const cap = await post(`${holds(org)}/${hold.id}/capture`, { amount: '2.5' });
    expect(cap.statusCode, cap.body).toBe(200);
    expect(cap.json().hold).toMatchObject({ status: 'captured', captured_amount: '2.5' });
    expect(await balance(org)).toMatchObject({ available: '7.5', held: '0', month_spend: '2.5' });
    const again = await post(`${holds(org)}/${hold.id}/capture`, {});
    expect(again.statusCode).toBe(409);
    expect(again.json().code).toBe('hold_not_active');
    await verified();
  });

  it('captures the whole hold when no amount is given, and refuses more than held', async () => {
    const org = await newOrg('10');
    const hold = (await post(holds(org), { amount: '3' })).json();
    const tooMuch = await post(`${holds(org)}/${hold.id}/capture`, { amount: '3.000001' });
    expect(tooMuch.statusCode).toBe(400);
    const cap = await post(`${holds(org)}/${hold.id}/capture`);
    expect(cap.json().transaction).toMatchObject({ type: 'capture', amount: '3' });
    expect(await balance(org)).toMatchObject({ available: '7', held: '0' });
  });

  it('releases, returning the credits', async () => {
    const org = await newOrg('10');
    const hold = (await post(holds(org), { amount: '10' })).json();
    expect((await post(holds(org), { amount: '0.1' })).json().code).toBe('insufficient_credits');
    const rel = await post(`${holds(org)}/${hold.id}/release`);
    expect(rel.json().hold.status).toBe('released');
    expect(await balance(org)).toMatchObject({ available: '10', held: '0' });
    expect((await t.call({ method: 'GET', url: `${holds(org)}/${hold.id}` })).json().status).toBe('released');
  });

  it('expires holds at their deadline, returning their credits', async () => {
    const org = await newOrg('10');
    const hold = (await post(holds(org), { amount: '4', expires_in_seconds: 1 })).json();
    expect(await t.app.services.ledger.expireDueHolds()).toBe(0);
    await new Promise((r) => setTimeout(r, 1100));
    expect(await t.app.services.ledger.expireDueHolds()).toBeGreaterThanOrEqual(1);
    expect((await t.call({ method: 'GET', url: `${holds(org)}/${hold.id}` })).json().status).toBe('expired');
    expect(await balance(org)).toMatchObject({ available: '10', held: '0' });
    const late = await post(`${holds(org)}/${hold.id}/capture`);
    expect(late.json().code).toBe('hold_not_active');
    await verified();
  });

  it('answers 404 for a hold of another organization', async () => {
    const a = await newOrg('5');
    const b = await newOrg('5');
    const hold = (await post(holds(a), { amount: '1' })).json();
    expect((await post(`${holds(b)}/${hold.id}/release`)).statusCode).toBe(404);
    expect((await t.call({ method: 'GET', url: `${holds(b)}/${hold.id}` })).statusCode).toBe(404);
  });
});

describe('transfers', () => {
  it('moves credits between organizations atomically', async () => {
    const parent = await newOrg('50');
    const child = await newOrg();
    const res = await post(`/api/organizations/${parent}/credits/transfer`, {
      to_organization_id: child,
      amount: '20',
    });
    expect(res.statusCode, res.body).toBe(201);
    const { from, to } = res.json();
    expect(from).toMatchObject({ type: 'transfer_out', balance_after: '30', related_id: to.id });
    expect(to).toMatchObject({ type: 'transfer_in', balance_after: '20', related_id: from.id });
    expect((await balance(child)).available).toBe('20');
    await verified();
  });

  it('refuses overdrawing, self-transfers and unknown receivers, writing nothing', async () => {
    const a = await newOrg('1');
    const b = await newOrg();
    const before = await tableCounts(t.db);
    const poor = await post(`/api/organizations/${a}/credits/transfer`, {
      to_organization_id: b,
      amount: '2',
    });
    expect(poor.json().code).toBe('insufficient_credits');
    const self = await post(`/api/organizations/${a}/credits/transfer`, {
      to_organization_id: a,
      amount: '1',
    });
    expect(self.json().errors[0].field).toBe('to_organization_id');
    const ghost = await post(`/api/organizations/${a}/credits/transfer`, {
      to_organization_id: 'ghost-org',
      amount: '1',
    });
    expect(ghost.statusCode).toBe(400);
    expect(await tableCounts(t.db)).toEqual(before);
  });
});

describe('POST /api/usage', () => {
  it('answers per event, in order; a refused event does not stop the others', async () => {
    const org = await newOrg('2');
    const inactive = await newOrg('5');
    await post(`/api/organizations/${inactive}/toggle`);
    const agentId = (await post('/api/agents', { name: 'Usage Agent', organization_id: org })).json().id;
    const res = await post('/api/usage', {
      events: [
        {
          organization_id: org,
          credits: '1.5',
          idempotency_key: 'u1',
          agent_id: agentId,
          tokens_in: 100,
          tokens_out: 20,
          cost: '0.002',
        },
        { organization_id: org, credits: '1', idempotency_key: 'u2' },
        { organization_id: org, credits: '0.5', idempotency_key: 'u3' },
        { organization_id: inactive, credits: '1', idempotency_key: 'u4' },
        { organization_id: 'org_00000000000000000000000077', credits: '1', idempotency_key: 'u5' },
      ],
    });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({ applied: 2, rejected: 3 });
    expect(body.results.map((r: { status: string; code: string | null }) => r.code ?? r.status)).toEqual([
      'applied',
      'insufficient_credits',
      'applied',
      'organization_inactive',
      'not_found',
    ]);
    expect(body.results[2].balance_after).toBe('0');
    const txs = (
      await t.call({ method: 'GET', url: `/api/organizations/${org}/transactions?type=usage` })
    ).json().data;
    expect(txs.at(-1).metadata).toEqual({
      agent_id: agentId,
      tokens_in: 100,
      tokens_out: 20,
      cost: '0.002',
    });

    const replay = await post('/api/usage', {
      events: [{ organization_id: org, credits: '0.5', idempotency_key: 'u3' }],
    });
    expect(replay.json().results[0]).toMatchObject({
      status: 'applied',
      replayed: true,
      transaction_id: body.results[2].transaction_id,
    });
    const changed = await post('/api/usage', {
      events: [{ organization_id: org, credits: '0.6', idempotency_key: 'u3' }],
    });
    expect(changed.json().results[0]).toMatchObject({ status: 'rejected', code: 'idempotency_key_reused' });
    await verified();
  });

  it.each([
    [{ events: [] }, 'events'],
    [
      {
        events: Array.from({ length: 1001 }, (_, i) => ({
          organization_id: 'x',
          credits: '1',
          idempotency_key: `k${i}`,
        })),
      },
      'events',
    ],
    [{ events: [{ organization_id: 'x', credits: '1' }] }, 'events.0.idempotency_key'],
    [{ events: [{ organization_id: 'x', credits: '-1', idempotency_key: 'a' }] }, 'events.0.credits'],
    [
      { events: [{ organization_id: 'x', credits: '1', idempotency_key: 'a', tokens_in: -1 }] },
      'events.0.tokens_in',
    ],
  ])('rejects a malformed batch whole (%#)', async (payload, field) => {
    const before = await tableCounts(t.db);
    const res = await post('/api/usage', payload);
    expect(res.statusCode).toBe(400);
    expect(res.json().errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(await tableCounts(t.db)).toEqual(before);
  });
});

describe('transactions', () => {
  it('lists newest first with balance after, filters, pages, and downloads CSV', async () => {
    const org = await newOrg();
    await add(org, '10');
    await deduct(org, '1');
    await deduct(org, '2');
    const all = (await t.call({ method: 'GET', url: `/api/organizations/${org}/transactions` })).json();
    expect(all.data.map((x: { balance_after: string }) => x.balance_after)).toEqual(['7', '9', '10']);
    const page = (
      await t.call({ method: 'GET', url: `/api/organizations/${org}/transactions?limit=2` })
    ).json();
    const rest = (
      await t.call({
        method: 'GET',
        url: `/api/organizations/${org}/transactions?limit=2&cursor=${page.next_cursor}`,
      })
    ).json();
    expect([...page.data, ...rest.data].map((x: { id: string }) => x.id)).toEqual(
      all.data.map((x: { id: string }) => x.id),
    );
    const deductions = (
      await t.call({ method: 'GET', url: `/api/organizations/${org}/transactions?type=deduction` })
    ).json();
    expect(deductions.data).toHaveLength(2);
    const future = (
      await t.call({ method: 'GET', url: `/api/organizations/${org}/transactions?from=2999-01-01T00:00:00Z` })
    ).json();
    expect(future.data).toEqual([]);
    const csv = await t.call({ method: 'GET', url: `/api/organizations/${org}/transactions?format=csv` });
    expect(csv.headers['content-type']).toMatch(/^text\/csv/);
    const lines = csv.body.trim().split('\r\n');
    expect(lines[0]).toBe(
      'id,created_at,type,amount,balance_change,balance_after,description,actor_type,actor_id,related_id',
    );
    expect(lines).toHaveLength(4);
    expect(lines[1]).toContain('"-2"');
  });

  it.each(['type=gift', 'from=yesterday', 'format=xml'])('rejects ?%s', async (qs) => {
    const org = await newOrg();
    expect(
      (await t.call({ method: 'GET', url: `/api/organizations/${org}/transactions?${qs}` })).statusCode,
    ).toBe(400);
  });
});

describe('auto-recharge', () => {
  it('starts exactly one top-up when the balance crosses the threshold; paying it credits once', async () => {
    const org = await newOrg('100');
    await t.call({
      method: 'PATCH',
      url: `/api/organizations/${org}/credit-settings`,
      payload: {
        auto_recharge: { enabled: true, threshold: '50', amount: '25', payment_method: 'invoice:net30' },
      },
    });
    await deduct(org, '40');
    let topUps = (await t.call({ method: 'GET', url: `/api/organizations/${org}/top-ups` })).json().data;
    expect(topUps).toEqual([]);
    await Promise.all([deduct(org, '20'), deduct(org, '5'), deduct(org, '5')]);
    topUps = (await t.call({ method: 'GET', url: `/api/organizations/${org}/top-ups` })).json().data;
    expect(topUps).toHaveLength(1);
    expect(topUps[0]).toMatchObject({
      status: 'pending',
      amount: '25',
      reason: 'auto_recharge',
      provider: 'invoice',
      payment_method: 'invoice:net30',
    });
    expect(await t.app.services.ledger.startPendingTopUps()).toBe(1);
    const paid = await post(`/api/organizations/${org}/top-ups/${topUps[0].id}/mark-paid`);
    expect(paid.statusCode, paid.body).toBe(200);
    expect(paid.json()).toMatchObject({ status: 'paid' });
    expect((await balance(org)).available).toBe('55');
    const twice = await post(`/api/organizations/${org}/top-ups/${topUps[0].id}/mark-paid`);
    expect(twice.json().code).toBe('top_up_not_pending');
    expect((await balance(org)).available).toBe('55');
    await verified();
  });
});

describe('deleted organizations', () => {
  it('keep their ledger records', async () => {
    const org = await newOrg('3');
    const before = await tableCounts(t.db);
    expect((await t.call({ method: 'DELETE', url: `/api/organizations/${org}` })).statusCode).toBe(204);
    const after = await tableCounts(t.db);
    expect(after.ledger_transactions).toBe(before.ledger_transactions);
    expect((await deduct(org, '1')).statusCode).toBe(404);
    await verified();
  });
});

describe('GET /api/ledger/verify', () => {
  it('finds a balance that does not equal its entries, and an unbalanced transaction', async () => {
    const org = await newOrg('5');
    const { sql } = await import('kysely');
    await sql`update ledger_accounts set balance = balance + 1 where organization_id = ${org} and code = 'credits'`.execute(
      t.db.db,
    );
    let report = (await t.call({ method: 'GET', url: '/api/ledger/verify' })).json();
    expect(report.ok).toBe(false);
    expect(report.violations).toEqual([
      {
        kind: 'balance_mismatch',
        organization_id: org,
        subject: 'credits',
        expected: '5',
        actual: '5.000001',
      },
    ]);
    await sql`update ledger_accounts set balance = balance - 1 where organization_id = ${org} and code = 'credits'`.execute(
      t.db.db,
    );
    await sql`update ledger_transactions set entry_amounts = array[-5000000, 5000001]::bigint[] where organization_id = ${org}`.execute(
      t.db.db,
    );
    report = (await t.call({ method: 'GET', url: '/api/ledger/verify' })).json();
    expect(report.violations.map((v: { kind: string }) => v.kind).sort()).toEqual([
      'balance_mismatch',
      'unbalanced_transaction',
    ]);
    await sql`update ledger_transactions set entry_amounts = array[-5000000, 5000000]::bigint[] where organization_id = ${org}`.execute(
      t.db.db,
    );
    await verified();
  });
});

describe.runIf(onPostgres)('two processes on one database', () => {
  it('a deactivation in one stops spending in the other (its cached liveness is invalidated)', async () => {
    const other = await buildApp({
      db: createPostgresDb(t.db.poolUrl as string, 3),
      adminToken: ADMIN_TOKEN,
    });
    try {
      const org = await newOrg('10');
      const debitThere = () =>
        other.inject({
          method: 'POST',
          url: `/api/organizations/${org}/credits/deduct`,
          payload: { amount: '1' },
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        });
      expect((await debitThere()).statusCode).toBe(201); // `other` now caches the organization as active
      await post(`/api/organizations/${org}/toggle`);
      let code = '';
      for (let i = 0; i < 50 && code !== 'organization_inactive'; i++) {
        code = (await debitThere()).json().code;
        if (code !== 'organization_inactive') await new Promise((r) => setTimeout(r, 20));
      }
      expect(code).toBe('organization_inactive');
    } finally {
      await other.close();
    }
  });
});

describe('GET /api/organization/transactions', () => {
  it('downloads CSV for the key’s organization too', async () => {
    const org = await newOrg('3');
    const key = (
      await t.call({
        method: 'POST',
        url: `/api/organizations/${org}/api-keys`,
        payload: { name: 'csv', scopes: ['read'] },
      })
    ).json().key;
    const res = await t.app.inject({
      method: 'GET',
      url: '/api/organization/transactions?format=csv',
      headers: { authorization: `Bearer ${key}` },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/csv/);
    expect(res.body.trim().split('\r\n')).toHaveLength(2);
  });
});
