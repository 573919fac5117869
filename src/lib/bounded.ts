/**
 * Sets `key` in `map` as its newest entry, dropping the oldest entries past `max`: a Map keeps
 * insertion order, so this is a cache that forgets the least recently set first. Memory stays
 * bounded however many distinct keys arrive (unknown API-key prefixes, failing accounts).
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > max) map.delete(map.keys().next().value as K);
}
