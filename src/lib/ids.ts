const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'; // Crockford base32, lower case

/**
 * Time-ordered ids (ULID layout: 48-bit millisecond time, 80 random bits) behind a type prefix,
 * e.g. `org_01jd9…`. Sorting by id sorts by creation time, which keeps cursor pagination and
 * B-tree inserts cheap. Within one millisecond the random part is incremented so ids from one
 * process stay strictly increasing.
 */
let lastTime = -1;
let lastTimePart = '';
/** The 80 random bits as 16 five-bit digits, most significant first. */
const lastRandom = new Uint8Array(16);

function encodeTime(now: number): string {
  let time = '';
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  return time;
}

/** Random bytes drawn 4 KiB at a time: one system call per ~400 ids, not one per id. */
const pool = new Uint8Array(4096);
let poolAt = pool.length;

/** Draws 80 new random bits into `lastRandom` as 16 base-32 digits. */
function reseed() {
  if (poolAt + 10 > pool.length) {
    crypto.getRandomValues(pool);
    poolAt = 0;
  }
  // 10 bytes = 80 bits = 16 digits of 5 bits: take them 5 bytes (40 bits, 8 digits) at a time.
  for (let half = 0; half < 2; half++) {
    const o = poolAt + half * 5;
    let v =
      (pool[o] as number) * 2 ** 32 +
      (((pool[o + 1] as number) << 24) >>> 0) +
      ((pool[o + 2] as number) << 16) +
      ((pool[o + 3] as number) << 8) +
      (pool[o + 4] as number);
    for (let i = 7; i >= 0; i--) {
      lastRandom[half * 8 + i] = v % 32;
      v = Math.floor(v / 32);
    }
  }
  poolAt += 10;
}

/** Adds one to the random part (within one millisecond ids stay strictly increasing). */
function increment() {
  for (let i = 15; i >= 0; i--) {
    const d = ((lastRandom[i] as number) + 1) & 31;
    lastRandom[i] = d;
    if (d !== 0) return;
  }
}

export function ulid(now = Date.now()): string {
  if (now === lastTime) increment();
  else {
    lastTime = now;
    lastTimePart = encodeTime(now);
    reseed();
  }
  let rand = '';
  for (let i = 0; i < 16; i++) rand += ALPHABET[lastRandom[i] as number];
  return lastTimePart + rand;
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
