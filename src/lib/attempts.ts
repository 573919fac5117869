/**
 * Failed attempts per key (an account, an API key's prefix) in fixed windows, in process memory.
 * At most `maxEntries` keys are held, the oldest window dropped first, so a flood of distinct
 * keys costs bounded memory (and at worst forgets some counts, never refuses more).
 */
export function createAttemptCounter(opts: { max: number; windowMs: number; maxEntries: number }) {
  const windows = new Map<string, { count: number; resetAt: number }>();
  return {
    /** Seconds until `key` may fail again; 0 while it is under the limit. */
    retryAfter(key: string, now = Date.now()): number {
      const w = windows.get(key);
      if (!w || w.resetAt <= now || w.count < opts.max) return 0;
      return Math.max(1, Math.ceil((w.resetAt - now) / 1000));
    },
    fail(key: string, now = Date.now()): void {
      let w = windows.get(key);
      if (!w || w.resetAt <= now) {
        windows.delete(key);
        if (windows.size >= opts.maxEntries) {
          const oldest = windows.keys().next().value;
          if (oldest !== undefined) windows.delete(oldest);
        }
        w = { count: 0, resetAt: now + opts.windowMs };
        windows.set(key, w);
      }
      w.count += 1;
    },
    clear(key: string): void {
      windows.delete(key);
    },
    get size(): number {
      return windows.size;
    },
  };
}

export type AttemptCounter = ReturnType<typeof createAttemptCounter>;
