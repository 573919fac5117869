/**
 * The tree case of `npm run bench`: usage across sub-organizations — total spend and credits of a
 * whole organization tree over a date range, with a per-organization breakdown — read from the
 * daily roll-ups (Orgbase over HTTP) against a naive recursive-CTE GROUP BY over the ledger
 * (straight to PostgreSQL).
 *
 * Runs after the ledger and billing parts; alone with `npx tsx bench/run.ts --only tree` (or
 * `BENCH_ONLY=tree npm run bench`).
 *
 * Dataset, built in SQL without HTTP (bench/run.ts's server is already up, so the schema is
 * migrated): one top-level organization and BENCH_TREE_ORGS (default 1,000) organizations in all,
 * numbered breadth-first — 10 children of the top, 10 children under each of those, and the rest
 * spread round-robin under those 100 grandchildren (~9 each for 1,000), so the tree is 3 levels
 * deep (MAX_DEPTH allows 5). Every organization is on the Enterprise plan with its subscription
 * row, each sub-organization granted every feature of it (what POST …/sub-organizations grants by
 * default), 3 agents each with an open assignment, its `credits` (usage_events_limit NULL:
 * unlimited), `sys:usage` and `sys:top_ups` accounts, and one top-up funding it.
 * BENCH_TREE_EVENTS (default 1,000,000) usage events go round-robin over the organizations
 * (event g to organization g mod N) and evenly over the BENCH_TREE_DAYS (default 60) days up to
 * now, so time and ids both grow with g. Every event is what POST /api/usage writes (as in
 * bench/billing.ts): type 'usage', entries ['credits', 'sys:usage'] of [-x, x], metadata with
 * agent_id (one event in 20 has none), tokens_in, tokens_out and cost as a decimal string, and
 * the exact balance_after. Each INSERT … SELECT FROM generate_series (250,000 rows, one
 * transaction) also upserts the `usage_daily` roll-ups of the rows it wrote (from its RETURNING
 * rows, merged on conflict across chunks: the state the incremental roll-up maintains), and
 * `usage_org_daily` from them; then the account balances come from the
 * roll-ups, so GET /api/ledger/verify holds (checked when the database holds at most 1,500,000
 * transactions, i.e. not after the billing part), and VACUUM ANALYZE. Ids are 'org_btree…',
 * 'txn_btree…' and 'agt_btree…', apart from bench/billing.ts's.
 *
 * Measured, with the window the last 30 days up to today (UTC, inclusive):
 *   (1)  GET /api/organizations/{top}/sub-organizations/usage?from&to as the operator
 *   (1') naive: one SQL query, a recursive CTE over organizations.parent_id joined to
 *        ledger_transactions, summing events, credits, tokens and cost (from metadata) per
 *        organization for the window, through `pg` with no HTTP in front (generous to it)
 * each one at a time (BENCH_TREE_REQUESTS requests, default 300, after a short warm-up) and with
 * BENCH_TREE_CLIENTS (default 4) concurrent clients (as many requests again); the naive query
 * stops early after BENCH_TREE_NAIVE_SECONDS (default 30) per phase, as it takes far longer.
 * Target (informational): p99 ≤ 100 ms for (1). Correctness (fails the run): before measuring,
 * the endpoint's totals and every organization's events, credits, tokens and spend equal the
 * naive query's; and every answer during the runs carries the same totals.
 */
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { PLANS } from '../src/modules/plans/plans.catalog.js';
import { backgroundLoad, type CpuShare, cpuMeter, noiseWarning } from './cpu.js';
import { Client } from './http.js';
import type { Scratch } from './pg.js';
import { int, ms, positiveEnv, type Target, table, targetsTable } from './report.js';
import type { Server } from './server.js';
import { CheckFailed, toMicros } from './tally.js';

const ORGS = positiveEnv('BENCH_TREE_ORGS', 1000);
const EVENTS = positiveEnv('BENCH_TREE_EVENTS', 1_000_000);
const DAYS = positiveEnv('BENCH_TREE_DAYS', 60);
const REQUESTS = positiveEnv('BENCH_TREE_REQUESTS', 300);
const CLIENTS = positiveEnv('BENCH_TREE_CLIENTS', 4);
const NAIVE_MS = positiveEnv('BENCH_TREE_NAIVE_SECONDS', 30) * 1000;
/** The range asked about: this many UTC days up to today, inclusive (the endpoint's default span). */
const WINDOW_DAYS = 30;
/** Children of the top-level organization, and of each of them; the rest go one level further down. */
const FANOUT = 10;
const AGENTS_PER_ORG = 3;
/** Requests before each measured phase, not counted. */
const WARMUP = 5;
/** Rows per INSERT statement (and transaction) while building the dataset. */
const CHUNK = 250_000;
/** Each organization's one top-up, in micro-credits: far more than its usage. */
const FUNDING = 1_000_000_000_000n;
/** Up to this many transactions in the whole database, GET /api/ledger/verify also checks it. */
const VERIFY_UP_TO = 1_500_000;
/** Organization ids 'org_btree000…0<n>': valid ids (ID_PATTERN), never a ULID, apart from billing's. */
const ORG_ID = (n: string) => `'org_btree' || lpad((${n})::text, 21, '0')`;
const TOP = `org_btree${'0'.repeat(21)}`;
const DAY_MS = 86_400_000;

const log = (line: string) => process.stdout.write(`${line}\n`);

export interface TreeRun {
  scratch: Scratch;
  server: Server;
  token: string;
}

/**
 * Organization n's parent, breadth-first: 1..F under the top (0), F+1..F+F² under 1..F, and the
 * rest round-robin under the F² grandchildren.
 */
const PARENT = `case when n = 0 then null
  when n <= ${FANOUT} then 0
  when n <= ${FANOUT + FANOUT ** 2} then 1 + (n - ${FANOUT + 1}) / ${FANOUT}
  else ${FANOUT + 1} + (n - ${FANOUT + FANOUT ** 2 + 1}) % ${FANOUT ** 2} end`;

/**
 * Event g (0 ≤ g < EVENTS) is organization o = g mod ORGS's k-th (k = g div ORGS). Its amount is
 * 1000 + 250·(k mod 7) micro-credits, so the organization's spend through event k is
 * S(k) = 1000·(k+1) + 250·(21·⌊(k+1)/7⌋ + r(r-1)/2), r = (k+1) mod 7, and balance_after is
 * FUNDING − S(k). It happens at start + (now − start)·(g + ½)/EVENTS. The same statement adds
 * the rows it wrote to usage_daily, as the debit's own transaction does.
 */
const INSERT_EVENTS = `
with ins as (
  insert into ledger_transactions (organization_id, id, type, amount, entry_accounts, entry_amounts,
    balance_after, description, actor_type, actor_id, metadata, created_at)
  select ${ORG_ID('o')}, 'txn_btree' || lpad(g::text, 21, '0'), 'usage', amount,
    '{credits,sys:usage}'::text[], array[-amount, amount],
    $5::bigint - (1000 * (k + 1) + 250 * (21 * ((k + 1) / 7) + ((k + 1) % 7) * ((k + 1) % 7 - 1) / 2)),
    null, 'operator', 'bench',
    case when k % 20 = 19
      then jsonb_build_object('tokens_in', tin, 'tokens_out', tout, 'cost', cost)
      else jsonb_build_object('agent_id', 'agt_btree' || lpad((o * ${AGENTS_PER_ORG} + k % ${AGENTS_PER_ORG})::text, 21, '0'),
                              'tokens_in', tin, 'tokens_out', tout, 'cost', cost) end,
    $6::timestamptz + ($7::timestamptz - $6::timestamptz) * ((g + 0.5) / $4::float8)
  from generate_series($1::bigint, $2::bigint - 1) g
    cross join lateral (select g % $3::bigint as o, g / $3::bigint as k) a
    cross join lateral (select 1000 + (k % 7) * 250 as amount, 200 + (k * 37) % 800 as tin,
                               50 + (k * 53) % 450 as tout) c
    -- cost: tin·3 + tout·15 micro-units, always under one unit, written as POST /api/usage does ("0.00123")
    cross join lateral (select rtrim('0.' || lpad((tin * 3 + tout * 15)::text, 6, '0'), '0') as cost) d
  returning organization_id, created_at, metadata, amount)
insert into usage_daily (organization_id, day, agent_id, events, credits, tokens_in, tokens_out, cost)
select organization_id, (created_at at time zone 'UTC')::date, coalesce(metadata->>'agent_id', ''),
  count(*), sum(amount), sum((metadata->>'tokens_in')::bigint), sum((metadata->>'tokens_out')::bigint),
  sum(((metadata->>'cost')::numeric * 1000000)::bigint)
from ins group by 1, 2, 3
on conflict (organization_id, day, agent_id) do update set
  events = usage_daily.events + excluded.events, credits = usage_daily.credits + excluded.credits,
  tokens_in = usage_daily.tokens_in + excluded.tokens_in, tokens_out = usage_daily.tokens_out + excluded.tokens_out,
  cost = usage_daily.cost + excluded.cost`;

interface Layout {
  start: Date;
  now: Date;
  /** The window asked about: UTC days, inclusive. */
  from: string;
  to: string;
  month: string;
}

function layout(now: Date): Layout {
  const to = now.toISOString().slice(0, 10);
  return {
    start: new Date(now.getTime() - DAYS * DAY_MS),
    now,
    from: new Date(Date.parse(to) - (WINDOW_DAYS - 1) * DAY_MS).toISOString().slice(0, 10),
    to,
    month: to.slice(0, 7),
  };
}

const seconds = (since: number) => ((performance.now() - since) / 1000).toFixed(1).padStart(6);

/** Creates the tree, its subscriptions, grants, agents, accounts and top-ups, then the events and roll-ups. */
async function build(url: string, l: Layout): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const q = (text: string, values?: unknown[]) => c.query(text, values);
    const step = async (label: string, fn: () => Promise<unknown>) => {
      const t = performance.now();
      await fn();
      log(`  ${label.padEnd(62)} ${seconds(t)} s`);
    };
    const before = new Date(l.start.getTime() - DAY_MS).toISOString();
    const last = ORGS - 1;
    await step(
      `${int(ORGS)} organizations (Enterprise, subscriptions, grants), ${int(ORGS * AGENTS_PER_ORG)} agents, accounts`,
      async () => {
        await q('begin');
        // One statement: the parent foreign key is checked at its end, when every parent is in.
        await q(
          `insert into organizations (id, name, slug, plan, parent_id, created_at, updated_at)
           select ${ORG_ID('n')}, case when n = 0 then 'Bench tree top' else 'Bench tree ' || n end,
             'bench-tree-' || n, 'enterprise', ${ORG_ID(PARENT)}, $1::timestamptz, $1::timestamptz
           from generate_series(0, ${last}) n`,
          [before],
        );
        await q(
          `insert into subscriptions (organization_id, current_period_start, current_period_end)
           select ${ORG_ID('n')}, now(), now() + interval '1 month' from generate_series(0, ${last}) n`,
        );
        await q(
          `insert into organization_features (organization_id, feature, granted_at)
           select ${ORG_ID('n')}, f, $2::timestamptz from generate_series(1, ${last}) n, unnest($1::text[]) f`,
          [[...PLANS.enterprise.features], before],
        );
        await q(
          `insert into agents (organization_id, id, name, created_at, updated_at)
           select ${ORG_ID(`a / ${AGENTS_PER_ORG}`)}, 'agt_btree' || lpad(a::text, 21, '0'), 'Bench tree agent ' || a,
             $1::timestamptz, $1::timestamptz
           from generate_series(0, ${ORGS * AGENTS_PER_ORG - 1}) a`,
          [before],
        );
        await q(
          `insert into agent_assignments (organization_id, agent_id, assigned_at)
           select organization_id, id, created_at from agents where id like 'agt\\_btree%'`,
        );
        // usage_events_limit NULL: Enterprise's monthly usage events are unlimited.
        await q(
          `insert into ledger_accounts (organization_id, code, usage_events_limit)
           select ${ORG_ID('n')}, code, null from generate_series(0, ${last}) n,
             unnest('{credits,sys:usage,sys:top_ups}'::text[]) code`,
        );
        // Funding: one top-up per organization, before its first event.
        await q(
          `insert into ledger_transactions (organization_id, id, type, amount, entry_accounts, entry_amounts,
             balance_after, description, actor_type, actor_id, created_at)
           select ${ORG_ID('n')}, 'txn_btree' || lpad((${EVENTS} + n)::text, 21, '0'), 'top_up', $1::bigint,
             '{credits,sys:top_ups}'::text[], array[$1::bigint, -$1::bigint], $1::bigint, 'bench funding',
             'operator', 'bench', $2::timestamptz
           from generate_series(0, ${last}) n`,
          [FUNDING.toString(), before],
        );
        await q('commit');
      },
    );

    const started = performance.now();
    for (let lo = 0; lo < EVENTS; lo += CHUNK) {
      const hi = Math.min(EVENTS, lo + CHUNK);
      await q(INSERT_EVENTS, [
        lo,
        hi,
        ORGS,
        EVENTS,
        FUNDING.toString(),
        l.start.toISOString(),
        l.now.toISOString(),
      ]);
      if (hi % (2 * CHUNK) === 0 && hi < EVENTS) {
        const s = (performance.now() - started) / 1000;
        log(`    … ${int(hi).padStart(10)} events in ${s.toFixed(1)} s (${int(hi / s)}/s)`);
      }
    }
    log(
      `  ${`${int(EVENTS)} usage events + their usage_daily roll-ups (${int(CHUNK)}/statement)`.padEnd(62)} ` +
        `${seconds(started)} s`,
    );
    // The per-organization roll-up beside the per-agent one (what the ledger keeps, and what the
    // endpoint reads).
    await step('usage_org_daily from the per-agent roll-ups', () =>
      q(
        `insert into usage_org_daily (organization_id, day, events, credits, tokens_in, tokens_out, cost)
         select organization_id, day, sum(events), sum(credits), sum(tokens_in), sum(tokens_out), sum(cost)
         from usage_daily where organization_id like 'org\\_btree%' group by 1, 2`,
      ),
    );
    await step('account balances from the roll-ups', () =>
      q(
        `with spent as (
           select organization_id, sum(credits) as total,
             coalesce(sum(credits) filter (where day >= $2::date), 0) as this_month,
             coalesce(sum(events) filter (where day >= $2::date), 0) as month_events
           from usage_daily where organization_id like 'org\\_btree%' group by organization_id)
         update ledger_accounts a
         set balance = case a.code when 'credits' then $1::bigint - s.total when 'sys:usage' then s.total
                                   else -$1::bigint end,
           spend_month = case a.code when 'credits' then $3 else '' end,
           month_spend = case a.code when 'credits' then s.this_month else 0 end,
           month_events = case a.code when 'credits' then s.month_events else 0 end
         from spent s where a.organization_id = s.organization_id`,
        [FUNDING.toString(), `${l.month}-01`, l.month],
      ),
    );
    await step('VACUUM ANALYZE', async () => {
      await q('vacuum analyze ledger_transactions');
      await q('vacuum analyze usage_daily');
      await q(
        'analyze organizations, subscriptions, organization_features, agents, agent_assignments, ledger_accounts',
      );
    });
  } finally {
    await c.end();
  }
}

interface OrgFigures {
  events: bigint;
  credits: bigint;
  tokens_in: bigint;
  tokens_out: bigint;
  /** Micro-units of the organization's currency. */
  cost: bigint;
}

interface TreeAnswer {
  organization_count: number;
  total: {
    events: number;
    credits: string;
    tokens_in: number;
    tokens_out: number;
    spend: Record<string, string>;
  };
  organizations: Array<{
    organization_id: string;
    depth: number;
    currency: string;
    events: number;
    credits: string;
    tokens_in: number;
    tokens_out: number;
    spend: string;
  }>;
}

/** (1') The whole tree's usage per organization, straight from the ledger, in one query. */
const NAIVE_TREE = `
with recursive tree as (
  select id from organizations where id = $1
  union all
  select c.id from organizations c join tree t on c.parent_id = t.id where c.deleted_at is null)
select t.id as organization_id, count(l.id) as events, coalesce(sum(l.amount), 0) as credits,
  coalesce(sum((l.metadata->>'tokens_in')::bigint), 0) as tokens_in,
  coalesce(sum((l.metadata->>'tokens_out')::bigint), 0) as tokens_out,
  coalesce(sum((l.metadata->>'cost')::numeric), 0) as cost
from tree t
  left join ledger_transactions l on l.organization_id = t.id and l.type = 'usage'
    and l.created_at >= $2::timestamptz and l.created_at < $3::timestamptz
group by t.id`;

interface NaiveRow {
  organization_id: string;
  events: string;
  credits: string;
  tokens_in: string;
  tokens_out: string;
  cost: string;
}

const figuresKey = (f: OrgFigures) =>
  `${f.events} events, ${f.credits} µcredits, ${f.tokens_in}/${f.tokens_out} tokens, ${f.cost} µspend`;

function sumFigures(rows: Iterable<OrgFigures>): OrgFigures {
  const t: OrgFigures = { events: 0n, credits: 0n, tokens_in: 0n, tokens_out: 0n, cost: 0n };
  for (const r of rows) {
    t.events += r.events;
    t.credits += r.credits;
    t.tokens_in += r.tokens_in;
    t.tokens_out += r.tokens_out;
    t.cost += r.cost;
  }
  return t;
}

const fromNaive = (rows: NaiveRow[]) =>
  new Map(
    rows.map((r): [string, OrgFigures] => [
      r.organization_id,
      {
        events: BigInt(r.events),
        credits: BigInt(r.credits),
        tokens_in: BigInt(r.tokens_in),
        tokens_out: BigInt(r.tokens_out),
        cost: toMicros(r.cost),
      },
    ]),
  );

const rowFigures = (r: TreeAnswer['organizations'][number]): OrgFigures => ({
  events: BigInt(r.events),
  credits: toMicros(r.credits),
  tokens_in: BigInt(r.tokens_in),
  tokens_out: BigInt(r.tokens_out),
  cost: toMicros(r.spend),
});

/** The answer's totals (every organization bills in USD here, so spend is one figure). */
function answerTotals(a: TreeAnswer): OrgFigures {
  const currencies = Object.keys(a.total.spend);
  if (currencies.some((c) => c !== 'USD'))
    throw new CheckFailed(`tree usage: spend in ${currencies.join(', ')}; the tree bills in USD only`);
  return {
    events: BigInt(a.total.events),
    credits: toMicros(a.total.credits),
    tokens_in: BigInt(a.total.tokens_in),
    tokens_out: BigInt(a.total.tokens_out),
    cost: toMicros(a.total.spend.USD ?? '0'),
  };
}

/** The endpoint's totals and every organization's row must equal the naive query's. */
function compare(answer: TreeAnswer, naive: Map<string, OrgFigures>): OrgFigures {
  const expected = sumFigures(naive.values());
  const totals = answerTotals(answer);
  const problems: string[] = [];
  if (figuresKey(totals) !== figuresKey(expected))
    problems.push(`totals: endpoint ${figuresKey(totals)}; naive ${figuresKey(expected)}`);
  if (answer.organization_count !== naive.size || answer.organizations.length !== naive.size)
    problems.push(
      `organizations: endpoint ${answer.organization_count} (${answer.organizations.length} rows); naive ${naive.size}`,
    );
  for (const r of answer.organizations) {
    const n = naive.get(r.organization_id);
    const got = figuresKey(rowFigures(r));
    if (!n) problems.push(`${r.organization_id}: in the endpoint's answer, not in the naive tree`);
    else if (got !== figuresKey(n))
      problems.push(`${r.organization_id}: endpoint ${got}; naive ${figuresKey(n)}`);
  }
  const rowsTotal = sumFigures(answer.organizations.map(rowFigures));
  if (figuresKey(rowsTotal) !== figuresKey(totals))
    problems.push(
      `the endpoint's rows add up to ${figuresKey(rowsTotal)}, its totals say ${figuresKey(totals)}`,
    );
  if (problems.length)
    throw new CheckFailed(
      `tree usage differs from the naive query over the ledger (${problems.length} problem(s)):\n  ${problems
        .slice(0, 12)
        .join('\n  ')}`,
    );
  return expected;
}

interface Measured {
  label: string;
  clients: number;
  requests: number;
  seconds: number;
  p50: number;
  p99: number;
  max: number;
  errors: number;
  firstError: string | undefined;
  /** Stopped by the time limit before REQUESTS requests. */
  cut: boolean;
  cpu: CpuShare | undefined;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

/**
 * WARMUP requests one at a time, not counted; then `op` from `clients` workers back to back until
 * REQUESTS have started or `limitMs` has passed (each worker sends at least one).
 */
async function measure(
  label: string,
  op: () => Promise<unknown>,
  clients: number,
  limitMs: number,
  meter: { serverPid: number | undefined; database: string },
): Promise<Measured> {
  for (let i = 0; i < WARMUP; i++) await op();
  const latencies: number[] = [];
  let started = 0;
  let errors = 0;
  let firstError: string | undefined;
  const stop = cpuMeter(meter.serverPid, meter.database);
  const t0 = performance.now();
  const deadline = t0 + limitMs;
  const worker = async () => {
    let mine = 0;
    while (started < REQUESTS && (mine === 0 || performance.now() < deadline)) {
      started++;
      mine++;
      const t = performance.now();
      try {
        await op();
      } catch (err) {
        errors++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
      latencies.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: clients }, worker));
  const secs = (performance.now() - t0) / 1000;
  const cpu = stop();
  latencies.sort((a, b) => a - b);
  const m: Measured = {
    label,
    clients,
    requests: latencies.length,
    seconds: secs,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies[latencies.length - 1] ?? Number.NaN,
    errors,
    firstError,
    cut: latencies.length < REQUESTS,
    cpu,
  };
  log(
    `  ${label.padEnd(50)} ${String(clients).padStart(2)} client(s) ${int(m.requests).padStart(5)} requests ` +
      `in ${secs.toFixed(1).padStart(5)} s  p50 ${ms(m.p50)} ms  p99 ${ms(m.p99)} ms  max ${ms(m.max)} ms` +
      `${errors ? `  ${errors} errors (${firstError})` : ''}`,
  );
  return m;
}

const pct = (n: number) => `${Math.round(n)}%`;
const cpuText = (c: CpuShare | undefined) =>
  c ? `${pct(c.server)} / ${pct(c.loadgen)} / ${pct(c.postgres)} / ${pct(c.other)}` : '—';
const toCredits = (micros: bigint) =>
  (Number(micros) / 1e6).toLocaleString('en-US', { maximumFractionDigits: 6 });

/** Builds the tree and its usage, checks the endpoint against the naive query, measures, prints the tables. */
export async function runTreeUsage({ scratch, server, token }: TreeRun): Promise<void> {
  const l = layout(new Date(Date.now() - 1000));
  log(
    `\nTree usage — ${int(ORGS)} organizations in one tree (the top, ${FANOUT} children, ${FANOUT ** 2} ` +
      `grandchildren, the rest below those), ${int(EVENTS)} usage events over the ${DAYS} days up to now; ` +
      `window ${l.from} to ${l.to} (${WINDOW_DAYS} days)`,
  );
  const background = await backgroundLoad(scratch.name, 'build');
  if (background) log(background);
  const buildStart = performance.now();
  await build(scratch.url, l);
  log(`  ${'dataset built in'.padEnd(62)} ${seconds(buildStart)} s`);

  const path = `/api/organizations/${TOP}/sub-organizations/usage?from=${l.from}&to=${l.to}`;
  const windowStart = `${l.from}T00:00:00.000Z`;
  const windowEnd = new Date(Date.parse(l.to) + DAY_MS).toISOString();
  const client = new Client(server.base, token, CLIENTS);
  const pool = new pg.Pool({ connectionString: scratch.url, max: CLIENTS });
  pool.on('error', () => {});
  try {
    const { rows: shape } = await pool.query<{ depth: number; n: string }>(
      `with recursive tree as (
         select id, 0 as depth from organizations where id = $1
         union all
         select c.id, t.depth + 1 from organizations c join tree t on c.parent_id = t.id)
       select depth, count(*) as n from tree group by depth order by depth`,
      [TOP],
    );
    const { rows: rollups } = await pool.query<{ n: string }>(
      `select count(*) as n from usage_daily where organization_id like 'org\\_btree%'
       and day between $1::date and $2::date`,
      [l.from, l.to],
    );
    log(
      `  tree: ${shape.map((r) => `depth ${r.depth}: ${int(Number(r.n))}`).join(', ')}; ` +
        `${int(Number(rollups[0]?.n ?? 0))} usage_daily rows in the window`,
    );

    const checkStart = performance.now();
    const [answer, naive] = await Promise.all([
      client.expect<TreeAnswer>(200, 'GET', path),
      pool.query<NaiveRow>(NAIVE_TREE, [TOP, windowStart, windowEnd]),
    ]);
    const expected = compare(answer, fromNaive(naive.rows));
    const expectedKey = figuresKey(expected);
    log(
      `  check: ${int(answer.organization_count)} organizations, ${int(Number(expected.events))} events, ` +
        `${toCredits(expected.credits)} credits, spend ${toCredits(expected.cost)} USD, ` +
        `${int(Number(expected.tokens_in))}/${int(Number(expected.tokens_out))} tokens in the window: the ` +
        `endpoint's totals and every organization's row equal the naive query's (${seconds(checkStart).trim()} s)`,
    );
    const { rows: counted } = await pool.query<{ n: string }>(
      'select count(*) as n from ledger_transactions',
    );
    if (Number(counted[0]?.n ?? 0) <= VERIFY_UP_TO) {
      const v = await client.expect<{ ok: boolean; transactions: number; violations: unknown[] }>(
        200,
        'GET',
        '/api/ledger/verify',
      );
      if (!v.ok)
        throw new CheckFailed(
          `GET /api/ledger/verify is not ok on the tree dataset: ${JSON.stringify(v.violations.slice(0, 10))}`,
        );
      log(`  check: GET /api/ledger/verify ok over ${int(v.transactions)} transactions`);
    }

    // Every answer measured must carry the checked totals.
    const endpoint = async () => {
      const a = await client.expect<TreeAnswer>(200, 'GET', path);
      const got = figuresKey(answerTotals(a));
      if (got !== expectedKey)
        throw new CheckFailed(`an answer's totals changed: ${got}, not ${expectedKey}`);
    };
    const naiveOp = () => pool.query(NAIVE_TREE, [TOP, windowStart, windowEnd]);
    const connections = await Promise.all(Array.from({ length: CLIENTS }, () => pool.connect()));
    for (const c of connections) c.release();

    const onServer = { serverPid: server.pid, database: scratch.name };
    const onPostgres = { serverPid: undefined, database: scratch.name };
    const endpointLabel = '(1) GET …/{top}/sub-organizations/usage';
    const naiveLabel = "(1') naive: recursive CTE, GROUP BY over ledger";
    log(
      `\nEach case: ${WARMUP} warm-up requests, then ${REQUESTS} requests one at a time, then ${REQUESTS} from ` +
        `${CLIENTS} concurrent clients (the naive query stops after ${NAIVE_MS / 1000} s per phase):`,
    );
    const alone = await measure(endpointLabel, endpoint, 1, Number.POSITIVE_INFINITY, onServer);
    const together = await measure(endpointLabel, endpoint, CLIENTS, Number.POSITIVE_INFINITY, onServer);
    const naiveAlone = await measure(naiveLabel, naiveOp, 1, NAIVE_MS, onPostgres);
    const naiveTogether = await measure(naiveLabel, naiveOp, CLIENTS, NAIVE_MS, onPostgres);
    const runs = [alone, together, naiveAlone, naiveTogether];
    const failed = runs.find((m) => m.errors);
    if (failed)
      throw new CheckFailed(
        `${failed.label}, ${failed.clients} client(s): ${failed.errors} failed: ${failed.firstError}`,
      );

    log(
      `\nTree usage results (${int(ORGS)} organizations, ${int(EVENTS)} usage events over ${DAYS} days; window ` +
        `${l.from} to ${l.to}: ${int(Number(expected.events))} events; naive = one recursive-CTE GROUP BY over ` +
        'ledger_transactions through pg, no HTTP; latency per request as the client sees it):\n',
    );
    const ratio = (m: Measured, base: Measured, f: (x: Measured) => number) =>
      `${(f(base) / f(m)).toFixed(0)}×`;
    log(
      table(
        [
          'case',
          'clients',
          'requests',
          'req/s',
          'p50 ms',
          'p99 ms',
          'max ms',
          'naive ÷ orgbase p50',
          'p99',
          'cpu srv/gen/pg/other',
        ],
        runs.map((m) => {
          const base = m === alone ? naiveAlone : m === together ? naiveTogether : undefined;
          return [
            m.label,
            String(m.clients),
            `${int(m.requests)}${m.cut ? '*' : ''}`,
            (m.requests / m.seconds).toFixed(1),
            ms(m.p50),
            ms(m.p99),
            ms(m.max),
            base ? ratio(m, base, (x) => x.p50) : '',
            base ? ratio(m, base, (x) => x.p99) : '',
            cpuText(m.cpu),
          ];
        }),
      ),
    );
    if (runs.some((m) => m.cut))
      log(
        `\n* stopped after ${NAIVE_MS / 1000} s (BENCH_TREE_NAIVE_SECONDS) before ${REQUESTS} requests: its p99 ` +
          'is close to its max',
      );
    const targets: Target[] = [
      {
        label: `(1) tree of ${int(ORGS)} orgs, ${int(EVENTS)} events: p99 ≤ 100 ms, one at a time`,
        met: alone.p99 <= 100,
        actual: `${ms(alone.p99)} ms`,
      },
      {
        label: `(1) the same, ${CLIENTS} concurrent clients: p99 ≤ 100 ms`,
        met: together.p99 <= 100,
        actual: `${ms(together.p99)} ms`,
      },
      {
        label: "(1') naive, one at a time: p99 ≤ 100 ms",
        met: naiveAlone.p99 <= 100,
        actual: `${ms(naiveAlone.p99)} ms`,
      },
    ];
    log(`\n${targetsTable(targets)}`);
    const noise = noiseWarning(runs.map((m) => m.cpu));
    if (noise) log(noise);
    log(
      "Totals and every organization checked against the naive query before measuring, and every answer's " +
        'totals during the runs: OK. Targets are informational.',
    );
  } finally {
    client.close();
    await pool.end();
  }
}
