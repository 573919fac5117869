import { setBounded } from './bounded.js';

/**
 * Failed attempts per key (an account, an API key's prefix) in fixed windows, in process memory.
 * At most `maxEntries` keys are held, the oldest window dropped first, so a flood of distinct
 * keys costs bounded memory (and at worst forgets some counts, never refuses more).
 */
export function createAttemptCounter(opts: { max: number; windowMs: number; maxEntries: number }) {
  const windows = new Map<string, { count: number; resetAt: number }>();

  /** Seconds until `key` may fail again; 0 while it is under the limit. */
  function retryAfter(key: string, now = Date.now()): number {
    const w = windows.get(key);
    if (!w || w.resetAt <= now || w.count < opts.max) return 0;
    return Math.max(1, Math.ceil((w.resetAt - now) / 1000));
  }

  /** The key's window, a fresh one if it had none or it ended. */
  function current(key: string, now: number): { count: number; resetAt: number } {
    let w = windows.get(key);
    if (!w || w.resetAt <= now) {
      w = { count: 0, resetAt: now + opts.windowMs };
      setBounded(windows, key, w, opts.maxEntries);
    }
    return w;
  }

  return {
    retryAfter,
    fail(key: string, now = Date.now()): void {
      current(key, now).count += 1;
    },
    /**
     * Counts an attempt before it is made: 0 if it may go ahead (it is counted now), else the
     * seconds to wait (not counted). Concurrent attempts each take a place before any of them is
     * answered, so at most `max` go ahead in a window however many arrive at once.
     */
    take(key: string, now = Date.now()): number {
      const wait = retryAfter(key, now);
      if (wait) return wait;
      current(key, now).count += 1;
      return 0;
    },
    /** Gives back an attempt `take` counted that turned out not to count (not a failure). */
    release(key: string, now = Date.now()): void {
      const w = windows.get(key);
      if (w && w.resetAt > now && w.count > 0) w.count -= 1;
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
