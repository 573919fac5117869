import type { CpuShare } from './cpu.js';
import type { RunResult } from './load.js';

export interface Phase {
  result: RunResult;
  cpu: CpuShare | undefined;
}

/** A system under one scenario: saturated (closed loop), then open loop at the peak and at 70% of it. */
export interface Measured {
  saturation: Phase;
  peak: Phase;
  at70: Phase;
}

export interface Scenario {
  key: string;
  title: string;
  unit: string;
  orgbase: Measured;
  baseline: Measured | undefined;
  /** Set when the baseline figure comes from another scenario's run. */
  baselineNote?: string;
}

export const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
export const ms = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : '—');
const pct = (n: number) => `${Math.round(n)}%`;

/** A plain-text table, columns padded; numbers right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = header.map((_, i) => i > 0 && rows.every((r) => /^[\d,.—×%/ +*-]*$/.test(r[i] ?? '')));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join(' | ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)].join('\n');
}

export function summaryTable(scenarios: Scenario[]): string {
  const rows: string[][] = [];
  for (const s of scenarios) {
    const b = s.baseline;
    const ratio = b ? s.orgbase.peak.result.opsPerSec / b.peak.result.opsPerSec : Number.NaN;
    rows.push([
      `${s.title} — peak (${s.unit})`,
      int(s.orgbase.peak.result.opsPerSec),
      ms(s.orgbase.peak.result.p50),
      ms(s.orgbase.peak.result.p99),
      b ? `${int(b.peak.result.opsPerSec)}${s.baselineNote ? '*' : ''}` : '—',
      Number.isFinite(ratio) ? `${ratio.toFixed(1)}×` : '—',
    ]);
    rows.push([
      `${s.title} — at 70% of peak`,
      int(s.orgbase.at70.result.opsPerSec),
      ms(s.orgbase.at70.result.p50),
      ms(s.orgbase.at70.result.p99),
      b && !s.baselineNote ? int(b.at70.result.opsPerSec) : '',
      '',
    ]);
  }
  return table(['scenario', 'orgbase ops/s', 'p50 ms', 'p99 ms', 'baseline ops/s', 'ratio'], rows);
}

function cpuText(c: CpuShare | undefined): string {
  return c ? `${pct(c.server)} / ${pct(c.loadgen)} / ${pct(c.postgres)} / ${pct(c.other)}` : '—';
}

/** Every phase of every run: what was offered, what came back, and where the CPU went. */
export function detailTable(scenarios: Scenario[]): string {
  const rows: string[][] = [];
  const add = (s: Scenario, system: string, m: Measured) => {
    const phases: Array<[string, Phase]> = [
      ['closed loop', m.saturation],
      ['open @ peak', m.peak],
      ['open @ 70%', m.at70],
    ];
    for (const [name, p] of phases) {
      const r = p.result;
      rows.push([
        `${s.key} ${system}`,
        name,
        int(r.requestsPerSec),
        int(r.opsPerSec),
        ms(r.p50),
        ms(r.p99),
        ms(r.max),
        int(r.accepted),
        `${int(r.errors)}/${int(r.dropped)}`,
        cpuText(p.cpu),
      ]);
    }
  };
  for (const s of scenarios) {
    add(s, 'orgbase', s.orgbase);
    if (s.baseline && !s.baselineNote) add(s, 'baseline', s.baseline);
  }
  return table(
    [
      'run',
      'phase',
      'req/s',
      'ops/s',
      'p50 ms',
      'p99 ms',
      'max ms',
      'accepted',
      'err/shed',
      'cpu srv/gen/pg/other',
    ],
    rows,
  );
}

export interface Target {
  label: string;
  met: boolean;
  actual: string;
}

export function targetsTable(targets: Target[]): string {
  return table(
    ['target (from the issue)', 'measured', 'status'],
    targets.map((t) => [t.label, t.actual, t.met ? 'met' : 'NOT met']),
  );
}

/** A whole number ≥ 1 from the environment, or `fallback` when unset; anything else stops the run. */
export function positiveEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive whole number, got "${raw}"`);
  return n;
}
