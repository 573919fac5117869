import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isValidSlug, SLUG_MAX, slugCandidate, slugify } from './slug.js';

describe('slugify', () => {
  it.each([
    ['Café Zürich', 'cafe-zurich'],
    ['AgenticMail', 'agenticmail'],
    ['Straße', 'strasse'],
    ['Ærø', 'aero'],
    ['  --Hello__World--  ', 'hello-world'],
    ['東京', ''],
    ['', ''],
    ['---', ''],
    ['Acme Labs', 'acme-labs'],
    ['Acme   Labs, Inc.', 'acme-labs-inc'],
    ['R&D', 'r-and-d'],
    ['Łódź', 'lodz'],
    ['Þórr', 'thorr'],
    ['Œuvre', 'oeuvre'],
    ['Crème Brûlée 2026', 'creme-brulee-2026'],
    ['ﬁnance', 'finance'],
    ['東京 Tokyo', 'tokyo'],
    ['agent_mail.v2', 'agent-mail-v2'],
  ])('slugify(%j) = %j', (name, expected) => {
    expect(slugify(name)).toBe(expected);
  });

  it('truncates a 200-character name to at most 63 characters without a trailing hyphen', () => {
    const long = 'ab '.repeat(67).slice(0, 200);
    expect(long).toHaveLength(200);
    const slug = slugify(long);
    expect(slug.length).toBeLessThanOrEqual(SLUG_MAX);
    expect(slug.length).toBeGreaterThan(50);
    expect(slug.endsWith('-')).toBe(false);
    expect(isValidSlug(slug)).toBe(true);

    const letters = slugify('x'.repeat(200));
    expect(letters).toBe('x'.repeat(SLUG_MAX));
  });

  it('drops the hyphen that truncation leaves at the end', () => {
    const name = `${'a'.repeat(62)} b`; // "a…a-b" is 64 characters; the cut at 63 ends on the hyphen
    const slug = slugify(name);
    expect(slug).toBe('a'.repeat(62));
    expect(isValidSlug(slug)).toBe(true);
  });
});

describe('isValidSlug', () => {
  it.each(['a', 'acme', 'acme-labs', 'a1-b2-c3', '0', 'x'.repeat(SLUG_MAX)])('accepts %j', (slug) => {
    expect(isValidSlug(slug)).toBe(true);
  });

  it.each([
    '',
    '-a',
    'a-',
    'a--b',
    'Acme',
    'a_b',
    'a b',
    'a.b',
    'café',
    ' a',
    'a\n',
    'x'.repeat(SLUG_MAX + 1),
  ])('rejects %j', (slug) => {
    expect(isValidSlug(slug)).toBe(false);
  });
});

describe('slugCandidate', () => {
  it('returns the base for n <= 1 and base-n after that', () => {
    expect(slugCandidate('acme', 1)).toBe('acme');
    expect(slugCandidate('acme', 0)).toBe('acme');
    expect(slugCandidate('acme', 2)).toBe('acme-2');
    expect(slugCandidate('acme', 10)).toBe('acme-10');
  });

  it('keeps within 63 characters by shortening the base', () => {
    const base = 'x'.repeat(SLUG_MAX);
    expect(slugCandidate(base, 2)).toBe(`${'x'.repeat(SLUG_MAX - 2)}-2`);
    expect(slugCandidate(base, 12345)).toBe(`${'x'.repeat(SLUG_MAX - 6)}-12345`);
    for (const n of [2, 9, 10, 99, 100, 1_000_000]) {
      const c = slugCandidate(base, n);
      expect(c.length).toBeLessThanOrEqual(SLUG_MAX);
      expect(isValidSlug(c)).toBe(true);
    }
  });

  it('strips the hyphen left where the base is cut', () => {
    const base = `${'a'.repeat(60)}-bc`; // 63 characters
    expect(slugCandidate(base, 2)).toBe(`${'a'.repeat(60)}-2`); // cut to 61 ends on "-"
    expect(slugCandidate(base, 22)).toBe(`${'a'.repeat(60)}-22`); // cut to 60 ends before "-"
    expect(slugCandidate(base, 100)).toBe(`${'a'.repeat(59)}-100`);
    expect(slugCandidate(`${'a'.repeat(61)}-b`, 2)).toBe(`${'a'.repeat(61)}-2`);
  });
});

describe('properties', () => {
  const names = fc.oneof(
    fc.string({ unit: 'grapheme', maxLength: 300 }),
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc.string({
      unit: fc.constantFrom('a', 'Z', '9', ' ', '-', '_', 'é', 'ß', 'Æ', 'ø', '&', '東', '.'),
      maxLength: 300,
    }),
  );

  it('slugify output is always empty or a valid slug', () => {
    fc.assert(
      fc.property(names, (name) => {
        const slug = slugify(name);
        expect(slug === '' || isValidSlug(slug)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it('slugify is idempotent', () => {
    fc.assert(
      fc.property(names, (name) => {
        const slug = slugify(name);
        expect(slugify(slug)).toBe(slug);
      }),
      { numRuns: 1000 },
    );
  });

  it('slugCandidate of a valid slug is a valid slug within 63 characters', () => {
    const validSlug = fc
      .string({ unit: fc.constantFrom('a', 'b', '1', '-'), minLength: 1, maxLength: 80 })
      .map(slugify)
      .filter((s) => s !== '');
    fc.assert(
      fc.property(validSlug, fc.integer({ min: 1, max: 10_000_000 }), (base, n) => {
        const c = slugCandidate(base, n);
        expect(c.length).toBeLessThanOrEqual(SLUG_MAX);
        expect(isValidSlug(c)).toBe(true);
        if (n > 1) expect(c.endsWith(`-${n}`)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });
});
