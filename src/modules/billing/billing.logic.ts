/**
 * Pure billing arithmetic: calendar months in UTC, the days an agent belonged to an organization
 * in a month, and pro-rated revenue in micro-units (rounded half up to the micro-unit).
 */
const DAY_MS = 86_400_000;

export interface Month {
  key: string; // "2026-11"
  start: Date;
  end: Date; // exclusive
  days: number;
}

export function monthOf(key: string): Month {
  const [y, m] = key.split('-').map(Number) as [number, number];
  const start = new Date(Date.UTC(y, m - 1, 1));
  const end = new Date(Date.UTC(y, m, 1));
  return { key, start, end, days: Math.round((end.getTime() - start.getTime()) / DAY_MS) };
}

export function monthKey(d: Date): string {
  return d.toISOString().slice(0, 7);
}

/** The months from `from` to `to` inclusive, newest first. */
export function monthsBetween(from: string, to: string): string[] {
  const out: string[] = [];
  let cur = monthOf(to).start;
  const first = monthOf(from).start;
  while (cur >= first) {
    out.push(monthKey(cur));
    cur = new Date(Date.UTC(cur.getUTCFullYear(), cur.getUTCMonth() - 1, 1));
  }
  return out;
}

/**
 * UTC calendar days of `month` during which any of the intervals [from, to) held, counting a
 * day touched for any part of it.
 */
export function daysCovered(month: Month, intervals: Array<{ from: Date; to: Date | null }>): number {
  const only = intervals.length === 1 ? intervals[0] : undefined;
  if (only) {
    // One interval (the usual case): count its days without listing them.
    const a = Math.max(only.from.getTime(), month.start.getTime());
    const b = Math.min((only.to ?? month.end).getTime(), month.end.getTime());
    return b <= a ? 0 : Math.floor((b - 1) / DAY_MS) - Math.floor(a / DAY_MS) + 1;
  }
  return coveredDays(month, intervals).length;
}

/** The covered days themselves, as day numbers since the epoch, in order. */
function coveredDays(month: Month, intervals: Array<{ from: Date; to: Date | null }>): number[] {
  const days = new Set<number>();
  for (const { from, to } of intervals) {
    const a = Math.max(from.getTime(), month.start.getTime());
    const b = Math.min((to ?? month.end).getTime(), month.end.getTime());
    if (b <= a) continue;
    for (let d = Math.floor(a / DAY_MS); d <= Math.floor((b - 1) / DAY_MS); d++) days.add(d);
  }
  return [...days].sort((x, y) => x - y);
}

/** rate × days / daysInMonth, in micro-units, rounded half up. */
export function prorate(rateMicros: bigint, days: number, daysInMonth: number): bigint {
  const num = rateMicros * BigInt(days) * 2n;
  const den = BigInt(daysInMonth) * 2n;
  return (num + den / 2n) / den;
}

/** A rate's history: each entry holds from `at` until the next one. `rate` null: none of its own. */
export type RateHistory = ReadonlyArray<{ at: Date; rate: bigint | null }>;

/**
 * The entry in force at `t` (the last one before it). Before the first entry, the first one:
 * the earliest rate known is taken to have held since the beginning (as for rates set before
 * history was kept). Undefined only for an empty history.
 */
export function rateAt(history: RateHistory, t: Date): bigint | null | undefined {
  let found = history[0]?.rate;
  for (const h of history) {
    if (h.at.getTime() >= t.getTime()) break;
    found = h.rate;
  }
  return found;
}

/**
 * Revenue of an agent for the days of `month` it covered: each day at the rate in force at the
 * end of that day (the agent's own rate, else its organization's), summed, then divided by the
 * days in the month and rounded half up once. With one rate all month this is
 * prorate(rate, days, month.days).
 */
export function billDays(
  month: Month,
  intervals: Array<{ from: Date; to: Date | null }>,
  agentRates: RateHistory,
  organizationRates: RateHistory,
): { days: number; revenue: bigint; rate: bigint } {
  const start = month.start.getTime();
  const end = month.end.getTime();
  // The first entry is no change: before it, it holds too (see rateAt).
  const changesWithin = (h: RateHistory) =>
    h.some((e, i) => i > 0 && e.at.getTime() > start && e.at.getTime() < end);
  // The common case, no rate changed during the month: one rate for every day.
  if (!changesWithin(agentRates) && !changesWithin(organizationRates)) {
    const days = daysCovered(month, intervals);
    const rate = rateAt(agentRates, month.end) ?? rateAt(organizationRates, month.end) ?? 0n;
    return { days, revenue: prorate(rate, days, month.days), rate };
  }
  const days = coveredDays(month, intervals);
  let sum = 0n;
  let rate = 0n;
  for (const d of days) {
    const dayEnd = new Date((d + 1) * DAY_MS);
    rate = rateAt(agentRates, dayEnd) ?? rateAt(organizationRates, dayEnd) ?? 0n;
    sum += rate;
  }
  return { days: days.length, revenue: prorate(sum, 1, month.days), rate };
}
