/**
 * The usage roll-ups as other modules read them (billing, sub-organizations): a read model over
 * the tables the ledger keeps per organization, agent and UTC day in the transaction of each debit.
 * No permission checks: the callers checked theirs (billing:read, usage:read, sub_organizations:read).
 */
import type { Executor } from '../../db/client.js';
import * as repo from './ledger.usage.repo.js';

export type { UsageTotals } from './ledger.usage.repo.js';

export function createLedgerUsage() {
  return {
    /** Usage per organization over [from, to] (UTC days, inclusive). */
    async usageByOrganization(ex: Executor, organizationIds: string[], from: string, to: string) {
      if (organizationIds.length === 0) return new Map<string, repo.UsageTotals>();
      return repo.sumUsageByOrganization(ex, organizationIds, from, to);
    },

    /** Usage of every organization that had some over [from, until) (UTC days), by organization. */
    usageOfEveryOrganization: (ex: Executor, from: string, until: string) =>
      repo.sumUsageOfEveryOrganization(ex, from, until),

    /** An organization's usage over [from, until) by calendar month, then agent ('' for none). */
    async usageByMonthAndAgent(ex: Executor, organizationId: string, from: string, until: string) {
      const out = new Map<string, Map<string, repo.UsageTotals>>();
      for (const row of await repo.sumUsageByMonthAndAgent(ex, organizationId, from, until)) {
        const byAgent = out.get(row.month) ?? new Map<string, repo.UsageTotals>();
        out.set(row.month, byAgent.set(row.agent_id, row));
      }
      return out;
    },

    /** An organization's usage over [from, until) per UTC day with any, oldest first. */
    usageByDay: (ex: Executor, organizationId: string, from: string, until: string) =>
      repo.sumUsageByDay(ex, organizationId, from, until),
  };
}

export type LedgerUsage = ReturnType<typeof createLedgerUsage>;
