import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Op } from './load.js';
import { CheckFailed, Tally } from './tally.js';

/** The PostgreSQL server to run on; its path names the maintenance database. */
export const SERVER_URL = process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

export interface Scratch {
  url: string;
  name: string;
  drop(): Promise<void>;
}

async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: SERVER_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** Creates an empty database for this run; `drop` removes it (closing any connection left). */
export async function createScratchDatabase(): Promise<Scratch> {
  const name = `orgbase_bench_${randomBytes(5).toString('hex')}`;
  await withAdmin((c) => c.query(`create database ${name}`));
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    url: url.toString(),
    name,
    drop: async () => {
      if (dropped) return;
      dropped = true;
      await withAdmin((c) => c.query(`drop database if exists ${name} with (force)`));
    },
  };
}

/** VACUUM (ANALYZE) of the whole database at `url`: dead rows reclaimed, statistics fresh. */
export async function vacuumAnalyze(url: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query('vacuum (analyze)');
  } finally {
    await c.end();
  }
}

/** The settings that decide whether a commit is durable, and the server version. */
export async function serverSettings(url: string): Promise<Record<string, string>> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query<{ name: string; setting: string }>(
      `select name, setting from pg_settings
       where name in ('server_version', 'synchronous_commit', 'fsync', 'wal_sync_method', 'commit_delay', 'max_connections')`,
    );
    return Object.fromEntries(rows.map((r) => [r.name, r.setting]));
  } finally {
    await c.end();
  }
}

/**
 * The naive baseline: one database transaction per debit, `SELECT balance ... FOR UPDATE`,
 * check it covers the amount, `UPDATE`, `COMMIT` — the textbook way to keep a balance exact.
 *
 * Chosen: driven directly from this process through a `pg` Pool, on its own simple table in the
 * same PostgreSQL, rather than behind a minimal HTTP server. Without HTTP it pays no request
 * parsing, JSON or socket costs, and it writes no journal row, no idempotency record and no
 * double-entry counter-account, so it is the most generous baseline this method allows: every
 * ratio against it understates Orgbase's lead rather than flattering it, and what remains of the
 * baseline's cost is exactly what group commit removes (a commit, and for a hot account a
 * row-lock hand-off, per debit). It keeps the same concurrency (one pool connection per in-flight
 * debit, as many as the HTTP runs have sockets) and the server's durable commits
 * (synchronous_commit as configured, fsync'd WAL).
 */
export class NaiveLedger {
  private readonly pool: pg.Pool;

  constructor(url: string, connections: number) {
    this.pool = new pg.Pool({ connectionString: url, max: connections });
    this.pool.on('error', () => {});
  }

  async setup(accounts: number, initialMicros: bigint): Promise<void> {
    await this.pool.query(
      `create table bench_naive_accounts (id integer primary key, balance bigint not null)`,
    );
    await this.pool.query(
      'insert into bench_naive_accounts select g, $2::bigint from generate_series(0, $1::integer - 1) g',
      [accounts, initialMicros.toString()],
    );
  }

  /** Opens every connection up front, so the first measured window does not pay for it. */
  async warm(connections: number): Promise<void> {
    const clients = await Promise.all(Array.from({ length: connections }, () => this.pool.connect()));
    for (const c of clients) c.release();
  }

  /** One debit of `amountMicros` from account `id`: 1 when applied, 0 when the balance is short. */
  debit(id: number, amountMicros: bigint): Promise<number> {
    return this.pool.connect().then(async (c) => {
      try {
        await c.query('begin');
        const { rows } = await c.query<{ balance: string }>(
          'select balance from bench_naive_accounts where id = $1 for update',
          [id],
        );
        const balance = rows[0] ? BigInt(rows[0].balance) : -1n;
        if (balance < amountMicros) {
          await c.query('rollback');
          return 0;
        }
        await c.query('update bench_naive_accounts set balance = balance - $2 where id = $1', [
          id,
          amountMicros.toString(),
        ]);
        await c.query('commit');
        return 1;
      } catch (err) {
        await c.query('rollback').catch(() => {});
        throw err;
      } finally {
        c.release();
      }
    });
  }

  readonly tally = new Tally<number>();

  /** A debit of `amountMicros` from the account `pick` names, counted in the tally. */
  op(pick: () => number, amountMicros: bigint): Op {
    return async () => {
      const id = pick();
      const applied = await this.debit(id, amountMicros);
      if (applied) this.tally.add(id);
      else this.tally.refuse('insufficient_credits');
      return applied;
    };
  }

  /** Every account must hold its initial balance minus the accepted debits. */
  async check(initialMicros: bigint, amountMicros: bigint): Promise<void> {
    const { rows } = await this.pool.query<{ id: number; balance: string }>(
      'select id, balance from bench_naive_accounts',
    );
    const wrong = rows
      .map((r) => ({
        id: r.id,
        actual: BigInt(r.balance),
        expected: initialMicros - BigInt(this.tally.accepted.get(r.id) ?? 0) * amountMicros,
      }))
      .filter((r) => r.actual !== r.expected);
    if (wrong.length)
      throw new CheckFailed(
        `baseline balance mismatch on ${wrong.length} account(s): ${wrong
          .slice(0, 10)
          .map((w) => `${w.id}: ${w.actual}, expected ${w.expected}`)
          .join('; ')}`,
      );
  }

  close(): Promise<void> {
    return this.pool.end();
  }
}
