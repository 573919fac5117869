export const SLUG_PATTERN = '^[a-z0-9]+(?:-[a-z0-9]+)*$';
export const SLUG_MAX = 63;
const SLUG_RE = new RegExp(SLUG_PATTERN);

// Letters that Unicode does not decompose into a base letter plus accents.
const FOLD: Record<string, string> = {
  ß: 'ss',
  æ: 'ae',
  œ: 'oe',
  ø: 'o',
  đ: 'd',
  ð: 'd',
  ł: 'l',
  þ: 'th',
  ı: 'i',
  ħ: 'h',
  ŋ: 'ng',
  '&': ' and ',
};

/** "Café Zürich" -> "cafe-zurich". Empty when the name has no Latin letters or digits. */
export function slugify(name: string): string {
  // Fold before and after decomposition: "Ǿ" only becomes "ø" once its accent is removed.
  const fold = (s: string) => s.replace(/[ßæœøđðłþıħŋ&]/g, (c) => FOLD[c] ?? c);
  const folded = fold(
    fold(name.toLowerCase())
      .normalize('NFKD')
      .replace(/\p{M}+/gu, ''),
  );
  return folded
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, SLUG_MAX)
    .replace(/-+$/g, '');
}

export function isValidSlug(slug: string): boolean {
  return slug.length <= SLUG_MAX && SLUG_RE.test(slug);
}

/** The n-th candidate for a generated slug: base, base-2, base-3, ... kept within SLUG_MAX. */
export function slugCandidate(base: string, n: number): string {
  if (n <= 1) return base;
  const suffix = `-${n}`;
  return base.slice(0, SLUG_MAX - suffix.length).replace(/-+$/g, '') + suffix;
}
