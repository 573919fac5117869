/**
 * `npm run bench`: the credits ledger's throughput and latency over HTTP, against a naive
 * baseline, on a throwaway database of the local PostgreSQL.
 *
 * The real server (`node --import tsx src/cli/main.ts serve`) runs as a child process on
 * 127.0.0.1; this process generates load over loopback. Each scenario is measured three ways:
 * closed loop (every socket busy, back to back) to find the peak, then open loop (arrivals on a
 * schedule, whatever the answers do) at that peak rate and at 70% of it. After every phase the
 * balances are checked against the accepted debits, and the ledger's invariants with
 * GET /api/ledger/verify; a mismatch fails the run (exit 1). Missing a target does not.
 * Before each system runs a scenario the database is vacuumed and analyzed (as pgbench does
 * before a run), so no scenario pays for the autovacuum of the one before.
 *
 * Then the billing case (bench/billing.ts): billing reads over ten million usage events built in
 * SQL, from the roll-ups against a naive GROUP BY over the ledger.
 *
 * Then the tree case (bench/tree-usage.ts): usage across a tree of 1,000 sub-organizations with a
 * million usage events built in SQL, GET …/sub-organizations/usage against a naive recursive-CTE
 * GROUP BY over the ledger.
 *
 * Environment: BENCH_DATABASE_URL (PostgreSQL server, default postgres://postgres@127.0.0.1:5432/postgres),
 * BENCH_CONNECTIONS (sockets / connections in flight, default 64), BENCH_SECONDS (open-loop
 * window, default 6); BENCH_BILLING_* (see bench/billing.ts); BENCH_TREE_* (see bench/tree-usage.ts).
 *
 * One part only: `npx tsx bench/run.ts --only ledger`, `--only billing` or `--only tree` (or
 * BENCH_ONLY=ledger|billing|tree); `npm run bench -- --only billing` works too. All three by default.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism, cpus } from 'node:os';
import { runBilling } from './billing.js';
import { backgroundLoad, cpuMeter, noiseWarning } from './cpu.js';
import { Client } from './http.js';
import { closedLoop, type Op, openLoop } from './load.js';
import { OrgbaseTarget } from './orgbase.js';
import {
  createScratchDatabase,
  NaiveLedger,
  type Scratch,
  SERVER_URL,
  serverSettings,
  vacuumAnalyze,
} from './pg.js';
import {
  detailTable,
  int,
  type Measured,
  ms,
  type Phase,
  positiveEnv,
  type Scenario,
  summaryTable,
  type Target,
  table,
  targetsTable,
} from './report.js';
import { type Server, startServer } from './server.js';
import { CheckFailed, MICROS, toMicros } from './tally.js';
import { runTreeUsage } from './tree-usage.js';

const PART_NAMES = ['ledger', 'billing', 'tree'] as const;
type Part = (typeof PART_NAMES)[number];

/** Which parts run: `--only ledger|billing|tree` or BENCH_ONLY; all of them by default. */
function parts(): Record<Part, boolean> {
  const i = process.argv.indexOf('--only');
  const only = i >= 0 ? process.argv[i + 1] : process.env.BENCH_ONLY || undefined;
  if (only === undefined) return { ledger: true, billing: true, tree: true };
  if (!(PART_NAMES as readonly string[]).includes(only))
    throw new Error(`--only / BENCH_ONLY must be "ledger", "billing" or "tree", got "${only}"`);
  return { ledger: only === 'ledger', billing: only === 'billing', tree: only === 'tree' };
}

const PARTS = parts();
const CONNECTIONS = positiveEnv('BENCH_CONNECTIONS', 64);
const OPEN_MS = positiveEnv('BENCH_SECONDS', 6) * 1000;
const SATURATION_MS = 5000;
const CEILING_MS = 3000;
const WARMUP_MS = 1000;
const ORGS = 1000;
const BATCH = 100;
const AMOUNT = '0.01';
const INITIAL = 1_000_000_000n * MICROS;

const log = (line: string) => process.stdout.write(`${line}\n`);

/** Runs the three phases of one system under one scenario, checking the books after each. */
async function measure(
  label: string,
  op: Op,
  meter: { serverPid: number | undefined; database: string; url: string },
  check: () => Promise<void>,
) {
  // Each system starts from a settled database, as pgbench vacuums before a run: else the
  // autovacuum the previous scenario's writes set off would bill its CPU to this one.
  const settled = Date.now();
  await vacuumAnalyze(meter.url);
  log(`  ${label.padEnd(30)} (database vacuumed and analyzed in ${Date.now() - settled} ms)`);
  const phase = async (name: string, run: () => Promise<Phase['result']>): Promise<Phase> => {
    const stop = cpuMeter(meter.serverPid, meter.database);
    const result = await run();
    const cpu = stop();
    const started = Date.now();
    await check();
    log(
      `  ${label.padEnd(30)} ${name.padEnd(12)} ${int(result.requestsPerSec).padStart(7)} req/s → ` +
        `${int(result.opsPerSec).padStart(7)} ops/s  p50 ${ms(result.p50)} ms  p99 ${ms(result.p99)} ms` +
        `${result.errors ? `  ${result.errors} errors (${result.firstError})` : ''}` +
        `${result.dropped ? `  ${result.dropped} shed (server behind by over a second)` : ''}` +
        `  [checked in ${Date.now() - started} ms]`,
    );
    return { result, cpu };
  };
  const saturation = await phase('closed loop', () => closedLoop(op, CONNECTIONS, SATURATION_MS, WARMUP_MS));
  const rate = saturation.result.requestsPerSec;
  const peak = await phase('open @ peak', () => openLoop(op, rate, CONNECTIONS, OPEN_MS));
  const at70 = await phase('open @ 70%', () => openLoop(op, rate * 0.7, CONNECTIONS, OPEN_MS));
  return { saturation, peak, at70 } satisfies Measured;
}

function targets(a: Scenario, b: Scenario, c: Scenario): Target[] {
  const ops = (s: Scenario) => s.orgbase.peak.result.opsPerSec;
  const ratio = a.baseline ? ops(a) / a.baseline.peak.result.opsPerSec : Number.NaN;
  const p99 = (s: Scenario) => s.orgbase.at70.result.p99;
  return [
    { label: '(a) ≥ 5,000 single-event debits/s, hot org', met: ops(a) >= 5000, actual: `${int(ops(a))}/s` },
    { label: '(a) ≥ 3× the naive baseline, hot org', met: ratio >= 3, actual: `${ratio.toFixed(1)}×` },
    { label: '(b) ≥ 8,000 debits/s over 1,000 orgs', met: ops(b) >= 8000, actual: `${int(ops(b))}/s` },
    { label: '(c) ≥ 50,000 batched events/s', met: ops(c) >= 50_000, actual: `${int(ops(c))}/s` },
    ...[a, b, c].map((s) => ({
      label: `(${s.key}) p99 ≤ 10 ms at 70% of peak`,
      met: p99(s) <= 10,
      actual: `${ms(p99(s))} ms`,
    })),
  ];
}

/**
 * What one server process answers at most on this machine when a request does no ledger work:
 * GET /healthz (routing and a reply), and POST /api/usage refused at validation (the bearer
 * token, the rate limiter, the body's parsing and the schema, then a problem+json answer). It
 * bounds what any single-event debit can reach here, whatever the ledger does.
 */
async function httpCeilings(client: Client, serverPid: number, database: string) {
  const rows: string[][] = [];
  const probe = async (label: string, op: Op) => {
    const stop = cpuMeter(serverPid, database);
    const r = await closedLoop(op, CONNECTIONS, CEILING_MS, WARMUP_MS);
    const cpu = stop();
    if (r.errors) throw new Error(`${label}: ${r.errors} errors (${r.firstError})`);
    rows.push([label, int(r.requestsPerSec), ms(r.p50), ms(r.p99), cpu ? `${Math.round(cpu.server)}%` : '—']);
    return r.requestsPerSec;
  };
  const answering =
    (method: string, path: string, body: unknown, status: number): Op =>
    async () => {
      const res = await client.request(method, path, body);
      if (res.status !== status) throw new Error(`${method} ${path} answered ${res.status}, not ${status}`);
      return 1;
    };
  await probe('GET /healthz', answering('GET', '/healthz', undefined, 200));
  const refused = await probe(
    'POST /api/usage, refused (no events)',
    answering('POST', '/api/usage', { events: [] }, 400),
  );
  log('HTTP ceiling of the server process (closed loop, no ledger work):\n');
  log(table(['request', 'req/s', 'p50 ms', 'p99 ms', 'server cpu'], rows));
  log('');
  return refused;
}

/** The ledger scenarios (a), (b), (c) against the naive baseline, with their tables. */
async function ledgerScenarios(
  scratch: Scratch,
  server: Server,
  token: string,
  cleanup: Array<() => Promise<unknown> | undefined>,
) {
  const client = new Client(server.base, token, CONNECTIONS);
  cleanup.push(async () => client.close());
  const naive = new NaiveLedger(scratch.url, CONNECTIONS);
  cleanup.push(() => naive.close());

  const orgbase = new OrgbaseTarget(client, INITIAL, AMOUNT);
  const setupStart = Date.now();
  const [hot] = await orgbase.createOrganizations(1, 'Bench hot');
  const many = await orgbase.createOrganizations(ORGS, 'Bench spread');
  await naive.setup(ORGS, INITIAL);
  log(
    `Created and funded ${ORGS + 1} organizations and the baseline's ${ORGS} accounts in ${Date.now() - setupStart} ms\n`,
  );

  const onServer = { serverPid: server.pid, database: scratch.name, url: scratch.url };
  const ceiling = await httpCeilings(client, server.pid, scratch.name);
  const hotOrg = hot as string;
  const anyOrg = () => many[Math.floor(Math.random() * many.length)] as string;
  const anyAccount = () => Math.floor(Math.random() * ORGS);
  const amountMicros = toMicros(AMOUNT);
  const checkNaive = () => naive.check(INITIAL, amountMicros);
  const runBaseline = async (label: string, pick: () => number) => {
    await naive.warm(CONNECTIONS);
    return measure(
      label,
      naive.op(pick, amountMicros),
      { serverPid: undefined, database: scratch.name, url: scratch.url },
      checkNaive,
    );
  };

  const a: Scenario = {
    key: 'a',
    title: '(a) hot org, 1 event/request',
    unit: 'debits/s',
    orgbase: await measure(
      '(a) orgbase hot org',
      orgbase.usage(() => hotOrg, 1),
      onServer,
      () => orgbase.check([hotOrg]),
    ),
    baseline: await runBaseline('(a) baseline hot account', () => 0),
  };
  const b: Scenario = {
    key: 'b',
    title: '(b) 1,000 orgs, 1 event/request',
    unit: 'debits/s',
    orgbase: await measure('(b) orgbase 1,000 orgs', orgbase.usage(anyOrg, 1), onServer, () =>
      orgbase.check(many),
    ),
    baseline: await runBaseline('(b) baseline 1,000 accounts', anyAccount),
  };
  const c: Scenario = {
    key: 'c',
    title: `(c) 1,000 orgs, ${BATCH} events/request`,
    unit: 'events/s',
    orgbase: await measure(`(c) orgbase ${BATCH}-event batches`, orgbase.usage(anyOrg, BATCH), onServer, () =>
      orgbase.check(many),
    ),
    baseline: b.baseline,
    baselineNote: 'the naive design has no batching: one transaction per event, so its events/s is (b)',
  };
  await orgbase.check([hotOrg, ...many]);

  const scenarios = [a, b, c];
  log('\nResults (ops/s = accepted debits or events per second in the open-loop window at the peak rate;');
  log('latency per HTTP request, from its scheduled start; baseline = naive SELECT … FOR UPDATE + UPDATE,');
  log('one transaction per debit, straight to PostgreSQL through pg — see bench/pg.ts)\n');
  log(summaryTable(scenarios));
  log(`\n* ${c.baselineNote}`);
  log(`\n${targetsTable(targets(a, b, c))}`);
  log(
    `\nFor scale: this process answers at most ${int(ceiling)} requests/s that stop at validation, with no ` +
      'ledger work at all; a single-event debit is one such request plus its share of a batch.',
  );
  log(
    '\nEvery phase (cpu in % of one core: Orgbase server / this load generator / PostgreSQL / anything else on the machine):\n',
  );
  log(detailTable(scenarios));
  const refused = [...orgbase.tally.refused, ...naive.tally.refused];
  if (refused.length)
    log(`\nRefused operations (not errors, excluded from ops/s): ${JSON.stringify(refused)}`);
  log(
    `\nNote: this machine has ${availableParallelism()} cores, shared by the load generator, the Orgbase server and ` +
      'PostgreSQL (and, for the baseline, the pg client in this process). Every figure is a lower bound for a ' +
      'deployment where they run on separate hosts; the cpu column shows what each took.',
  );
  const phases = scenarios.flatMap((s) =>
    [s.orgbase, s.baseline].flatMap((m) => (m ? [m.saturation, m.peak, m.at70] : [])),
  );
  const noise = noiseWarning(phases.map((p) => p.cpu));
  if (noise) log(noise);
  log('Balances and GET /api/ledger/verify checked after every phase: OK. Targets are informational.');
}

async function main() {
  const cleanup: Array<() => Promise<unknown> | undefined> = [];
  const runCleanup = async () => {
    for (const fn of cleanup.splice(0).reverse()) await Promise.resolve(fn()).catch(() => {});
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping the server and dropping the bench database\n`);
      void runCleanup().then(() => process.exit(130));
    });

  try {
    const scratch = await createScratchDatabase();
    cleanup.push(() => scratch.drop());
    const settings = await serverSettings(scratch.url);
    const token = `bench_${randomBytes(16).toString('hex')}`;

    log(
      `Orgbase benchmark (${PART_NAMES.filter((p) => PARTS[p]).join(' + ')}) — database ${scratch.name} on ${new URL(SERVER_URL).host}`,
    );
    log(
      `PostgreSQL ${settings.server_version}: synchronous_commit=${settings.synchronous_commit}, ` +
        `fsync=${settings.fsync}, wal_sync_method=${settings.wal_sync_method}, commit_delay=${settings.commit_delay}`,
    );
    log(
      `Node ${process.version}; ${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'}); ` +
        `${CONNECTIONS} sockets/connections in flight at most; closed loop ${WARMUP_MS / 1000}+${SATURATION_MS / 1000} s, ` +
        `open loop ${OPEN_MS / 1000} s per phase; each debit ${AMOUNT} credits`,
    );

    const background = await backgroundLoad(scratch.name, 'bench');
    if (background) log(background);

    const server: Server = await startServer(scratch.url, token);
    cleanup.push(() => server.stop());
    log(`Server pid ${server.pid} at ${server.base} (LOG_LEVEL=warn)`);
    if (PARTS.ledger) await ledgerScenarios(scratch, server, token, cleanup);
    if (PARTS.billing) await runBilling({ scratch, server, token });
    if (PARTS.tree) await runTreeUsage({ scratch, server, token });
    const serverOutput = server.output().trim();
    if (serverOutput) log(`\nServer output (warn and above):\n${serverOutput.slice(0, 4000)}`);
  } catch (err) {
    if (err instanceof CheckFailed) {
      process.stderr.write(`\n*** CORRECTNESS CHECK FAILED ***\n${err.message}\n`);
    } else {
      process.stderr.write(
        `\nbench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
    }
    process.exitCode = 1;
  } finally {
    await runCleanup();
  }
}

await main();
