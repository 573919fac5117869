import { describe, expect, it } from 'vitest';
import { createAttemptCounter } from './attempts.js';

describe('createAttemptCounter', () => {
  const counter = () => createAttemptCounter({ max: 3, windowMs: 60_000, maxEntries: 10 });

  it('take: lets `max` attempts go ahead in a window, then says how long to wait', () => {
    const c = counter();
    const now = 1_000_000;
    expect([1, 2, 3].map(() => c.take('a', now))).toEqual([0, 0, 0]);
    expect(c.take('a', now)).toBe(60);
    expect(c.take('a', now + 30_000)).toBe(30);
    expect(c.take('b', now)).toBe(0);
    expect(c.take('a', now + 60_000)).toBe(0);
  });

  it('release gives a place back; clear forgets the key', () => {
    const c = counter();
    for (let i = 0; i < 3; i++) c.take('a', 0);
    c.release('a', 0);
    expect(c.take('a', 0)).toBe(0);
    expect(c.take('a', 0)).toBeGreaterThan(0);
    c.clear('a');
    expect(c.take('a', 0)).toBe(0);
  });
});
