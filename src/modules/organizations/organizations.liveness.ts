import type { DbHandle, Executor, Tx } from '../../db/client.js';
import * as repo from './organizations.repo.js';

const CHANNEL = 'orgbase_organizations';
/** A backstop only: changes of liveness reach every process at once through NOTIFY. */
const CACHE_MS = 60_000;

/**
 * Whether an organization is live and active, read on every debit: cached in the process, and
 * forgotten in every process through a NOTIFY sent in the transaction that changes it.
 */
export function createLiveness(listen: DbHandle['listen'] | undefined) {
  const cache = new Map<string, { active: boolean; at: number }>();
  return {
    /** Tells every process, when `tx` commits, that the organization's liveness changed. */
    announce: (tx: Tx, organizationId: string) => repo.notify(tx, CHANNEL, organizationId),

    /** Committed here: this process must not wait for its own NOTIFY. */
    forget: (organizationId: string) => cache.delete(organizationId),

    async states(ex: Executor, ids: string[]): Promise<Map<string, { active: boolean }>> {
      const now = Date.now();
      const out = new Map<string, { active: boolean }>();
      const missing: string[] = [];
      for (const id of ids) {
        const hit = cache.get(id);
        if (hit && now - hit.at < CACHE_MS) out.set(id, { active: hit.active });
        else missing.push(id);
      }
      if (missing.length) {
        for (const [id, state] of await repo.findLiveStates(ex, missing)) {
          out.set(id, state);
          cache.set(id, { active: state.active, at: now });
        }
      }
      return out;
    },

    /** Starts hearing other processes' changes; returns how to stop. */
    async start(): Promise<() => Promise<void>> {
      if (!listen) return async () => {};
      return listen(
        CHANNEL,
        (id) => cache.delete(id),
        () => cache.clear(),
      );
    },
  };
}
