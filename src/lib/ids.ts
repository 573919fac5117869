import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'; // Crockford base32, lower case

/**
 * Time-ordered ids (ULID layout: 48-bit millisecond time, 80 random bits) behind a type prefix,
 * e.g. `org_01jd9…`. Sorting by id sorts by creation time, which keeps cursor pagination and
 * B-tree inserts cheap. Within one millisecond the random part is incremented so ids from one
 * process stay strictly increasing.
 */
let lastTime = 0;
let lastRandom = new Uint8Array(10);

function nextRandom(now: number): Uint8Array {
  if (now === lastTime) {
    const r = lastRandom.slice();
    for (let i = r.length - 1; i >= 0; i--) {
      r[i] = ((r[i] ?? 0) + 1) & 0xff;
      if (r[i] !== 0) break;
    }
    lastRandom = r;
    return r;
  }
  lastTime = now;
  lastRandom = new Uint8Array(randomBytes(10));
  return lastRandom;
}

export function ulid(now = Date.now()): string {
  let time = '';
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const bytes = nextRandom(now);
  let bits = 0n;
  for (const b of bytes) bits = (bits << 8n) | BigInt(b);
  let rand = '';
  for (let i = 0; i < 16; i++) {
    rand = ALPHABET[Number(bits & 31n)] + rand;
    bits >>= 5n;
  }
  return time + rand;
}

export type IdPrefix =
  | 'org'
  | 'aud'
  | 'req'
  | 'opc'
  | 'txn'
  | 'hld'
  | 'top'
  | 'usr'
  | 'ses'
  | 'acc'
  | 'vrf'
  | 'inv'
  | 'key'
  | 'msg'
  | 'agt'
  | 'tem'
  | 'dom';

export function newId(prefix: IdPrefix): string {
  return `${prefix}_${ulid()}`;
}

export const ID_PATTERN = /^[a-z]{2,5}_[0-9a-hjkmnp-tv-z]{26}$/;
