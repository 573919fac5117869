/**
 * Model-based property tests of the credits ledger, driven entirely through HTTP.
 *
 * Random sequences of ledger commands (add, deduct, holds, captures, releases, transfers,
 * usage batches, overdraft changes and idempotent replays) run against a few organizations.
 * An exact in-test model (BigInt micro-units) predicts every response; after every step the
 * balances must equal the model and GET /api/ledger/verify must report no violations.
 */

import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatAmount, parseAmount } from '../../src/lib/money.js';
import { createOrg } from '../factories.js';
import { createTestApp, expectProblem, type TestContext } from '../harness.js';

let t: TestContext;
const orgIds: string[] = [];

beforeAll(async () => {
  t = await createTestApp();
  for (let i = 0; i < 3; i++) orgIds.push(await newOrg(`Property Org ${i}`));
});
afterAll(() => t.close());

const newOrg = async (name: string) => (await createOrg(t, { name })).id;

// ---------------------------------------------------------------------------------------------
// Model

interface OrgModel {
  id: string;
  available: bigint;
  held: bigint;
  spend: bigint;
  overdraft: boolean;
  limit: bigint;
}

interface HoldModel {
  id: string;
  org: number;
  amount: bigint;
  status: 'active' | 'captured' | 'released';
}

type Payload = Record<string, unknown>;

interface UsageResult {
  index: number;
  status: 'applied' | 'rejected';
  transaction_id: string | null;
  balance_after: string | null;
  code: string | null;
  detail: string | null;
  replayed: boolean;
}

/** A request sent with an idempotency key, kept so that a later step can replay it. */
type KeyedRequest =
  | {
      kind: 'single';
      method: 'POST';
      url: string;
      payload: Payload | undefined;
      key: string;
      /** The organization that scopes the key (the sender of a transfer, the owner of a hold). */
      org: number;
      status: number;
      body: unknown;
    }
  | { kind: 'usage'; payload: { events: Payload[] }; results: UsageResult[] };

interface Model {
  label: string;
  orgs: OrgModel[];
  holds: HoldModel[];
  history: KeyedRequest[];
  /** Total ledger transactions in the database, as /api/ledger/verify counts them. */
  transactions: number;
  step: number;
}

const floorOf = (o: OrgModel) => (o.overdraft ? -o.limit : 0n);
const canDebit = (o: OrgModel, amount: bigint) => o.available - amount >= floorOf(o);
const fmt = (m: bigint) => formatAmount(m);
/** How a request writes an amount: exact, with `pad` fractional digits at least ("1.50", "2.000000"). */
const wire = (m: bigint, pad = 0) => formatAmount(m, pad);

function micros(text: unknown): bigint {
  const p = parseAmount(text);
  if (!p.ok) throw new Error(`not an amount: ${String(text)} (${p.reason})`);
  return p.micros;
}

function orgAt(m: Model, i: number): OrgModel {
  const o = m.orgs[i % m.orgs.length];
  if (!o) throw new Error(`no organization ${i}`);
  return o;
}

let modelSeq = 0;

/** Builds the model from what the API reports now: balances persist from earlier runs. */
async function loadModel(ids: string[]): Promise<Model> {
  const orgs: OrgModel[] = [];
  for (const id of ids) {
    const b = await balanceOf(id);
    expect(b.monthly_spending_limit).toBeNull();
    expect(b.auto_recharge.enabled).toBe(false);
    orgs.push({
      id,
      available: micros(b.available),
      held: micros(b.held),
      spend: micros(b.month_spend),
      overdraft: b.overdraft_enabled,
      limit: micros(b.overdraft_limit),
    });
  }
  const v = await t.call({ method: 'GET', url: '/api/ledger/verify' });
  expect(v.statusCode, v.body).toBe(200);
  expect(v.json()).toMatchObject({ ok: true, violations: [] });
  return {
    label: `m${++modelSeq}`,
    orgs,
    holds: [],
    history: [],
    transactions: v.json().transactions,
    step: 0,
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP

async function balanceOf(id: string) {
  const res = await t.call({ method: 'GET', url: `/api/organizations/${id}/balance` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json();
}

function send(method: 'POST' | 'PATCH', url: string, payload?: Payload, key?: string) {
  return t.call({
    method,
    url,
    ...(payload === undefined ? {} : { payload }),
    headers: key === undefined ? {} : { 'idempotency-key': key },
  });
}

/** Every organization's balance equals the model, and the whole ledger verifies. */
async function assertState(m: Model, where: string) {
  for (const o of m.orgs) {
    const b = await balanceOf(o.id);
    expect(
      {
        available: b.available,
        held: b.held,
        month_spend: b.month_spend,
        overdraft_enabled: b.overdraft_enabled,
        overdraft_limit: b.overdraft_limit,
        spendable: b.spendable,
      },
      `${where}: balance of ${o.id}`,
    ).toEqual({
      available: fmt(o.available),
      held: fmt(o.held),
      month_spend: fmt(o.spend),
      overdraft_enabled: o.overdraft,
      overdraft_limit: fmt(o.limit),
      spendable: fmt(o.available - floorOf(o)),
    });
  }
  const v = await t.call({ method: 'GET', url: '/api/ledger/verify' });
  expect(v.statusCode, `${where}: ${v.body}`).toBe(200);
  expect(v.json(), `${where}: verify`).toMatchObject({
    ok: true,
    violations: [],
    transactions: m.transactions,
  });
}

// ---------------------------------------------------------------------------------------------
// Commands

/** An absolute amount, or one at the edge of what the organization can spend when it runs. */
type Amount = { kind: 'abs'; micros: bigint } | { kind: 'edge'; delta: bigint };

type Cmd =
  | { t: 'add'; org: number; amount: bigint; keyed: boolean; pad?: number }
  | { t: 'deduct'; org: number; amount: Amount; keyed: boolean; pad?: number }
  | { t: 'hold'; org: number; amount: Amount; keyed: boolean; pad?: number }
  | {
      t: 'capture';
      hold: number;
      mode: 'omit' | 'full' | 'partial' | 'over';
      part: bigint;
      keyed: boolean;
      pad?: number;
    }
  | { t: 'release'; hold: number; keyed: boolean }
  | { t: 'transfer'; from: number; to: number; amount: Amount; keyed: boolean; pad?: number }
  | { t: 'usage'; events: Array<{ org: number; amount: Amount; pad?: number }> }
  | { t: 'overdraft'; org: number; enabled: boolean | undefined; limit: bigint | undefined }
  | { t: 'replay'; pick: number; same: boolean };

function resolveAmount(o: OrgModel, a: Amount): bigint {
  if (a.kind === 'abs') return a.micros;
  const v = o.available - floorOf(o) + a.delta;
  return v > 0n ? v : 1n;
}

const describeCmd = (c: Cmd) => JSON.stringify(c, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v));

let keySeq = 0;
const nextKey = (m: Model) => `${m.label}-k${++keySeq}`;

/** Runs one command, asserting its response against the model and advancing the model. */
async function exec(m: Model, c: Cmd): Promise<boolean[]> {
  const where = `${m.label} step ${m.step} ${describeCmd(c)}`;
  const outcomes: boolean[] = [];
  const remember = (
    url: string,
    payload: Payload | undefined,
    key: string | undefined,
    org: number,
    res: LightMyRequestResponse,
  ) => {
    expect(res.headers['idempotent-replayed'], where).toBeUndefined();
    if (key === undefined) return;
    m.history.push({
      kind: 'single',
      method: 'POST',
      url,
      payload,
      key,
      org,
      status: res.statusCode,
      body: res.json(),
    });
  };

  switch (c.t) {
    case 'add': {
      const o = orgAt(m, c.org);
      const url = `/api/organizations/${o.id}/credits/add`;
      const payload = { amount: wire(c.amount, c.pad), description: `add ${m.step}` };
      const key = c.keyed ? nextKey(m) : undefined;
      const res = await send('POST', url, payload, key);
      expect(res.statusCode, `${where}: ${res.body}`).toBe(201);
      o.available += c.amount;
      m.transactions += 1;
      expect(res.json(), where).toMatchObject({
        type: 'top_up',
        amount: fmt(c.amount),
        balance_change: fmt(c.amount),
        balance_after: fmt(o.available),
      });
      remember(url, payload, key, c.org % m.orgs.length, res);
      break;
    }
    case 'deduct': {
      const o = orgAt(m, c.org);
      const amount = resolveAmount(o, c.amount);
      const url = `/api/organizations/${o.id}/credits/deduct`;
      const payload = { amount: wire(amount, c.pad), reason: `deduct ${m.step}` };
      const key = c.keyed ? nextKey(m) : undefined;
      const res = await send('POST', url, payload, key);
      if (canDebit(o, amount)) {
        expect(res.statusCode, `${where}: ${res.body}`).toBe(201);
        o.available -= amount;
        o.spend += amount;
        m.transactions += 1;
        expect(res.json(), where).toMatchObject({
          type: 'deduction',
          amount: fmt(amount),
          balance_change: fmt(-amount),
          balance_after: fmt(o.available),
        });
        outcomes.push(true);
      } else {
        expectProblem(res, 402, 'insufficient_credits', { where });
        outcomes.push(false);
      }
      remember(url, payload, key, c.org % m.orgs.length, res);
      break;
    }
    case 'hold': {
      const o = orgAt(m, c.org);
      const amount = resolveAmount(o, c.amount);
      const url = `/api/organizations/${o.id}/holds`;
      const payload = { amount: wire(amount, c.pad), expires_in_seconds: 30 * 24 * 3600 };
      const key = c.keyed ? nextKey(m) : undefined;
      const res = await send('POST', url, payload, key);
      if (canDebit(o, amount)) {
        expect(res.statusCode, `${where}: ${res.body}`).toBe(201);
        const hold = res.json();
        expect(hold, where).toMatchObject({
          organization_id: o.id,
          amount: fmt(amount),
          captured_amount: '0',
          status: 'active',
        });
        o.available -= amount;
        o.held += amount;
        m.transactions += 1;
        m.holds.push({ id: hold.id, org: c.org % m.orgs.length, amount, status: 'active' });
        outcomes.push(true);
      } else {
        expectProblem(res, 402, 'insufficient_credits', { where });
        outcomes.push(false);
      }
      remember(url, payload, key, c.org % m.orgs.length, res);
      break;
    }
    case 'capture': {
      const h = m.holds[c.hold % Math.max(1, m.holds.length)];
      if (!h) break;
      const o = orgAt(m, h.org);
      const amount =
        c.mode === 'omit' || c.mode === 'full'
          ? h.amount
          : c.mode === 'over'
            ? h.amount + 1n
            : 1n + (c.part % h.amount);
      const url = `/api/organizations/${o.id}/holds/${h.id}/capture`;
      const payload = c.mode === 'omit' ? undefined : { amount: wire(amount, c.pad) };
      const key = c.keyed ? nextKey(m) : undefined;
      const res = await send('POST', url, payload, key);
      if (h.status !== 'active') {
        expectProblem(res, 409, 'hold_not_active', { where });
      } else if (amount > h.amount) {
        expectProblem(res, 400, 'validation_failed', { where });
      } else {
        expect(res.statusCode, `${where}: ${res.body}`).toBe(200);
        o.available += h.amount - amount;
        o.held -= h.amount;
        o.spend += amount;
        m.transactions += 1;
        h.status = 'captured';
        expect(res.json(), where).toMatchObject({
          hold: { id: h.id, status: 'captured', amount: fmt(h.amount), captured_amount: fmt(amount) },
          transaction: {
            type: 'capture',
            amount: fmt(amount),
            balance_change: fmt(h.amount - amount),
            balance_after: fmt(o.available),
            related_id: h.id,
          },
        });
      }
      remember(url, payload, key, h.org, res);
      break;
    }
    case 'release': {
      const h = m.holds[c.hold % Math.max(1, m.holds.length)];
      if (!h) break;
      const o = orgAt(m, h.org);
      const url = `/api/organizations/${o.id}/holds/${h.id}/release`;
      const key = c.keyed ? nextKey(m) : undefined;
      const res = await send('POST', url, undefined, key);
      if (h.status !== 'active') {
        expectProblem(res, 409, 'hold_not_active', { where });
      } else {
        expect(res.statusCode, `${where}: ${res.body}`).toBe(200);
        o.available += h.amount;
        o.held -= h.amount;
        m.transactions += 1;
        h.status = 'released';
        expect(res.json(), where).toMatchObject({
          hold: { id: h.id, status: 'released', captured_amount: '0' },
          transaction: {
            type: 'release',
            amount: fmt(h.amount),
            balance_change: fmt(h.amount),
            balance_after: fmt(o.available),
          },
        });
      }
      remember(url, undefined, key, h.org, res);
      break;
    }
    case 'transfer': {
      const fromIdx = c.from % m.orgs.length;
      const toIdx = (fromIdx + 1 + (c.to % (m.orgs.length - 1))) % m.orgs.length;
      const from = orgAt(m, fromIdx);
      const to = orgAt(m, toIdx);
      const amount = resolveAmount(from, c.amount);
      const url = `/api/organizations/${from.id}/credits/transfer`;
      const payload = { to_organization_id: to.id, amount: wire(amount, c.pad) };
      const key = c.keyed ? nextKey(m) : undefined;
      const res = await send('POST', url, payload, key);
      if (canDebit(from, amount)) {
        expect(res.statusCode, `${where}: ${res.body}`).toBe(201);
        from.available -= amount;
        from.spend += amount;
        to.available += amount;
        m.transactions += 2;
        expect(res.json(), where).toMatchObject({
          from: { type: 'transfer_out', balance_change: fmt(-amount), balance_after: fmt(from.available) },
          to: { type: 'transfer_in', balance_change: fmt(amount), balance_after: fmt(to.available) },
        });
        outcomes.push(true);
      } else {
        expectProblem(res, 402, 'insufficient_credits', { where });
        outcomes.push(false);
      }
      remember(url, payload, key, fromIdx, res);
      break;
    }
    case 'usage': {
      const events: Payload[] = [];
      const expected: Array<Partial<UsageResult>> = [];
      for (const [index, e] of c.events.entries()) {
        const o = orgAt(m, e.org);
        const amount = resolveAmount(o, e.amount);
        events.push({
          organization_id: o.id,
          credits: wire(amount, e.pad),
          idempotency_key: nextKey(m),
          tokens_in: index * 10,
        });
        if (canDebit(o, amount)) {
          o.available -= amount;
          o.spend += amount;
          m.transactions += 1;
          expected.push({ index, status: 'applied', balance_after: fmt(o.available), code: null });
          outcomes.push(true);
        } else {
          expected.push({ index, status: 'rejected', transaction_id: null, code: 'insufficient_credits' });
          outcomes.push(false);
        }
      }
      const payload = { events };
      const res = await send('POST', '/api/usage', payload);
      expect(res.statusCode, `${where}: ${res.body}`).toBe(200);
      const body = res.json() as { applied: number; rejected: number; results: UsageResult[] };
      expect(body.results, where).toMatchObject(expected.map((e) => ({ ...e, replayed: false })));
      expect(body.applied, where).toBe(outcomes.filter(Boolean).length);
      expect(body.rejected, where).toBe(outcomes.filter((x) => !x).length);
      m.history.push({ kind: 'usage', payload, results: body.results });
      break;
    }
    case 'overdraft': {
      const o = orgAt(m, c.org);
      const payload: Payload = {};
      const enabled = c.enabled === undefined && c.limit === undefined ? !o.overdraft : c.enabled;
      if (enabled !== undefined) payload.overdraft_enabled = enabled;
      if (c.limit !== undefined) payload.overdraft_limit = fmt(c.limit);
      const res = await send('PATCH', `/api/organizations/${o.id}/credit-settings`, payload);
      expect(res.statusCode, `${where}: ${res.body}`).toBe(200);
      if (enabled !== undefined) o.overdraft = enabled;
      if (c.limit !== undefined) o.limit = c.limit;
      expect(res.json(), where).toMatchObject({
        available: fmt(o.available),
        held: fmt(o.held),
        overdraft_enabled: o.overdraft,
        overdraft_limit: fmt(o.limit),
        spendable: fmt(o.available - floorOf(o)),
      });
      break;
    }
    case 'replay': {
      const r = m.history[c.pick % Math.max(1, m.history.length)];
      if (!r) break;
      if (r.kind === 'single') {
        if (c.same) {
          const res = await send(r.method, r.url, r.payload, r.key);
          expect(res.statusCode, `${where}: replay of ${r.url}: ${res.body}`).toBe(r.status);
          expect(res.headers['idempotent-replayed'], where).toBe('true');
          expect(res.json(), where).toEqual(r.body);
        } else {
          // The same key with a different request: another amount, or another operation.
          const amount = r.payload?.amount;
          const res =
            amount !== undefined
              ? await send(r.method, r.url, { ...r.payload, amount: fmt(micros(amount) + 1n) }, r.key)
              : r.payload === undefined && r.url.endsWith('/capture')
                ? await send(r.method, r.url, { amount: '0.000001' }, r.key)
                : await send(
                    'POST',
                    `/api/organizations/${orgAt(m, r.org).id}/credits/add`,
                    { amount: '1' },
                    r.key,
                  );
          expectProblem(res, 422, 'idempotency_key_reused', { where });
          expect(res.headers['idempotent-replayed'], where).toBeUndefined();
        }
      } else if (c.same) {
        const res = await send('POST', '/api/usage', r.payload);
        expect(res.statusCode, `${where}: ${res.body}`).toBe(200);
        const body = res.json() as { applied: number; rejected: number; results: UsageResult[] };
        expect(body.results, where).toEqual(r.results.map((x) => ({ ...x, replayed: true })));
      } else {
        const first = r.payload.events[0] as Payload;
        const changed = { ...first, credits: fmt(micros(first.credits) + 1n) };
        const res = await send('POST', '/api/usage', { events: [changed] });
        expect(res.statusCode, `${where}: ${res.body}`).toBe(200);
        expect(res.json(), where).toMatchObject({
          applied: 0,
          rejected: 1,
          results: [{ status: 'rejected', code: 'idempotency_key_reused', transaction_id: null }],
        });
      }
      break;
    }
  }
  m.step += 1;
  await assertState(m, where);
  return outcomes;
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

/** Positive micro-unit amounts of several shapes: whole credits, cents, any micros, dust. */
const microsArb = fc.oneof(
  fc.bigInt({ min: 1n, max: 60n }).map((x) => x * 1_000_000n),
  fc.bigInt({ min: 1n, max: 6_000n }).map((x) => x * 10_000n),
  fc.bigInt({ min: 1n, max: 60_000_000n }),
  fc.bigInt({ min: 1n, max: 999n }),
);

const amountArb: fc.Arbitrary<Amount> = fc.oneof(
  { arbitrary: microsArb.map((v): Amount => ({ kind: 'abs', micros: v })), weight: 3 },
  { arbitrary: fc.bigInt({ min: -2n, max: 2n }).map((d): Amount => ({ kind: 'edge', delta: d })), weight: 1 },
);

const orgArb = fc.nat({ max: 2 });
const keyedArb = fc.boolean();
const padArb = fc.nat({ max: 6 });

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .record({
        org: orgArb,
        amount: fc.oneof(
          microsArb,
          fc.bigInt({ min: 1n, max: 200n }).map((x) => x * 1_000_000n),
        ),
        keyed: keyedArb,
        pad: padArb,
      })
      .map((r): Cmd => ({ t: 'add', ...r })),
  },
  {
    weight: 3,
    arbitrary: fc
      .record({ org: orgArb, amount: amountArb, keyed: keyedArb, pad: padArb })
      .map((r): Cmd => ({ t: 'deduct', ...r })),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({ org: orgArb, amount: amountArb, keyed: keyedArb, pad: padArb })
      .map((r): Cmd => ({ t: 'hold', ...r })),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({
        hold: fc.nat({ max: 50 }),
        mode: fc.constantFrom('omit', 'full', 'partial', 'partial', 'over'),
        part: fc.bigInt({ min: 0n, max: 10n ** 12n }),
        keyed: keyedArb,
        pad: padArb,
      })
      .map((r): Cmd => ({ t: 'capture', ...r })),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({ hold: fc.nat({ max: 50 }), keyed: keyedArb })
      .map((r): Cmd => ({ t: 'release', ...r })),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({ from: orgArb, to: fc.nat({ max: 1 }), amount: amountArb, keyed: keyedArb, pad: padArb })
      .map((r): Cmd => ({ t: 'transfer', ...r })),
  },
  {
    weight: 2,
    arbitrary: fc
      .array(fc.record({ org: orgArb, amount: amountArb, pad: padArb }), { minLength: 1, maxLength: 6 })
      .map((events): Cmd => ({ t: 'usage', events })),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({
        org: orgArb,
        enabled: fc.option(fc.boolean(), { nil: undefined }),
        limit: fc.option(fc.oneof(fc.constant(0n), microsArb), { nil: undefined }),
      })
      .map((r): Cmd => ({ t: 'overdraft', ...r })),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({ pick: fc.nat({ max: 50 }), same: fc.boolean() })
      .map((r): Cmd => ({ t: 'replay', ...r })),
  },
);

// ---------------------------------------------------------------------------------------------
// Tests

describe('ledger model (property-based, over HTTP)', () => {
  it('every command matches the exact model, and the ledger verifies after every step', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 25, size: 'max' }), async (cmds) => {
        const m = await loadModel(orgIds);
        for (const c of cmds) await exec(m, c);
      }),
      { numRuns: 25 },
    );
  }, 300_000);

  it('overdraft: a seeded run goes negative, then disabling overdraft refuses every debit below zero', async () => {
    const a = await newOrg('Overdraft A');
    const b = await newOrg('Overdraft B');
    const m = await loadModel([a, b]);
    const debits = fc.sample(
      fc.record({
        t: fc.constantFrom('deduct', 'hold', 'usage', 'transfer'),
        amount: fc.bigInt({ min: 1n, max: 7_000_000n }),
      }),
      { seed: 20_260_607, numRuns: 80 },
    );
    const debit = (d: (typeof debits)[number]): Cmd => {
      const amount: Amount = { kind: 'abs', micros: d.amount };
      switch (d.t) {
        case 'deduct':
          return { t: 'deduct', org: 0, amount, keyed: true };
        case 'hold':
          return { t: 'hold', org: 0, amount, keyed: false };
        case 'usage':
          return { t: 'usage', events: [{ org: 0, amount }] };
        case 'transfer':
          return { t: 'transfer', from: 0, to: 0, amount, keyed: false };
      }
    };
    const org = orgAt(m, 0);

    await exec(m, { t: 'add', org: 0, amount: 10_000_000n, keyed: false });
    await exec(m, { t: 'overdraft', org: 0, enabled: true, limit: 25_000_000n });

    // Spend until the balance is negative; every debit within the overdraft is accepted.
    let i = 0;
    let accepted = 0;
    while (org.available >= 0n) {
      const d = debits[i++];
      if (!d) throw new Error('the seeded sequence never went negative');
      const [ok] = await exec(m, debit(d));
      if (ok) accepted += 1;
    }
    expect(accepted).toBeGreaterThan(0);
    expect(org.available).toBeLessThan(0n);
    expect(org.available).toBeGreaterThanOrEqual(-25_000_000n);
    const negative = org.available;

    // Overdraft off: the floor is zero again, so nothing can be spent while below it.
    await exec(m, { t: 'overdraft', org: 0, enabled: false, limit: undefined });
    expect((await balanceOf(a)).spendable).toBe(fmt(negative));
    for (let n = 0; n < 12; n++) {
      const d = debits[i++];
      if (!d) break;
      expect(await exec(m, debit(d))).toEqual([false]);
    }
    const dust: Amount = { kind: 'abs', micros: 1n };
    expect(await exec(m, { t: 'deduct', org: 0, amount: dust, keyed: false })).toEqual([false]);
    expect(await exec(m, { t: 'hold', org: 0, amount: dust, keyed: false })).toEqual([false]);
    expect(org.available).toBe(negative);

    // A limit still applies once overdraft is back but smaller than the debt.
    await exec(m, { t: 'overdraft', org: 0, enabled: true, limit: -negative - 1n });
    expect(await exec(m, { t: 'deduct', org: 0, amount: dust, keyed: false })).toEqual([false]);
    await exec(m, { t: 'overdraft', org: 0, enabled: false, limit: undefined });

    // Credits in: still refused one micro-unit short of zero, and at exactly zero.
    await exec(m, { t: 'add', org: 0, amount: -negative - 1n, keyed: false });
    expect(org.available).toBe(-1n);
    expect(await exec(m, { t: 'deduct', org: 0, amount: dust, keyed: false })).toEqual([false]);
    await exec(m, { t: 'add', org: 0, amount: 1n, keyed: false });
    expect(org.available).toBe(0n);
    expect(await exec(m, { t: 'usage', events: [{ org: 0, amount: dust }] })).toEqual([false]);

    // Back above zero, exactly the balance can be spent and not a micro-unit more.
    await exec(m, { t: 'add', org: 0, amount: 3_000_000n, keyed: false });
    expect(
      await exec(m, { t: 'deduct', org: 0, amount: { kind: 'abs', micros: 3_000_001n }, keyed: false }),
    ).toEqual([false]);
    expect(await exec(m, { t: 'deduct', org: 0, amount: { kind: 'edge', delta: 0n }, keyed: false })).toEqual(
      [true],
    );
    expect(org.available).toBe(0n);

    // Releasing the holds made during the overdraft returns their credits.
    for (const [h, hold] of m.holds.entries())
      if (hold.status === 'active') await exec(m, { t: 'release', hold: h, keyed: true });
    expect(org.held).toBe(0n);
    // Replays of the keyed requests from this run move nothing.
    for (let r = 0; r < m.history.length; r++) await exec(m, { t: 'replay', pick: r, same: true });
  }, 120_000);
});
