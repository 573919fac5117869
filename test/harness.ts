import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import pg from 'pg';
import { expect, inject } from 'vitest';
import { type App, type AppDeps, buildApp } from '../src/app.js';
import { createPgliteDb, createPostgresDb, type DbHandle, openPglite } from '../src/db/client.js';
import { migrate } from '../src/db/migrate.js';
import { type ErrorCode, ErrorCodes, PROBLEM_TYPE_BASE, type Problem } from '../src/lib/problem.js';

export const ADMIN_TOKEN = 'test-operator-token-0123456789';
export const onPostgres = Boolean(process.env.DATABASE_URL);

/** A throwaway database on the server that DATABASE_URL names; dropped by `drop`. */
export async function createScratchDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const base = new URL(process.env.DATABASE_URL as string);
  const name = `orgbase_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base.toString() });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: base.toString() });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

/**
 * A migrated database for one test file: a fresh PostgreSQL database when DATABASE_URL is
 * set, else an in-memory PGlite loaded from the migrated template.
 */
export async function createTestDb(): Promise<DbHandle & { poolUrl?: string }> {
  if (onPostgres) {
    const scratch = await createScratchDatabase();
    const handle = createPostgresDb(scratch.url, 5);
    await migrate(handle.db);
    return {
      ...handle,
      poolUrl: scratch.url,
      close: async () => {
        await handle.close();
        await scratch.drop();
      },
    };
  }
  const template = readFileSync(inject('pgliteTemplate'));
  return createPgliteDb(await openPglite('memory://', new Blob([template])));
}

export interface TestContext {
  app: App;
  db: DbHandle & { poolUrl?: string };
  /** app.inject with the operator's token unless `headers.authorization` is given. */
  call: (opts: InjectOptions) => Promise<LightMyRequestResponse>;
  close: () => Promise<void>;
}

/**
 * The app on a fresh test database. `wrap` may put something between the app and the database
 * (a query recorder, a fault to inject); the database itself is still the one closed.
 */
export async function createTestApp(
  overrides: Partial<AppDeps> = {},
  wrap: (db: DbHandle) => DbHandle = (db) => db,
): Promise<TestContext> {
  const handle = await createTestDb();
  const db = { ...wrap(handle), poolUrl: handle.poolUrl };
  const app = await buildApp({
    db,
    adminToken: ADMIN_TOKEN,
    rateLimit: { perIp: 1e6, perKey: 1e6 },
    ...overrides,
  });
  await app.ready();
  return {
    app,
    db,
    call: (opts) =>
      app.inject({ ...opts, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...opts.headers } }),
    close: async () => {
      await app.close();
      await handle.close();
    },
  };
}

/** Row counts of every table, to prove a rejected request wrote nothing. */
export async function tableCounts(db: DbHandle): Promise<Record<string, number>> {
  const { rows } = await sql<{ table_name: string }>`select table_name from information_schema.tables
    where table_schema = 'public' and table_type = 'BASE TABLE' order by table_name`.execute(db.db);
  const counts: Record<string, number> = {};
  for (const { table_name } of rows) {
    const r = await sql<{ n: bigint }>`select count(*) as n from ${sql.table(table_name)}`.execute(db.db);
    counts[table_name] = Number(r.rows[0]?.n ?? 0);
  }
  return counts;
}

/**
 * Asserts `res` is the RFC 9457 problem for `code` (typed from the closed catalogue, so a
 * misspelled code fails `npm run typecheck`) and returns its body: the status, the
 * `application/problem+json` type, and the fields every problem has (type, title, status, code,
 * a non-empty detail and the request's id). `field` (one name, or `{ field, where }` with a label
 * for the failure messages) is a field the problem's `errors` must name, itself or below it
 * (`features` is named by `features.0`).
 */
export function expectProblem(
  res: LightMyRequestResponse,
  status: number,
  code: ErrorCode,
  field?: string | { field?: string; where?: string },
): Problem {
  const { field: named, where } = typeof field === 'string' ? { field } : (field ?? {});
  const label = (what: string) => (where ? `${where}: ${what}` : what);
  expect(res.statusCode, label(res.body.slice(0, 600))).toBe(status);
  expect(res.headers['content-type'], label('content-type')).toMatch(/^application\/problem\+json\b/);
  const body = res.json() as Problem;
  expect(body, label(res.body.slice(0, 600))).toMatchObject({
    type: PROBLEM_TYPE_BASE + code.replaceAll('_', '-'),
    title: ErrorCodes[code].title,
    status,
    code,
    request_id: res.headers['x-request-id'],
  });
  expect(body.detail, label('detail')).toBeTypeOf('string');
  expect(body.detail.length, label('detail')).toBeGreaterThan(0);
  if (named !== undefined) {
    const fields = (body.errors ?? []).map((e) => e.field);
    expect(
      fields.some((f) => f === named || f.startsWith(`${named}.`)),
      label(`${res.body} names ${named}`),
    ).toBe(true);
  }
  return body;
}

/** Runs `refused` and proves it wrote nothing at all: every table has the rows it had. */
export async function writesNothing(db: DbHandle, refused: () => Promise<unknown>): Promise<void> {
  const before = await tableCounts(db);
  await refused();
  expect(await tableCounts(db)).toEqual(before);
}
