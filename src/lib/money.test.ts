import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatAmount, formatMoney, MAX_MICROS, parseAmount } from './money.js';

function micros(input: unknown): bigint {
  const r = parseAmount(input);
  if (!r.ok) throw new Error(`expected ${JSON.stringify(input)} to parse, got: ${r.reason}`);
  return r.micros;
}

function rejects(input: unknown): string {
  const r = parseAmount(input);
  if (r.ok) throw new Error(`expected ${String(input)} to be rejected, got ${r.micros}`);
  expect(r.reason).toBeTypeOf('string');
  expect(r.reason.length).toBeGreaterThan(0);
  return r.reason;
}

describe('parseAmount', () => {
  it.each([
    ['12.5', 12_500_000n],
    ['0.000125', 125n],
    ['99.00', 99_000_000n],
    ['0', 0n],
    ['0.000001', 1n],
    ['1000000000000', MAX_MICROS],
    ['-1000000000000', -MAX_MICROS],
    ['-3.5', -3_500_000n],
    ['-0.000125', -125n],
    ['007.50', 7_500_000n],
  ])('parses the decimal string %j', (input, expected) => {
    expect(micros(input)).toBe(expected);
  });

  it.each([
    [99, 99_000_000n],
    [99.0, 99_000_000n],
    [12.5, 12_500_000n],
    [0.000125, 125n],
    [-3.5, -3_500_000n],
    [0, 0n],
    [-0, 0n],
    [123456789.123456, 123_456_789_123_456n],
  ])('parses the JSON number %j', (input, expected) => {
    expect(micros(input)).toBe(expected);
  });

  it('trims surrounding whitespace of a string', () => {
    expect(micros('  12.5  ')).toBe(12_500_000n);
    expect(micros('\t99.00\n')).toBe(99_000_000n);
  });

  it.each(['1 2', '12. 5', '- 1', '1\u00a02'])('rejects inner whitespace %j', (input) => {
    rejects(input);
  });

  it.each(['1e3', '1E3', '1.5e-3', '-2e2'])('rejects exponent notation in the string %j', (input) => {
    rejects(input);
  });

  it.each([1e21, 1e-7, -1e-7])('rejects a JSON number that prints in exponent notation (%s)', (input) => {
    expect(rejects(input)).toMatch(/exponent/);
  });

  it.each(['1.0000001', '0.1234567', '-0.0000001', '12.5000000'])(
    'rejects 7 fractional digits (%j)',
    (input) => {
      expect(rejects(input)).toMatch(/6 fractional digits/);
    },
  );

  it('rejects a JSON number with 7 fractional digits', () => {
    rejects(0.1234567);
  });

  it('rejects a JSON number with more digits than a double carries exactly', () => {
    expect(rejects(0.1 + 0.2)).toMatch(/too many digits/);
    rejects(1234567890.123456);
  });

  it.each(['abc', '', '   ', '.5', '5.', '+5', '--5', '0x10', '1,000', '12.5.1', 'NaN', 'Infinity', '١٢'])(
    'rejects the non-decimal %j',
    (input) => {
      rejects(input);
    },
  );

  it.each([
    ['null', null],
    ['undefined', undefined],
    ['true', true],
    ['false', false],
    ['an object', { amount: '1' }],
    ['an array', ['1']],
    ['a bigint', 1n],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
  ])('rejects %s', (_label, input) => {
    rejects(input);
  });

  it('rejects amounts beyond ±MAX_MICROS', () => {
    expect(rejects('1000000000000.000001')).toMatch(/too large/);
    expect(rejects('-1000000000000.000001')).toMatch(/too large/);
    expect(rejects('99999999999999999999')).toMatch(/too large/);
    expect(rejects(`9${'0'.repeat(40)}`)).toMatch(/too large/);
  });
});

describe('formatAmount / formatMoney', () => {
  it.each([
    [99_000_000n, 0, '99'],
    [99_000_000n, 2, '99.00'],
    [125n, 0, '0.000125'],
    [125n, 2, '0.000125'],
    [12_500_000n, 2, '12.50'],
    [12_500_000n, 0, '12.5'],
    [0n, 0, '0'],
    [0n, 2, '0.00'],
    [-1n, 0, '-0.000001'],
    [-3_500_000n, 2, '-3.50'],
    [MAX_MICROS, 2, '1000000000000.00'],
  ])('formatAmount(%s, %i) = %j', (m, digits, expected) => {
    expect(formatAmount(m, digits)).toBe(expected);
  });

  it('formatMoney shows at least two fractional digits', () => {
    expect(formatMoney(99_000_000n)).toBe('99.00');
    expect(formatMoney(1n)).toBe('0.000001');
    expect(formatMoney(-10_000_000n)).toBe('-10.00');
  });
});

describe('properties', () => {
  const anyMicros = fc.bigInt(-MAX_MICROS, MAX_MICROS);

  it('parse(formatAmount(m)) === m', () => {
    fc.assert(
      fc.property(anyMicros, fc.integer({ min: 0, max: 6 }), (m, digits) => {
        expect(micros(formatAmount(m, digits))).toBe(m);
        expect(micros(formatMoney(m))).toBe(m);
      }),
      { numRuns: 2000 },
    );
  });

  it('format(parse(x)) === x for canonical decimal strings', () => {
    fc.assert(
      fc.property(anyMicros, fc.integer({ min: 0, max: 6 }), (m, digits) => {
        const text = formatAmount(m, digits);
        expect(formatAmount(micros(text), digits)).toBe(text);
      }),
      { numRuns: 2000 },
    );
  });

  it('format(parse(x)) for decimals written with any padding equals the canonical form', () => {
    const decimal = fc
      .tuple(
        fc.boolean(),
        fc.stringMatching(/^[0-9]{1,13}$/),
        fc.option(fc.stringMatching(/^[0-9]{1,6}$/), { nil: undefined }),
      )
      .map(([neg, whole, frac]) => `${neg ? '-' : ''}${whole}${frac === undefined ? '' : `.${frac}`}`);
    fc.assert(
      fc.property(decimal, (text) => {
        const r = parseAmount(text);
        const approx = Number.parseFloat(text);
        if (!r.ok) {
          expect(r.reason).toMatch(/too large/);
          return;
        }
        const again = parseAmount(formatAmount(r.micros));
        expect(again).toEqual({ ok: true, micros: r.micros });
        expect(Math.abs(Number(r.micros) / 1e6 - approx)).toBeLessThanOrEqual(
          Math.abs(approx) * 1e-12 + 1e-9,
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('formatMoney always has at least two and at most six fractional digits', () => {
    fc.assert(
      fc.property(anyMicros, (m) => {
        expect(formatMoney(m)).toMatch(/^-?(0|[1-9]\d*)\.\d{2,6}$/);
      }),
      { numRuns: 2000 },
    );
  });

  it('parseAmount never throws and never returns a value outside ±MAX_MICROS', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.double(), fc.anything()), (input) => {
        const r = parseAmount(input);
        if (r.ok) {
          expect(r.micros <= MAX_MICROS && r.micros >= -MAX_MICROS).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('a JSON number with at most six fractional digits parses to its exact micros', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -999_999_999, max: 999_999_999 }),
        fc.integer({ min: 0, max: 6 }),
        (n, scale) => {
          const value = n / 10 ** scale;
          expect(parseAmount(value)).toEqual({ ok: true, micros: BigInt(n) * 10n ** BigInt(6 - scale) });
        },
      ),
      { numRuns: 2000 },
    );
  });
});
