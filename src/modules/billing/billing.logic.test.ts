import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { billDays, daysCovered, monthOf, prorate, rateAt } from './billing.logic.js';

const at = (iso: string) => new Date(iso);

describe('rateAt', () => {
  const history = [
    { at: at('2026-10-10T00:00:00Z'), rate: 5n },
    { at: at('2026-10-20T12:00:00Z'), rate: null },
  ];
  it('takes the last entry strictly before the moment', () => {
    expect(rateAt(history, at('2026-10-15T00:00:00Z'))).toBe(5n);
    expect(rateAt(history, at('2026-10-20T12:00:00Z'))).toBe(5n);
    expect(rateAt(history, at('2026-10-20T12:00:01Z'))).toBeNull();
  });
  it('reads the first entry back before it began, and nothing from an empty history', () => {
    expect(rateAt(history, at('2020-01-01T00:00:00Z'))).toBe(5n);
    expect(rateAt([], at('2026-10-15T00:00:00Z'))).toBeUndefined();
  });
});

describe('billDays', () => {
  const oct = monthOf('2026-10');
  it("falls back to the organization's rate where the agent has none", () => {
    const bill = billDays(
      oct,
      [{ from: at('2026-10-01T00:00:00Z'), to: null }],
      [
        { at: at('2026-01-01T00:00:00Z'), rate: null },
        { at: at('2026-10-11T00:00:00Z'), rate: 62n },
      ],
      [{ at: at('2026-01-01T00:00:00Z'), rate: 31n }],
    );
    // 10 days at 31, 21 days at 62, over 31 days: (310 + 1302) / 31 = 52.
    expect(bill).toEqual({ days: 31, revenue: 52n, rate: 62n });
  });

  it('with one rate all month, equals rate × days / days in the month (property)', () => {
    const moment = fc.integer({ min: Date.UTC(2026, 8, 15), max: Date.UTC(2026, 10, 15) });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(moment, fc.option(moment)), { maxLength: 4 }),
        fc.bigInt({ min: 0n, max: 10n ** 12n }),
        fc.boolean(),
        (spans, rate, own) => {
          const intervals = spans.map(([a, b]) => ({
            from: new Date(Math.min(a, b ?? a)),
            to: b === null ? null : new Date(Math.max(a, b)),
          }));
          const history = [{ at: at('2026-01-01T00:00:00Z'), rate }];
          const bill = own ? billDays(oct, intervals, history, []) : billDays(oct, intervals, [], history);
          const days = daysCovered(oct, intervals);
          expect(bill.days).toBe(days);
          expect(bill.revenue).toBe(prorate(rate, days, oct.days));
        },
      ),
    );
  });

  it('equals billing every covered day at the rate in force at its end, whatever the histories (property)', () => {
    const DAY = 86_400_000;
    const moment = fc.integer({ min: Date.UTC(2026, 8, 1), max: Date.UTC(2026, 11, 15) });
    const history = fc
      .array(fc.tuple(moment, fc.option(fc.bigInt({ min: 0n, max: 10n ** 9n }))), { maxLength: 4 })
      .map((entries) =>
        entries
          .sort(([a], [b]) => a - b)
          .filter(([a], i, all) => i === 0 || a !== all[i - 1]?.[0])
          .map(([t, rate]) => ({ at: new Date(t), rate })),
      );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(moment, fc.option(moment)), { maxLength: 3 }),
        history,
        history.map((h) => h.map((e) => ({ ...e, rate: e.rate ?? 0n }))),
        (spans, agentRates, organizationRates) => {
          const intervals = spans.map(([a, b]) => ({
            from: new Date(Math.min(a, b ?? a)),
            to: b === null ? null : new Date(Math.max(a, b)),
          }));
          // The reference: every day of the month, one at a time.
          let days = 0;
          let sum = 0n;
          for (let d = oct.start.getTime(); d < oct.end.getTime(); d += DAY) {
            const touched = intervals.some(
              (i) => i.from.getTime() < d + DAY && (i.to === null || i.to.getTime() > d),
            );
            if (!touched) continue;
            days++;
            const end = new Date(d + DAY);
            sum += rateAt(agentRates, end) ?? rateAt(organizationRates, end) ?? 0n;
          }
          const bill = billDays(oct, intervals, agentRates, organizationRates);
          expect(bill.days).toBe(days);
          expect(bill.revenue).toBe(prorate(sum, 1, oct.days));
        },
      ),
      { numRuns: 300 },
    );
  });
});
