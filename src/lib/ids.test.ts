import { describe, expect, it } from 'vitest';
import { ID_PATTERN, type IdPrefix, newId, ulid } from './ids.js';

describe('newId', () => {
  it.each<IdPrefix>(['org', 'aud', 'req', 'opc'])('a %s id matches ID_PATTERN', (prefix) => {
    const id = newId(prefix);
    expect(id).toMatch(ID_PATTERN);
    expect(id.startsWith(`${prefix}_`)).toBe(true);
    expect(id).toHaveLength(prefix.length + 1 + 26);
  });

  it('10,000 ids generated in a tight loop are unique and strictly increasing', () => {
    const ids: string[] = [];
    for (let i = 0; i < 10_000; i++) ids.push(newId('org'));
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 1; i < ids.length; i++) {
      const prev = ids[i - 1] as string;
      const cur = ids[i] as string;
      if (!(prev < cur)) expect.fail(`id ${i} is not greater than the one before: ${prev} >= ${cur}`);
      expect(cur).toMatch(ID_PATTERN);
    }
  });

  it('the time part encodes the creation millisecond, so ids sort by time', () => {
    const before = Date.now();
    const id = newId('org');
    const after = Date.now();
    const alphabet = '0123456789abcdefghjkmnpqrstvwxyz';
    let ms = 0;
    for (const ch of id.slice(4, 14)) ms = ms * 32 + alphabet.indexOf(ch);
    expect(ms).toBeGreaterThanOrEqual(before);
    expect(ms).toBeLessThanOrEqual(after);
  });
});

describe('ulid', () => {
  it('ids from an earlier millisecond sort before ids from a later one', () => {
    const a = ulid(1_700_000_000_000);
    const b = ulid(1_700_000_000_001);
    expect(a < b).toBe(true);
    expect(a).toHaveLength(26);
  });

  it('is strictly increasing within one millisecond', () => {
    const now = 1_800_000_000_000;
    const seq = Array.from({ length: 1000 }, () => ulid(now));
    for (let i = 1; i < seq.length; i++) expect((seq[i - 1] as string) < (seq[i] as string)).toBe(true);
    expect(new Set(seq.map((s) => s.slice(0, 10))).size).toBe(1);
  });
});
