import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { CompiledQuery, Kysely, PostgresDialect, type Transaction } from 'kysely';
import pg from 'pg';
import type { Config } from '../config.js';
import { PgliteDialect } from './pglite-dialect.js';
import type { Database } from './schema.js';

export type Db = Kysely<Database>;
export type Tx = Transaction<Database>;
/** What a repo function runs its SQL on: the root connection or a transaction, always passed in. */
export type Executor = Db | Tx;

export interface DbHandle {
  db: Db;
  kind: 'pglite' | 'postgres';
  /** Connections this process may hold at once (1 for PGlite). */
  poolSize: number;
  /**
   * Subscribes to a NOTIFY channel, so that every process hears what one of them changed
   * (cache invalidation). `onReset` runs when notifications may have been missed.
   */
  listen(
    channel: string,
    onMessage: (payload: string) => void,
    onReset: () => void,
  ): Promise<() => Promise<void>>;
  /**
   * Runs one statement on its own (its own transaction), prepared once per connection under
   * `name` where the driver allows (PostgreSQL): for hot statements whose text repeats with new
   * values, which PostgreSQL then does not parse again. One name, one text.
   */
  prepared(name: string, text: string, values: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  /** Read-only connection counts per pool, for /metrics. PGlite: its one connection, no queue known. */
  poolStats(): PoolStats[];
  close(): Promise<void>;
}

export interface PoolStats {
  /** `main` (every query), `hot` (the ledger's hot statement) or `pglite`. */
  pool: string;
  max: number;
  total: number;
  idle?: number;
  waiting?: number;
}

const INT8 = 20;
const INT8_ARRAY = 1016;
/** A calendar date stays the string PostgreSQL wrote ("2026-11-23"): a Date would shift it by time zone. */
const DATE = 1082;

/** Same value types on both engines: BIGINT arrives as bigint, NUMERIC as string, timestamptz as Date. */
const pgTypes = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8) return (v: string) => BigInt(v);
    if (oid === DATE) return (v: string) => v;
    if (oid === INT8_ARRAY)
      return (v: string) =>
        v
          .slice(1, -1)
          .split(',')
          .filter((s) => s !== '')
          .map((s) => BigInt(s));
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

/**
 * `poolSize` connections in all. DbHandle.prepared runs on `hotConnections` of them (default 2,
 * at most all but one), kept apart with generic plans forced: PostgreSQL otherwise re-plans a
 * prepared statement for every execution when its custom plans look cheaper than the generic one,
 * as they do for a hot statement's small arrays, and the planning cost more than the statement's
 * work. The other connections keep the default, so that ad hoc queries get plans for their values
 * (a parameter compared with a partial index's predicate, say).
 *
 * `prepare: false` runs DbHandle.prepared as an ordinary (unnamed) statement on the one pool, for
 * connection poolers that cannot keep named prepared statements across transactions (nor pass
 * startup options on).
 */
export function createPostgresDb(
  databaseUrl: string,
  poolSize = 10,
  opts: { prepare?: boolean; hotConnections?: number } = {},
): DbHandle {
  const prepare = opts.prepare ?? true;
  const hotSize = prepare ? Math.max(0, Math.min(opts.hotConnections ?? 2, poolSize - 1)) : 0;
  const pool = new pg.Pool({ connectionString: databaseUrl, max: poolSize - hotSize, types: pgTypes });
  const hot = hotSize
    ? new pg.Pool({
        connectionString: databaseUrl,
        max: hotSize,
        types: pgTypes,
        options: '-c plan_cache_mode=force_generic_plan',
      })
    : undefined;
  // An idle client that loses its server must not take the process down.
  pool.on('error', () => {});
  hot?.on('error', () => {});
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const listeners = new Set<pg.Client>();
  let closed = false;

  async function listen(channel: string, onMessage: (payload: string) => void, onReset: () => void) {
    let client: pg.Client | undefined;
    const connect = async (): Promise<void> => {
      const c = new pg.Client({ connectionString: databaseUrl });
      c.on('notification', (n) => {
        if (n.channel === channel) onMessage(n.payload ?? '');
      });
      c.on('error', () => {
        listeners.delete(c);
        onReset();
        if (!closed) setTimeout(() => void connect().catch(() => onReset()), 1000).unref();
      });
      await c.connect();
      await c.query(`listen ${pg.escapeIdentifier(channel)}`);
      listeners.add(c);
      client = c;
    };
    await connect();
    return async () => {
      if (client) {
        listeners.delete(client);
        await client.end().catch(() => {});
      }
    };
  }

  return {
    db,
    kind: 'postgres',
    poolSize,
    listen,
    prepared: async (name, text, values) =>
      prepare ? (hot ?? pool).query({ name, text, values }) : pool.query({ text, values }),
    poolStats: () =>
      [
        { pool: 'main', p: pool, max: poolSize - hotSize },
        ...(hot ? [{ pool: 'hot', p: hot, max: hotSize }] : []),
      ].map(({ pool: name, p, max }) => ({
        pool: name,
        max,
        total: p.totalCount,
        idle: p.idleCount,
        waiting: p.waitingCount,
      })),
    close: async () => {
      closed = true;
      await Promise.all([...listeners].map((c) => c.end().catch(() => {})));
      await hot?.end();
      await db.destroy();
    },
  };
}

export async function openPglite(dataDirOrUrl: string, loadDataDir?: Blob): Promise<PGlite> {
  return PGlite.create(dataDirOrUrl, {
    parsers: { [INT8]: (v: string) => BigInt(v), [DATE]: (v: string) => v },
    ...(loadDataDir ? { loadDataDir } : {}),
  });
}

export function createPgliteDb(pglite: PGlite, onClose?: () => void): DbHandle {
  const db = new Kysely<Database>({ dialect: new PgliteDialect(pglite) });
  return {
    db,
    kind: 'pglite',
    poolSize: 1,
    // One process owns a PGlite database, and PGlite delivers its own NOTIFYs to its listeners.
    listen: async (channel, onMessage) => pglite.listen(channel, onMessage),
    // Through Kysely, whose dialect hands PGlite's one connection to one user at a time.
    prepared: async (_name, text, values) =>
      db.executeQuery<Record<string, unknown>>(CompiledQuery.raw(text, values)),
    poolStats: () => [{ pool: 'pglite', max: 1, total: 1 }],
    close: async () => {
      await db.destroy();
      onClose?.();
    },
  };
}

/**
 * PGlite is one process's database: a second process opening the same directory would corrupt
 * it. A lock file with our pid refuses that, and a stale lock (its process gone) is taken over.
 */
function lockDataDir(dir: string): () => void {
  mkdirSync(dir, { recursive: true });
  const lockPath = join(dir, '.orgbase.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(lockPath, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(lockPath, 'utf8').trim());
      if (pid && pid !== process.pid && isAlive(pid))
        throw new Error(
          `The data directory ${dir} is in use by process ${pid}. PGlite serves one process; ` +
            'set DATABASE_URL to a PostgreSQL server to run several.',
        );
      rmSync(lockPath, { force: true });
    }
  }
  throw new Error(`Could not lock the data directory ${dir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** PostgreSQL when DATABASE_URL is set, else embedded PGlite in the data directory. */
export async function createDb(
  config: Pick<Config, 'databaseUrl' | 'dataDir' | 'databasePoolSize' | 'databasePrepare' | 'ledgerLanes'>,
) {
  if (config.databaseUrl)
    return createPostgresDb(config.databaseUrl, config.databasePoolSize, {
      prepare: config.databasePrepare,
      // One connection per ledger lane for its hot statement: a lane has one in flight at most.
      hotConnections: config.ledgerLanes,
    });
  const unlock = lockDataDir(config.dataDir);
  try {
    return createPgliteDb(await openPglite(join(config.dataDir, 'pg')), unlock);
  } catch (err) {
    unlock();
    throw err;
  }
}
