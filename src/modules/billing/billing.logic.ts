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
  const days = new Set<number>();
  for (const { from, to } of intervals) {
    const a = Math.max(from.getTime(), month.start.getTime());
    const b = Math.min((to ?? month.end).getTime(), month.end.getTime());
    if (b <= a) continue;
    for (let d = Math.floor(a / DAY_MS); d <= Math.floor((b - 1) / DAY_MS); d++) days.add(d);
  }
  return days.size;
}

/** rate × days / daysInMonth, in micro-units, rounded half up. */
export function prorate(rateMicros: bigint, days: number, daysInMonth: number): bigint {
  const num = rateMicros * BigInt(days) * 2n;
  const den = BigInt(daysInMonth) * 2n;
  return (num + den / 2n) / den;
}
