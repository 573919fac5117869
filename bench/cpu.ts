import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** Linux clock ticks per second for /proc times (USER_HZ, 100 on every mainstream kernel). */
const TICKS_PER_SEC = 100;

/** Where the machine's CPU went during a run, in percent of ONE core (200% = both of two cores). */
export interface CpuShare {
  server: number;
  loadgen: number;
  /** PostgreSQL working for the bench database: its backends, WAL writer, checkpointer... */
  postgres: number;
  /** Everything else running on the machine meanwhile (other databases' backends included). */
  other: number;
  cores: number;
}

interface Sample {
  at: bigint;
  machineBusy: number;
  server: number;
  loadgen: number;
  postgres: Map<number, number>;
}

function machineBusyTicks(): number {
  // cpu  user nice system idle iowait irq softirq steal ...
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return total - (f[3] ?? 0) - (f[4] ?? 0);
}

/** A process's command name and CPU ticks (utime + stime, fields 14 and 15 of /proc/PID/stat). */
function processStat(pid: number): { comm: string; ticks: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may hold spaces.
  const close = stat.lastIndexOf(')');
  const f = stat.slice(close + 2).split(' ');
  return { comm: stat.slice(stat.indexOf('(') + 1, close), ticks: Number(f[11]) + Number(f[12]) };
}

/** Shared PostgreSQL processes (not a backend of some database) by their title. */
const POSTGRES_SHARED =
  /^postgres: [^:]+: (checkpointer|background writer|walwriter|autovacuum launcher|logical replication launcher|archiver)|^\S*\/postgres /;

/**
 * CPU ticks, by pid, of the PostgreSQL processes that work for `database`: its backends and
 * autovacuum workers (their title names the database) and the shared ones (WAL writer,
 * checkpointer...). Backends of other databases on the same server count as "other".
 */
function postgresTicks(database: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const s = processStat(Number(name));
      if (s.comm !== 'postgres') continue;
      const title = readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (title.includes(` ${database} `) || POSTGRES_SHARED.test(title)) out.set(Number(name), s.ticks);
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

/** Starts measuring; the returned function ends it. Undefined off Linux (no /proc). */
export function cpuMeter(serverPid: number | undefined, database: string): () => CpuShare | undefined {
  const take = (): Sample | undefined => {
    try {
      const own = process.cpuUsage();
      return {
        at: process.hrtime.bigint(),
        machineBusy: machineBusyTicks(),
        server: serverPid === undefined ? 0 : processStat(serverPid).ticks,
        loadgen: ((own.user + own.system) / 1e6) * TICKS_PER_SEC,
        postgres: postgresTicks(database),
      };
    } catch {
      return undefined;
    }
  };
  const before = take();
  return () => {
    const after = take();
    if (!before || !after) return undefined;
    const ticks = (Number(after.at - before.at) / 1e9) * TICKS_PER_SEC;
    const pct = (d: number) => (100 * d) / ticks;
    const server = pct(after.server - before.server);
    const loadgen = pct(after.loadgen - before.loadgen);
    const busy = pct(after.machineBusy - before.machineBusy);
    // A backend that started during the run counts from zero; one that ended is not seen.
    let pgTicks = 0;
    for (const [pid, t] of after.postgres) pgTicks += t - (before.postgres.get(pid) ?? 0);
    const postgres = pct(pgTicks);
    return {
      server,
      loadgen,
      postgres,
      other: Math.max(0, busy - server - loadgen - postgres),
      cores: availableParallelism(),
    };
  };
}

/**
 * How busy the machine is for a second with nothing of ours running (PostgreSQL for `database`
 * and everything else): a line to print when it is busy at all, before a part `what` starts.
 */
export async function backgroundLoad(database: string, what: string): Promise<string | undefined> {
  const idle = cpuMeter(undefined, database);
  await new Promise((r) => setTimeout(r, 1000));
  const b = idle();
  return b
    ? `Before the ${what}, the machine was already ${Math.round(b.postgres + b.other)}% busy ` +
        `(of ${b.cores * 100}%) with other processes`
    : undefined;
}

/** A warning when other processes took more than a fifth of a core during any measured phase. */
export function noiseWarning(shares: Array<CpuShare | undefined>): string | undefined {
  const noise = Math.max(0, ...shares.map((c) => c?.other ?? 0));
  return noise > 20
    ? `WARNING: other processes took up to ${Math.round(noise)}% of a core during a phase (cpu column, last ` +
        'figure): the machine was not quiet, so these figures understate both sides.'
    : undefined;
}
