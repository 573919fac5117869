import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, createScratchDatabase, onPostgres } from '../harness.js';
import { listening, orgbase, type Run } from './cli.js';

// Shutdown, tracing and the process's last-resort handlers, in real server processes.
let dbEnv: Record<string, string>;
let cleanup: () => Promise<void>;
const running: Run[] = [];

beforeAll(async () => {
  if (onPostgres) {
    const scratch = await createScratchDatabase();
    dbEnv = { DATABASE_URL: scratch.url };
    cleanup = scratch.drop;
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'orgbase-ops-'));
    dbEnv = { ORGBASE_DATA_DIR: dir };
    cleanup = async () => rmSync(dir, { recursive: true, force: true });
  }
});
afterAll(async () => {
  for (const r of running)
    if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
  await Promise.all(running.map((r) => r.exited));
  await cleanup();
});

const AUTH = { authorization: `Bearer ${ADMIN_TOKEN}` };

function serve(env: Record<string, string>): Run {
  const run = orgbase(['serve'], { ...dbEnv, PORT: '0', ADMIN_TOKEN, ...env });
  running.push(run);
  return run;
}

/** Runs a TypeScript file of the repository in a child process, as the CLI runs. */
function tsxScript(path: string): Run {
  const child = spawn(process.execPath, ['--import', 'tsx', path], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/**
 * A POST whose headers and half its body are sent: the server has a request in flight until
 * `finish()` sends the rest. `response` settles with the status, or 0 if the connection is cut.
 */
function heldPost(base: string, path: string, body: unknown) {
  const payload = JSON.stringify(body);
  const url = new URL(path, base);
  const req = http.request({
    host: url.hostname,
    port: url.port,
    path: url.pathname,
    method: 'POST',
    headers: { ...AUTH, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
  });
  const response = new Promise<{ status: number; body: string }>((resolve) => {
    req.on('response', (res) => {
      let text = '';
      res.on('data', (d) => {
        text += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', () => resolve({ status: 0, body: text }));
    });
    req.on('error', (err) => resolve({ status: 0, body: err.message }));
  });
  req.write(payload.slice(0, 4));
  return { response, finish: () => req.end(payload.slice(4)) };
}

/** Waits until the server counts at least `n` requests in flight (the scrape itself is one). */
async function untilInFlight(base: string, n: number) {
  for (;;) {
    const text = await (await fetch(`${base}/metrics`, { headers: AUTH })).text();
    const m = /^orgbase_http_requests_in_flight (\d+)$/m.exec(text);
    if (Number(m?.[1] ?? 0) >= n) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Polls /readyz until it stops answering 200 (the signal has been handled). */
async function untilNotReady(base: string) {
  for (;;) {
    const res = await fetch(`${base}/readyz`);
    if (res.status !== 200) return res;
    await res.arrayBuffer();
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('SIGTERM', () => {
  it('fails /readyz with a 503 problem first, serves what is in flight and what arrives, then exits 0', async () => {
    // A drain window far longer than the test: only an empty server ends it early.
    const server = serve({ SHUTDOWN_DRAIN_MS: '600000' });
    const base = await listening(server);
    const held = heldPost(base, '/api/organizations', { name: 'Held through shutdown' });
    await untilInFlight(base, 2);

    server.child.kill('SIGTERM');
    const ready = await untilNotReady(base);
    expect(ready.status).toBe(503);
    expect(ready.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await ready.json()).toMatchObject({
      status: 503,
      code: 'service_unavailable',
      detail: 'The service is shutting down',
    });
    // Still draining (the held request keeps it so): a new request is served, not refused.
    const during = await fetch(`${base}/api/organizations/internal`, { headers: AUTH });
    expect(during.status).toBe(200);
    expect(server.child.exitCode).toBe(null);

    held.finish();
    const done = await held.response;
    expect(done.status, done.body).toBe(201);
    expect(JSON.parse(done.body).name).toBe('Held through shutdown');
    expect(await server.exited).toBe(0);
    expect(server.stdout()).toContain('shutting down');
    expect(server.stdout()).not.toContain('drain window over');
    expect(server.stdout()).not.toMatch(/"level":(50|60)/);
    // The listener is closed: nothing answers there any more.
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  }, 90_000);

  it('cuts a request still in flight when SHUTDOWN_DRAIN_MS has passed, and exits 0', async () => {
    const server = serve({ SHUTDOWN_DRAIN_MS: '300' });
    const base = await listening(server);
    const held = heldPost(base, '/api/organizations', { name: 'Never finished' });
    await untilInFlight(base, 2);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    expect((await held.response).status).toBe(0);
    expect(server.stdout()).toMatch(/"level":40.*drain window over/);
  }, 90_000);
});

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: { key: string; value: { stringValue?: string; intValue?: number | string } }[];
}

describe('OpenTelemetry', () => {
  it('sends a span per request, named by route, to OTEL_EXPORTER_OTLP_ENDPOINT', async () => {
    const received: { path: string; type: string; spans: OtlpSpan[] }[] = [];
    const collector = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => {
        body += d;
      });
      req.on('end', () => {
        const doc = JSON.parse(body) as {
          resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[];
        };
        received.push({
          path: `${req.method} ${req.url}`,
          type: String(req.headers['content-type']),
          spans: doc.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)),
        });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    collector.listen(0, '127.0.0.1');
    await once(collector, 'listening');
    const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
    try {
      const server = serve({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, SHUTDOWN_DRAIN_MS: '0' });
      const base = await listening(server);
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      const created = await fetch(`${base}/api/organizations`, {
        method: 'POST',
        headers: {
          ...AUTH,
          'content-type': 'application/json',
          traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
        },
        body: JSON.stringify({ name: 'Traced' }),
      });
      expect(created.status).toBe(201);
      const id = ((await created.json()) as { id: string }).id;
      expect((await fetch(`${base}/api/organizations/${id}`, { headers: AUTH })).status).toBe(200);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      server.child.kill('SIGTERM');
      expect(await server.exited).toBe(0);

      expect(received.length).toBeGreaterThan(0);
      for (const r of received) {
        expect(r.path).toBe('POST /v1/traces');
        expect(r.type).toMatch(/^application\/json/);
      }
      const spans = received.flatMap((r) => r.spans);
      const attr = (s: OtlpSpan, key: string) => s.attributes.find((a) => a.key === key)?.value;
      const post = spans.find((s) => s.name === 'POST /api/organizations');
      expect(post, spans.map((s) => s.name).join(', ')).toBeDefined();
      // The caller's trace continues: W3C trace context is honoured.
      expect(post?.traceId).toBe(traceId);
      expect(post && attr(post, 'http.route')?.stringValue).toBe('/api/organizations');
      expect(post && Number(attr(post, 'http.response.status_code')?.intValue)).toBe(201);
      const get = spans.find((s) => s.name === 'GET /api/organizations/:id');
      expect(get && attr(get, 'http.route')?.stringValue).toBe('/api/organizations/:id');
      expect(spans.some((s) => attr(s, 'url.path')?.stringValue === '/healthz')).toBe(false);
      if (onPostgres) {
        // Its queries are children in the same trace.
        const queries = spans.filter((s) => s.traceId === traceId && s.name.startsWith('pg.query'));
        expect(queries.length).toBeGreaterThan(0);
      }
    } finally {
      collector.close();
    }
  }, 90_000);
});

describe('the operator API beside a running server', () => {
  it('rotates the token that the CLI cannot reach on PGlite, and the CLI says where to go', async () => {
    // No ADMIN_TOKEN: the stored token, printed at the first start.
    const server = serve({ ADMIN_TOKEN: '', SHUTDOWN_DRAIN_MS: '0' });
    const base = await listening(server);
    const first = /^\s+(obo_[A-Za-z0-9_-]+)$/m.exec(server.stdout())?.[1] as string;
    expect(first).toBeDefined();
    if (!onPostgres) {
      for (const [args, instead] of [
        [['admin-token', 'rotate'], 'POST /api/operator/admin-token/rotate'],
        [['ledger', 'verify'], 'GET /api/ledger/verify'],
      ] as const) {
        const cli = orgbase([...args], dbEnv);
        expect(await cli.exited).toBe(1);
        expect(cli.stderr()).toMatch(/in use by process \d+/);
        expect(cli.stderr()).toContain(instead);
      }
    }
    const rotated = await fetch(`${base}/api/operator/admin-token/rotate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${first}` },
    });
    expect(rotated.status).toBe(201);
    const { token } = (await rotated.json()) as { token: string };
    const read = (t: string) =>
      fetch(`${base}/api/ledger/verify`, { headers: { authorization: `Bearer ${t}` } });
    const verified = await read(token);
    expect(verified.status).toBe(200);
    expect(await verified.json()).toMatchObject({ ok: true });
    expect((await read(first)).status).toBe(401);
    // The server's /metrics has Node's process metrics too (tests' in-process apps do not).
    const metrics = await (
      await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } })
    ).text();
    expect(metrics).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(metrics).toContain('nodejs_eventloop_lag_seconds');
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  }, 90_000);
});

describe('configuration', () => {
  it.each([
    [{ SHUTDOWN_DRAIN_MS: 'soon' }, 'SHUTDOWN_DRAIN_MS'],
    [{ METRICS_TOKEN: 'short' }, 'METRICS_TOKEN'],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'grpc://collector:4317' }, 'OTEL_EXPORTER_OTLP_ENDPOINT'],
  ])('refuses to start with %j, naming the variable (exit 2)', async (env, variable) => {
    const run = orgbase(['serve'], { ...dbEnv, PORT: '0', ...env });
    running.push(run);
    expect(await run.exited).toBe(2);
    expect(run.stderr()).toContain(variable);
  });
});

describe('errors nobody handles', () => {
  it('are logged at error level and the process carries on', async () => {
    const script = tsxScript('test/support/process-errors.ts');
    running.push(script);
    expect(await script.exited, script.stderr()).toBe(0);
    const lines = script
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string; err?: { message: string } });
    expect(lines.find((l) => l.msg === 'unhandled promise rejection')).toMatchObject({
      level: 50,
      err: { message: 'rejected on purpose' },
    });
    expect(lines.find((l) => l.msg === 'uncaught exception')).toMatchObject({
      level: 50,
      err: { message: 'thrown on purpose' },
    });
    expect(script.stdout()).toContain('still serving after unhandled_rejection, uncaught_exception');
  }, 60_000);
});
