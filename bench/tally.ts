export const MICROS = 1_000_000n;

/** Decimal credits ("12.5", "-0.000125") to integer micro-credits, exactly. */
export function toMicros(text: string): bigint {
  const m = /^(-)?(\d+)(?:\.(\d{1,6}))?$/.exec(text);
  if (!m) throw new Error(`not a decimal amount: ${text}`);
  const micros = BigInt(m[2] as string) * MICROS + BigInt((m[3] ?? '').padEnd(6, '0'));
  return m[1] ? -micros : micros;
}

/** Accepted debits per account, counted from the answers, to check balances against. */
export class Tally<K> {
  readonly accepted = new Map<K, number>();
  /** Refused operations by error code (a refusal moves nothing, so balances stay checkable). */
  readonly refused = new Map<string, number>();

  add(key: K, n = 1) {
    this.accepted.set(key, (this.accepted.get(key) ?? 0) + n);
  }

  refuse(code: string) {
    this.refused.set(code, (this.refused.get(code) ?? 0) + 1);
  }
}

export class CheckFailed extends Error {}
