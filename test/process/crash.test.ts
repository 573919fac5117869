import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { createPostgresDb, type Db } from '../../src/db/client.js';
import { ADMIN_TOKEN, createScratchDatabase, onPostgres } from '../harness.js';
import { listening, orgbase, type Run } from './cli.js';

// Crash safety: a server process killed with SIGKILL, five times, each time under keyed load
// (idempotency keys on every debit). Whatever was in flight, every movement the server
// acknowledged is in the ledger exactly once, replaying any key after the crash moves nothing
// again, and `orgbase ledger verify` finds the books clean.

const AUTH = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
const KILLS = 5;
const IN_FLIGHT = 32;
/** Acknowledged debits a round waits for before it kills the server mid-stream. */
const ACKS_PER_ROUND = 150;

type Kind = 'deduct' | 'usage';

interface Keyed {
  key: string;
  kind: Kind;
  /** Micro-units, so the sums are test-local integers. */
  micros: bigint;
  /** The transaction the server acknowledged for this key, once one did. */
  transactionId?: string;
}

const amountText = (m: bigint) => `${m / 1_000_000n}.${(m % 1_000_000n).toString().padStart(6, '0')}`;

/** Sends one keyed debit; the transaction id when acknowledged, undefined when the answer was lost. */
async function send(
  base: string,
  org: string,
  k: Keyed,
): Promise<{ id: string; replayed: boolean } | undefined> {
  let res: Response;
  try {
    res =
      k.kind === 'deduct'
        ? await fetch(`${base}/api/organizations/${org}/credits/deduct`, {
            method: 'POST',
            headers: { ...AUTH, 'idempotency-key': k.key },
            body: JSON.stringify({ amount: amountText(k.micros), reason: 'crash test' }),
          })
        : await fetch(`${base}/api/usage`, {
            method: 'POST',
            headers: AUTH,
            body: JSON.stringify({
              events: [{ organization_id: org, credits: amountText(k.micros), idempotency_key: k.key }],
            }),
          });
  } catch {
    return undefined; // the process died with it in flight: its outcome is unknown
  }
  let body: Record<string, unknown>;
  try {
    body = (await res.json()) as Record<string, unknown>;
  } catch {
    return undefined; // cut mid-answer
  }
  if (k.kind === 'deduct') {
    expect(res.status, JSON.stringify(body)).toBe(201);
    return { id: body.id as string, replayed: res.headers.get('idempotent-replayed') === 'true' };
  }
  expect(res.status, JSON.stringify(body)).toBe(200);
  const result = (body.results as { status: string; transaction_id: string; replayed: boolean }[])[0];
  expect(result?.status, JSON.stringify(body)).toBe('applied');
  return { id: result?.transaction_id as string, replayed: result?.replayed === true };
}

describe.runIf(onPostgres)('kill -9 under keyed load on PostgreSQL', () => {
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

  it(`keeps every acknowledged movement exactly once across ${KILLS} crashes`, async () => {
    const scratch = await createScratchDatabase();
    drop = scratch.drop;
    const env = { DATABASE_URL: scratch.url, PORT: '0', ADMIN_TOKEN, SHUTDOWN_DRAIN_MS: '0' };
    const start = async () => {
      const s = orgbase(['serve'], env);
      servers.push(s);
      return { s, base: await listening(s) };
    };

    let { s: server, base } = await start();
    const created = await fetch(`${base}/api/organizations`, {
      method: 'POST',
      headers: AUTH,
      body: JSON.stringify({ name: 'Crash Org' }),
    });
    expect(created.status).toBe(201);
    const org = ((await created.json()) as { id: string }).id;
    const funded = await fetch(`${base}/api/organizations/${org}/credits/add`, {
      method: 'POST',
      headers: AUTH,
      body: JSON.stringify({ amount: '1000000' }),
    });
    expect(funded.status).toBe(201);
    const initial = 1_000_000n * 1_000_000n;

    const all: Keyed[] = [];
    let lostInFlight = 0;
    for (let round = 0; round < KILLS; round++) {
      // Keyed load until enough are acknowledged, then SIGKILL with requests still in flight.
      let acked = 0;
      let killed = false;
      let n = 0;
      const worker = async () => {
        while (!killed) {
          const i = n++;
          const k: Keyed = {
            key: `crash-${round}-${i}`,
            kind: i % 2 === 0 ? 'deduct' : 'usage',
            micros: 10_000n * BigInt(1 + (i % 7)),
          };
          all.push(k);
          const r = await send(base, org, k);
          if (r) {
            expect(r.replayed).toBe(false);
            k.transactionId = r.id;
            if (++acked >= ACKS_PER_ROUND && !killed) {
              killed = true;
              server.child.kill('SIGKILL');
            }
          } else lostInFlight++;
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
      await server.exited;
      expect(server.child.signalCode).toBe('SIGKILL');

      ({ s: server, base } = await start());
      // After the crash: every key again, with the same request. An acknowledged one answers its
      // first transaction as a replay; one whose answer was lost is applied now, or turns out to
      // have committed before the crash (a replay) — either way, once.
      let next = 0;
      const replayer = async () => {
        while (next < all.length) {
          const k = all[next++] as Keyed;
          const r = await send(base, org, k);
          expect(r, k.key).toBeDefined();
          if (k.transactionId)
            expect({ key: k.key, id: r?.id, replayed: r?.replayed }).toEqual({
              key: k.key,
              id: k.transactionId,
              replayed: true,
            });
          else if (r) k.transactionId = r.id;
        }
      };
      await Promise.all(Array.from({ length: 16 }, replayer));
    }
    console.log(
      `[crash] ${KILLS} kills: ${all.length} keyed debits, ${lostInFlight} answers lost in flight, each kept once`,
    );
    // Requests really were in flight when the processes died.
    expect(lostInFlight).toBeGreaterThan(0);

    db = createPostgresDb(scratch.url, 2);
    const rows = await sql<{ id: string; amount: bigint }>`select id, amount from ledger_transactions
      where organization_id = ${org} and type in ('deduction', 'usage')`.execute(db.db);
    const byId = new Map<string, bigint>();
    for (const r of rows.rows) {
      expect(byId.has(r.id), `transaction ${r.id} twice`).toBe(false);
      byId.set(r.id, BigInt(r.amount));
    }
    // One movement per key, each with its key's amount, and nothing else moved.
    expect(new Set(all.map((k) => k.transactionId)).size).toBe(all.length);
    for (const k of all) expect(byId.get(k.transactionId as string), k.key).toBe(k.micros);
    expect(byId.size).toBe(all.length);
    const keys = await sql<{ n: bigint }>`select count(*) as n from idempotency_records
      where organization_id = ${org}`.execute(db.db);
    expect(BigInt(keys.rows[0]?.n ?? -1)).toBe(BigInt(all.length));
    const spent = all.reduce((sum, k) => sum + k.micros, 0n);
    const balance = (await (
      await fetch(`${base}/api/organizations/${org}/balance`, { headers: AUTH })
    ).json()) as {
      available: string;
    };
    const [whole, frac = ''] = balance.available.split('.');
    expect(BigInt(whole as string) * 1_000_000n + BigInt(frac.padEnd(6, '0'))).toBe(initial - spent);

    const verified = await fetch(`${base}/api/ledger/verify`, { headers: AUTH });
    expect(await verified.json()).toMatchObject({ ok: true, violations: [] });
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    const verify = orgbase(['ledger', 'verify'], { DATABASE_URL: scratch.url });
    expect(await verify.exited, verify.stdout() + verify.stderr()).toBe(0);
    expect(verify.stdout()).toMatch(/transactions, \d+ accounts: OK/);
  }, 120_000);
});
