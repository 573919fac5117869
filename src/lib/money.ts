import { invalidField } from './problem.js';

/**
 * The only place that parses, formats and does arithmetic on amounts.
 * Amounts are BigInt micro-units (10^-6) inside and decimal strings on the wire; no float touches them.
 */
export const SCALE = 6;
const FACTOR = 10n ** BigInt(SCALE);
const DECIMAL = /^(-)?(\d+)(?:\.(\d+))?$/;
/** Largest amount accepted anywhere: fits a BIGINT with room for sums. */
export const MAX_MICROS = 10n ** 18n;

export type ParseResult = { ok: true; micros: bigint } | { ok: false; reason: string };

/**
 * Parses a decimal string ("12.5", "0.000125") or a JSON number written with at most six
 * fractional digits into micro-units. Rejects exponents, more than six fractional digits and
 * anything that is not a plain decimal.
 */
export function parseAmount(input: unknown): ParseResult {
  let text: string;
  if (typeof input === 'number') {
    if (!Number.isFinite(input)) return { ok: false, reason: 'must be a finite decimal' };
    // A JS number prints as its shortest round-trip decimal, which is what the client wrote
    // for any amount with at most 15 significant digits; larger ones are refused below.
    text = String(input);
    if (/e/i.test(text)) return { ok: false, reason: 'must be a plain decimal, not exponent notation' };
    if (text.replace(/[-.]/g, '').replace(/^0+/, '').length > 15)
      return { ok: false, reason: 'has too many digits for a JSON number; send it as a string' };
  } else if (typeof input === 'string') {
    text = input.trim();
  } else {
    return { ok: false, reason: 'must be a decimal string such as "12.50"' };
  }
  const m = DECIMAL.exec(text);
  if (!m) return { ok: false, reason: 'must be a decimal number such as "12.50"' };
  const [, sign, whole = '0', frac = ''] = m;
  if (frac.length > SCALE) return { ok: false, reason: `must have at most ${SCALE} fractional digits` };
  if (whole.length > 19) return { ok: false, reason: 'is too large' };
  let micros = BigInt(whole) * FACTOR + BigInt(frac.padEnd(SCALE, '0'));
  if (sign) micros = -micros;
  if (micros > MAX_MICROS || micros < -MAX_MICROS) return { ok: false, reason: 'is too large' };
  return { ok: true, micros };
}

/** A request field holding an amount > 0, in micro-units; a 400 naming the field otherwise. */
export function positiveAmount(field: string, input: string | number): bigint {
  const p = parseAmount(input);
  if (!p.ok) throw invalidField(field, p.reason);
  if (p.micros <= 0n) throw invalidField(field, 'must be greater than zero');
  return p.micros;
}

/** A request field holding an amount ≥ 0, in micro-units; a 400 naming the field otherwise. */
export function nonNegativeAmount(field: string, input: string | number): bigint {
  const p = parseAmount(input);
  if (!p.ok) throw invalidField(field, p.reason);
  if (p.micros < 0n) throw invalidField(field, 'must not be negative');
  return p.micros;
}

/**
 * Formats micro-units as a decimal string with at least `minFractionDigits` digits and no
 * trailing zeros beyond them: 99_000_000n -> "99.00" (min 2), 125n -> "0.000125".
 */
export function formatAmount(micros: bigint, minFractionDigits = 0): string {
  const negative = micros < 0n;
  const abs = negative ? -micros : micros;
  const whole = abs / FACTOR;
  let frac = (abs % FACTOR).toString().padStart(SCALE, '0').replace(/0+$/, '');
  if (frac.length < minFractionDigits) frac = frac.padEnd(minFractionDigits, '0');
  return `${negative ? '-' : ''}${whole}${frac ? `.${frac}` : ''}`;
}

/** Currency amounts show at least two fractional digits, as people expect to read them. */
export function formatMoney(micros: bigint): string {
  return formatAmount(micros, 2);
}
