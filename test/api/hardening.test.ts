/**
 * Issue 12's first walls: no request stops the process or fails another tenant's request, and no
 * text the database cannot store gets past validation. Happy, error and security cases of the
 * shared input rule (src/lib/input.ts) and of the ledger's split-and-retry (ledger.engine.ts).
 */
import { connect } from 'node:net';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LedgerOp } from '../../src/modules/ledger/ledger.book.js';
import { CREDITS, SYSTEM } from '../../src/modules/ledger/ledger.core.js';
import { applied, asError } from '../../src/modules/ledger/ledger.outcome.js';
import { createApiKey, createFundedOrg } from '../factories.js';
import { createTestApp, expectProblem, type TestContext, tableCounts } from '../harness.js';

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

/** A funded organization's id. */
const fundedOrg = async (amount = '1000') => (await createFundedOrg(t, amount)).id;

/** A write key's secret. */
const writeKey = async (org: string) =>
  (await createApiKey(t, org, { name: 'writer', scopes: ['write'] })).key;

/** A 400 validation_failed problem naming `field`, and nothing else. */
function expectValidation(res: LightMyRequestResponse, field: string, message?: RegExp) {
  const body = expectProblem(res, 400, 'validation_failed');
  expect(body.errors).toEqual([expect.objectContaining({ field })]);
  if (message) expect(body.errors?.[0]?.message).toMatch(message);
}

const nested = (levels: number) => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;

async function balanceOf(org: string) {
  const res = await t.call({ method: 'GET', url: `/api/organizations/${org}/balance` });
  return res.json().available as string;
}

describe('one request cannot stop the process', () => {
  it('refuses NUL metadata beside 20,000 levels of nesting, writes nothing, and keeps serving', async () => {
    const org = await fundedOrg();
    const key = await writeKey(org);
    const before = await tableCounts(t.db);
    const payload = `{"events":[{"organization_id":"${org}","credits":"1","idempotency_key":"e0","metadata":{"x":"a\\u0000b"}},{"organization_id":"${org}","credits":"1","idempotency_key":"e1","metadata":${nested(20_000)}}]}`;
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/usage',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      payload,
    });
    expectValidation(res, 'events.0.metadata.x', /NUL/);
    expect(await tableCounts(t.db)).toEqual(before);
    expect((await t.call({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect(await balanceOf(org)).toBe('1000');
  });

  it('names the field nested too deep anywhere in a body, on every route', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      headers: { 'content-type': 'application/json' },
      payload: `{"email":"a@b.co","password":${nested(20_000)}}`,
    });
    expectValidation(res, expect.stringMatching(/^password(\.a)+$/) as unknown as string, /deeper than 32/);
  });
});

describe('the one rule for stored text', () => {
  it('refuses NUL and lone surrogates in path ids, queries, values and keys', async () => {
    const org = await fundedOrg();
    const before = await tableCounts(t.db);
    expectValidation(await t.call({ method: 'GET', url: '/api/organizations/org%00x' }), 'id', /NUL/);
    expectValidation(await t.call({ method: 'GET', url: '/api/organizations?q=%00' }), 'q', /NUL/);
    expectValidation(
      await t.call({ method: 'PATCH', url: `/api/organizations/${org}`, payload: { name: 'x\ud800y' } }),
      'name',
      /lone surrogate/,
    );
    expectValidation(
      await t.call({
        method: 'POST',
        url: `/api/organizations/${org}/credits/deduct`,
        payload: { amount: '1', metadata: { 'k\u0000': 1 } },
      }),
      'metadata',
      /key that must not contain the NUL/,
    );
    expectValidation(
      await t.call({
        method: 'POST',
        url: `/api/organizations/${org}/credits/deduct`,
        payload: { amount: '1', metadata: { '\udc00': 1 } },
      }),
      'metadata',
      /key that must be valid Unicode/,
    );
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('keeps text that is valid Unicode, astral characters included', async () => {
    const org = await fundedOrg();
    const res = await t.call({
      method: 'POST',
      url: `/api/organizations/${org}/credits/deduct`,
      payload: { amount: '1', reason: 'Tokens 🚀 für Zürich', metadata: { émoji: '😀', list: [1, 'two'] } },
    });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json().metadata).toMatchObject({ émoji: '😀', list: [1, 'two'] });
  });
});

describe('bodies where none is taken, and what the HTTP layer refuses', () => {
  it('refuses a body on a route that takes none, takes an empty object', async () => {
    const org = await fundedOrg();
    const before = await tableCounts(t.db);
    expectValidation(
      await t.call({ method: 'POST', url: `/api/organizations/${org}/toggle`, payload: { active: false } }),
      '(body)',
      /takes no body/,
    );
    expectValidation(
      await t.call({
        method: 'DELETE',
        url: `/api/organizations/${org}`,
        payload: '[1]',
        headers: { 'content-type': 'application/json' },
      }),
      '(body)',
    );
    expect(await tableCounts(t.db)).toEqual(before);
    const toggled = await t.call({ method: 'POST', url: `/api/organizations/${org}/toggle`, payload: {} });
    expect(toggled.statusCode, toggled.body).toBe(200);
  });

  it('answers headers past 16 KiB and malformed HTTP with problem+json over a real socket', async () => {
    const address = await t.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = new URL(address);
    const raw = (request: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(Number(port), '127.0.0.1', () => socket.write(request));
        let text = '';
        socket.on('data', (d) => {
          text += d.toString('latin1');
        });
        socket.on('end', () => resolve(text));
        socket.on('error', reject);
      });
    const big = await raw(
      `GET /api/organizations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${'x'.repeat(20_000)}\r\n\r\n`,
    );
    expect(big).toMatch(/^HTTP\/1\.1 431 /);
    expect(big).toMatch(/content-type: application\/problem\+json/i);
    expect(JSON.parse(big.slice(big.indexOf('{')))).toMatchObject({ status: 431, code: 'headers_too_large' });
    const bad = await raw('GET /healthz HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n');
    expect(bad).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(bad.slice(bad.indexOf('{')))).toMatchObject({ status: 400, code: 'validation_failed' });
    const latin = await raw(
      `GET /api/organizations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \u00e9\u00ff\r\nConnection: close\r\n\r\n`,
    );
    expect(latin).toMatch(/^HTTP\/1\.1 401 /);
    expect(latin).toMatch(/content-type: application\/problem\+json/i);
  });
});

describe('metadata caps', () => {
  const deduct = (org: string, metadata: unknown) =>
    t.call({
      method: 'POST',
      url: `/api/organizations/${org}/credits/deduct`,
      payload: { amount: '1', metadata },
    });

  it('takes five levels, refuses six', async () => {
    const org = await fundedOrg();
    expect((await deduct(org, { a: { b: { c: { d: { e: 1 } } } } })).statusCode).toBe(201);
    expectValidation(
      await deduct(org, { a: { b: { c: { d: { e: { f: 1 } } } } } }),
      'metadata',
      /a\.b\.c\.d\.e: nests deeper than 5/,
    );
  });

  it('refuses keys over 64 characters at any level, and more than 16 KiB', async () => {
    const org = await fundedOrg();
    expectValidation(await deduct(org, { ['k'.repeat(65)]: 1 }), 'metadata');
    expectValidation(
      await deduct(org, { a: { ['k'.repeat(65)]: 1 } }),
      'metadata',
      /a: has a key longer than 64/,
    );
    expectValidation(await deduct(org, { a: 'x'.repeat(17_000) }), 'metadata', /larger than 16384 bytes/);
    expect((await deduct(org, { ['k'.repeat(64)]: 'x'.repeat(16_000) })).statusCode).toBe(201);
  });
});

describe('the balance cap', () => {
  it('refuses a top-up or transfer that would take a balance past 10^12 credits, and writes nothing', async () => {
    const org = await fundedOrg('1000000000000');
    const rich = await fundedOrg('5');
    const before = await tableCounts(t.db);
    const res = await t.call({
      method: 'POST',
      url: `/api/organizations/${org}/credits/add`,
      payload: { amount: '0.000001' },
    });
    expect(res.statusCode, res.body).toBe(409);
    expect(res.json().code).toBe('balance_limit_exceeded');
    const transfer = await t.call({
      method: 'POST',
      url: `/api/organizations/${rich}/credits/transfer`,
      payload: { to_organization_id: org, amount: '1' },
    });
    expect(transfer.statusCode, transfer.body).toBe(409);
    expect(transfer.json().code).toBe('balance_limit_exceeded');
    expect(await tableCounts(t.db)).toEqual(before);
    expect(await balanceOf(rich)).toBe('5');
  });
});

/** A key-less deduction of 1 submitted to the engine directly, with the metadata given. */
function deduction(org: string, i: number, metadata: Record<string, unknown> = {}): LedgerOp {
  return {
    organizationIds: [org],
    requestId: `req_direct_${i}`,
    inMemory: true,
    run: (book) => {
      book.post(org, {
        type: 'deduction',
        amount: 1n,
        legs: [
          [CREDITS, -1n],
          [SYSTEM.adjustments, 1n],
        ],
        metadata,
        actor: { type: 'operator', id: 'test' },
      });
      return applied({});
    },
  };
}

describe('one tenant cannot fail another’s batch', () => {
  /**
   * An operation carrying what the database refuses (NUL in jsonb), submitted to the engine
   * directly: it stands for whatever value might ever slip past validation.
   */
  function poisoned(org: string, i: number): LedgerOp {
    return deduction(org, i, { x: `poison\u0000${i}` });
  }

  it('refuses only the poisoned operations while every clean one, of both tenants, commits', async () => {
    const attacker = await fundedOrg();
    const victim = await fundedOrg();
    const engine = t.app.services.ledger.engine;
    const clean = (org: string, i: number) =>
      t.call({
        method: 'POST',
        url: `/api/organizations/${org}/credits/deduct`,
        payload: { amount: '1' },
        headers: { 'idempotency-key': `clean-${org}-${i}` },
      });
    const runs: Array<Promise<{ poison: boolean; status: number; code?: string }>> = [];
    for (let i = 0; i < 60; i++) {
      runs.push(clean(victim, i).then((r) => ({ poison: false, status: r.statusCode })));
      if (i % 3 === 0)
        runs.push(
          engine.submit(poisoned(attacker, i)).then((o) => ({
            poison: true,
            status: o.ok ? 201 : asError(o).status,
            code: o.ok ? undefined : o.code,
          })),
        );
      else runs.push(clean(attacker, i).then((r) => ({ poison: false, status: r.statusCode })));
    }
    const outcomes = await Promise.all(runs);
    expect(outcomes.filter((o) => !o.poison).every((o) => o.status === 201)).toBe(true);
    expect(outcomes.filter((o) => o.poison)).toEqual(
      Array.from({ length: 20 }, () => ({ poison: true, status: 400, code: 'validation_failed' })),
    );
    expect(await balanceOf(victim)).toBe('940');
    expect(await balanceOf(attacker)).toBe('960');
    const verify = await t.call({ method: 'GET', url: '/api/ledger/verify' });
    expect(verify.json()).toMatchObject({ ok: true, violations: [] });
  });

  it('never runs again a batch whose connection failed: it may have committed', async () => {
    // A database handle whose one-round-trip statement commits, then loses its answer: the second
    // time once armed, so that it is a batch of several (the first goes alone, the rest queue).
    let lose = 0;
    const flaky = await createTestApp({}, (db) => ({
      ...db,
      prepared: async (name, text, values) => {
        const done = await db.prepared(name, text, values);
        if (lose > 0 && --lose === 0) throw new Error('Connection terminated unexpectedly');
        return done;
      },
    }));
    try {
      const org = (
        await flaky.call({
          method: 'POST',
          url: '/api/organizations',
          payload: { name: 'Flaky' },
        })
      ).json().id;
      await flaky.call({
        method: 'POST',
        url: `/api/organizations/${org}/credits/add`,
        payload: { amount: '100' },
      });
      // Warm: the engine now knows the organization, so deductions take the one-round-trip path.
      await flaky.call({
        method: 'POST',
        url: `/api/organizations/${org}/credits/deduct`,
        payload: { amount: '1' },
      });
      lose = 2;
      // Submitted in one tick: the first runs alone, the nine others queue into one batch.
      const settled = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) => flaky.app.services.ledger.engine.submit(deduction(org, i))),
      );
      const applied = settled.filter((a) => a.status === 'fulfilled').length;
      const failed = settled.filter((a) => a.status === 'rejected').length;
      expect([applied, failed]).toEqual([1, 9]);
      // Every deduction committed once, whether its answer was lost or not; none twice.
      const balance = (await flaky.call({ method: 'GET', url: `/api/organizations/${org}/balance` })).json();
      expect(balance.available).toBe('98.99999'); // ten deductions of one micro-credit each
      const verify = await flaky.call({ method: 'GET', url: '/api/ledger/verify' });
      expect(verify.json()).toMatchObject({ ok: true, violations: [] });
    } finally {
      await flaky.close();
    }
  });

  it('answers each usage event on its own when one fails unexpectedly, never 500 for work done', async () => {
    const org = await fundedOrg();
    const other = await fundedOrg();
    const engine = t.app.services.ledger.engine;
    const submit = engine.submit;
    engine.submit = (op) =>
      op.organizationIds[0] === other ? Promise.reject(new Error('lost connection')) : submit(op);
    try {
      const res = await t.call({
        method: 'POST',
        url: '/api/usage',
        payload: {
          events: [
            { organization_id: org, credits: '2', idempotency_key: 'ok-1' },
            { organization_id: other, credits: '2', idempotency_key: 'fails-1' },
          ],
        },
      });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({
        applied: 1,
        rejected: 1,
        results: [
          { index: 0, status: 'applied' },
          { index: 1, status: 'rejected', code: 'internal_error' },
        ],
      });
    } finally {
      engine.submit = submit;
    }
    expect(await balanceOf(org)).toBe('998');
    expect(await balanceOf(other)).toBe('1000');
  });
});
