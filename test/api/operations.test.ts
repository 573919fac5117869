import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, createTestApp, expectProblem, onPostgres, type TestContext } from '../harness.js';

// Operations over HTTP: /metrics and who may read it, the operator API's token rotation, and the
// drain's answers while shutting down (the signal handling itself is in test/process).

const METRICS_TOKEN = 'scraper-token-0123456789';

/** The value of one sample line (`name{labels} value`), or undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe('GET /metrics', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestApp({ metricsToken: METRICS_TOKEN });
  });
  afterAll(() => t.close());

  const scrape = async (token = ADMIN_TOKEN) => {
    const res = await t.app.inject({ url: '/metrics', headers: { authorization: `Bearer ${token}` } });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    return res.body;
  };

  it('counts requests by route pattern, method and status, never by raw URL', async () => {
    const created = await t.call({ method: 'POST', url: '/api/organizations', payload: { name: 'Metered' } });
    expect(created.statusCode).toBe(201);
    const id = created.json().id as string;
    for (let i = 0; i < 3; i++)
      expect((await t.call({ url: `/api/organizations/${id}` })).statusCode).toBe(200);
    expect((await t.call({ url: '/api/organizations/org_nope' })).statusCode).toBe(404);
    expect((await t.app.inject({ url: `/no-such-route-${id}` })).statusCode).toBe(404);

    const text = await scrape();
    const route = '/api/organizations/:id';
    const count = 'orgbase_http_request_duration_seconds_count';
    expect(sample(text, count, { method: 'GET', route, status: '200' })).toBe(3);
    expect(sample(text, count, { method: 'GET', route, status: '404' })).toBe(1);
    expect(sample(text, count, { method: 'POST', route: '/api/organizations', status: '201' })).toBe(1);
    expect(sample(text, count, { route: 'unmatched', status: '404' })).toBe(1);
    expect(
      sample(text, 'orgbase_http_request_duration_seconds_bucket', { method: 'GET', route, le: '+Inf' }),
    ).toBe(3);
    // Cumulative buckets, as Prometheus reads them: never decreasing, ending at the count.
    const buckets = text
      .split('\n')
      .filter((l) =>
        l.startsWith(
          'orgbase_http_request_duration_seconds_bucket{method="GET",route="/api/organizations/:id",status="200"',
        ),
      )
      .map((l) => Number(l.split(' ').at(-1)));
    expect(buckets.length).toBe(14);
    expect(buckets).toEqual([...buckets].sort((a, b) => a - b));
    expect(buckets.at(-1)).toBe(3);
    expect(
      sample(text, 'orgbase_http_request_duration_seconds_sum', { method: 'GET', route, status: '200' }),
    ).toBeGreaterThan(0);
    // No tenant's data in a label: not the organization's id, not a raw path.
    expect(text).not.toContain(id);
    expect(text).not.toContain('org_nope');
    expect(text).not.toContain('no-such-route');
  });

  it('reports ledger batches, lane queues and the database pool', async () => {
    const org = (
      await t.call({ method: 'POST', url: '/api/organizations', payload: { name: 'Batched' } })
    ).json().id as string;
    const before = sample(await scrape(), 'orgbase_ledger_batch_size_count') ?? 0;
    expect(
      (
        await t.call({
          method: 'POST',
          url: `/api/organizations/${org}/credits/add`,
          payload: { amount: '5' },
        })
      ).statusCode,
    ).toBe(201);
    const deducts = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        t.call({
          method: 'POST',
          url: `/api/organizations/${org}/credits/deduct`,
          headers: { 'idempotency-key': `metrics-${i}` },
          payload: { amount: '0.5' },
        }),
      ),
    );
    expect(deducts.map((r) => r.statusCode)).toEqual([201, 201, 201, 201, 201]);

    const text = await scrape();
    const batches = (sample(text, 'orgbase_ledger_batch_size_count') ?? 0) - before;
    expect(batches).toBeGreaterThan(0);
    // Six operations went through batches (one add, five deductions), however they were grouped.
    expect(sample(text, 'orgbase_ledger_batch_size_sum')).toBeGreaterThanOrEqual(6);
    expect(sample(text, 'orgbase_ledger_batch_duration_seconds_count')).toBe(
      sample(text, 'orgbase_ledger_batch_size_count'),
    );
    expect(sample(text, 'orgbase_ledger_lane_queue_depth', { lane: '0' })).toBe(0);
    expect(sample(text, 'orgbase_ledger_lane_busy', { lane: '0' })).toBe(0);
    if (onPostgres) {
      // The harness opens 5 connections: 2 for the ledger's hot statement, 3 for the rest.
      expect(sample(text, 'orgbase_db_pool_max_connections', { pool: 'main' })).toBe(3);
      expect(sample(text, 'orgbase_db_pool_max_connections', { pool: 'hot' })).toBe(2);
      expect(sample(text, 'orgbase_db_pool_connections', { pool: 'main' })).toBeGreaterThan(0);
      expect(sample(text, 'orgbase_db_pool_waiting_clients', { pool: 'main' })).toBe(0);
    } else {
      expect(sample(text, 'orgbase_db_pool_max_connections', { pool: 'pglite' })).toBe(1);
      expect(sample(text, 'orgbase_db_pool_connections', { pool: 'pglite' })).toBe(1);
    }
    expect(text).toContain('orgbase_process_errors_total');
  });

  it('is read with the operator token or METRICS_TOKEN, and nothing else', async () => {
    expect(await scrape(METRICS_TOKEN)).toContain('orgbase_http_request_duration_seconds');
    const none = await t.app.inject({ url: '/metrics' });
    expectProblem(none, 401, 'unauthenticated');
    expect(none.headers['www-authenticate']).toBe('Bearer');
    expectProblem(
      await t.app.inject({ url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN}x` } }),
      401,
      'unauthenticated',
    );
    expectProblem(
      await t.app.inject({ url: '/metrics', headers: { authorization: 'Bearer obo_guess' } }),
      401,
      'unauthenticated',
    );
    // The scraper's token opens nothing else.
    expectProblem(
      await t.app.inject({
        url: '/api/organizations',
        headers: { authorization: `Bearer ${METRICS_TOKEN}` },
      }),
      401,
      'unauthenticated',
    );
  });
});

describe('POST /api/operator/admin-token/rotate', () => {
  let stored: TestContext;
  let fromEnv: TestContext;
  let token: string;
  beforeAll(async () => {
    // Without ADMIN_TOKEN: the stored token, as a first start generates it.
    stored = await createTestApp({ adminToken: undefined });
    const boot = await stored.app.services.operator.bootstrap();
    token = boot.generatedToken as string;
    expect(token).toMatch(/^obo_/);
    fromEnv = await createTestApp();
  });
  afterAll(async () => {
    await stored.close();
    await fromEnv.close();
  });

  const rotate = (ctx: TestContext, bearer: string | undefined) =>
    ctx.app.inject({
      method: 'POST',
      url: '/api/operator/admin-token/rotate',
      headers: bearer ? { authorization: `Bearer ${bearer}` } : {},
    });

  it('returns a new token once; the old one stops working at once', async () => {
    const res = await rotate(stored, token);
    expect(res.statusCode, res.body).toBe(201);
    const body = res.json() as { token: string; rotated_at: string };
    expect(body.token).toMatch(/^obo_[A-Za-z0-9_-]{43}$/);
    expect(body.token).not.toBe(token);
    expect(Number.isNaN(Date.parse(body.rotated_at))).toBe(false);
    const read = (bearer: string) =>
      stored.app.inject({
        url: '/api/organizations/internal',
        headers: { authorization: `Bearer ${bearer}` },
      });
    expect((await read(body.token)).statusCode).toBe(200);
    expectProblem(await read(token), 401, 'unauthenticated');
    // Only the hash is kept: the token is nowhere in the database.
    const rows = await stored.db.db.selectFrom('operator_credentials').selectAll().execute();
    expect(JSON.stringify(rows, (_k, v) => (typeof v === 'bigint' ? String(v) : v))).not.toContain(
      body.token,
    );
    token = body.token;
  });

  it('is refused while ADMIN_TOKEN is set (the stored token is not in use)', async () => {
    expectProblem(await rotate(fromEnv, ADMIN_TOKEN), 409, 'admin_token_from_environment');
    expect((await fromEnv.call({ url: '/api/organizations/internal' })).statusCode).toBe(200);
  });

  it('is the operator’s only', async () => {
    expectProblem(await rotate(stored, undefined), 401, 'unauthenticated');
    expectProblem(await rotate(stored, 'obo_wrong'), 401, 'unauthenticated');
    const email = `rotate-${randomBytes(4).toString('hex')}@ops.test`;
    const signUp = await stored.app.inject({
      method: 'POST',
      url: '/api/auth/sign-up/email',
      payload: { email, password: 'ops-password-1', name: 'Owner' },
    });
    expect(signUp.statusCode, signUp.body).toBe(200);
    expectProblem(await rotate(stored, String(signUp.headers['set-auth-token'])), 403, 'forbidden');
    // Still the same operator token after the refusals.
    expect(
      (
        await stored.app.inject({
          url: '/api/organizations/internal',
          headers: { authorization: `Bearer ${token}` },
        })
      ).statusCode,
    ).toBe(200);
  });
});

describe('the drain', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it('fails readiness first, then refuses requests while closing, as problem+json', async () => {
    expect((await t.app.inject({ url: '/readyz' })).statusCode).toBe(200);
    const open = await t.call({ url: '/api/organizations/internal' });
    expect(open.headers.connection).not.toBe('close');

    t.app.drain.begin();
    const ready = await t.app.inject({ url: '/readyz' });
    expectProblem(ready, 503, 'service_unavailable');
    expect(ready.json().detail).toBe('The service is shutting down');
    // Draining still serves, asking clients to reconnect (elsewhere).
    const served = await t.call({ url: '/api/organizations/internal' });
    expect(served.statusCode).toBe(200);
    expect(served.headers.connection).toBe('close');
    expect((await t.app.inject({ url: '/healthz' })).statusCode).toBe(200);

    t.app.drain.close();
    const refused = await t.call({ url: '/api/organizations/internal' });
    expectProblem(refused, 503, 'service_unavailable');
    expect(refused.headers.connection).toBe('close');
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.headers['x-request-id']).toBe(refused.json().request_id);
  });
});
