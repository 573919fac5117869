/**
 * Billing owns no table: it is arithmetic over what other modules keep. Per-agent monthly
 * records, an organization's monthly summary, the platform's month per currency, and usage
 * analytics, from the usage roll-ups the ledger keeps per organization, agent and day in the
 * transaction of each debit (read through the ledger's usage read model, never by scanning
 * events), agents' assignments and rate histories (agents service) and organizations' rates and
 * currencies (organizations service). Revenue is each agent's effective rate pro-rated by the UTC
 * days it belonged to the organization in the month (billing.logic.ts).
 */
import type { Static } from 'typebox';
import type { Db } from '../../db/client.js';
import { authorize, type RequestContext } from '../../lib/authz.js';
import { ID_PATTERN } from '../../lib/ids.js';
import { formatAmount, formatMoney } from '../../lib/money.js';
import { invalidField } from '../../lib/problem.js';
import type { AgentsService } from '../agents/agents.service.js';
import type { LedgerUsage, UsageTotals } from '../ledger/ledger.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import { billDays, type Month, monthKey, monthOf, monthsBetween } from './billing.logic.js';
import type {
  AnalyticsQuery,
  AnalyticsResponse,
  BillingQuery,
  BillingResponse,
  PlatformSummaryQuery,
  PlatformSummaryResponse,
  SummaryQuery,
  SummaryResponse,
} from './billing.schema.js';

const ZERO: UsageTotals = { events: 0n, credits: 0n, tokens_in: 0n, tokens_out: 0n, cost: 0n };

function totalsView(t: UsageTotals) {
  return {
    events: Number(t.events),
    credits: formatAmount(t.credits),
    tokens_in: Number(t.tokens_in),
    tokens_out: Number(t.tokens_out),
    cost: formatMoney(t.cost),
  };
}

function add(a: UsageTotals, b: UsageTotals): UsageTotals {
  return {
    events: a.events + b.events,
    credits: a.credits + b.credits,
    tokens_in: a.tokens_in + b.tokens_in,
    tokens_out: a.tokens_out + b.tokens_out,
    cost: a.cost + b.cost,
  };
}

export function createBillingService(deps: {
  db: Db;
  organizations: OrganizationsService;
  agents: AgentsService;
  /** The ledger's usage roll-ups. */
  ledger: Pick<LedgerUsage, 'usageByMonthAndAgent' | 'usageByDay' | 'usageOfEveryOrganization'>;
}) {
  const { db, organizations, agents, ledger } = deps;

  const dateOf = (d: Date) => d.toISOString().slice(0, 10);

  /** The latest rate of a history (for the record of an agent billed no day of the month). */
  const lastRate = (h: ReadonlyArray<{ rate: bigint | null }>) => h.at(-1)?.rate ?? 0n;

  /**
   * Per-agent records of each month in `months` (one range of consecutive months): one round of
   * reads for the whole range, whatever its length (a second only for usage by an agent with no
   * assignment in the range, which only rewritten history can produce).
   */
  async function records(orgId: string, months: Month[], now = new Date()) {
    const start = months.reduce((a, m) => (m.start < a ? m.start : a), months[0]?.start as Date);
    const end = months.reduce((a, m) => (m.end > a ? m.end : a), months[0]?.end as Date);
    const [assignments, usage, orgRates, assigned, agentRates] = await Promise.all([
      agents.assignmentsDuring(db, orgId, start, end),
      ledger.usageByMonthAndAgent(db, orgId, dateOf(start), dateOf(end)),
      organizations.rateHistories(db, [orgId]),
      agents.assignedDuring(db, orgId, start, end),
      agents.rateHistoriesDuring(db, orgId, start, end),
    ]);
    const byId = new Map<string, { name: string; billing_rate: bigint | null }>(
      assigned.map((a) => [a.id, a]),
    );
    const missing = new Set<string>();
    for (const m of usage.values())
      for (const id of m.keys()) if (id !== '' && !byId.has(id)) missing.add(id);
    if (missing.size) {
      const [rows, rates] = await Promise.all([
        agents.byIds(db, [...missing]),
        agents.rateHistories(db, [...missing]),
      ]);
      for (const a of rows) byId.set(a.id, a);
      for (const [id, h] of rates) agentRates.set(id, h);
    }
    const organizationRates = orgRates.get(orgId) ?? [];
    return months.map((month) => {
      const monthUsage = usage.get(month.key) ?? new Map<string, UsageTotals>();
      const inMonth = assignments.filter(
        (a) => a.assigned_at < month.end && (a.unassigned_at === null || a.unassigned_at > month.start),
      );
      const ids = [
        ...new Set([...inMonth.map((a) => a.agent_id), ...[...monthUsage.keys()].filter((k) => k !== '')]),
      ].sort();
      const rows = ids.map((id) => {
        const bill = billDays(
          month,
          inMonth.filter((a) => a.agent_id === id).map((a) => ({ from: a.assigned_at, to: a.unassigned_at })),
          agentRates.get(id) ?? [],
          organizationRates,
        );
        return {
          agent_id: id as string | null,
          agent_name: byId.get(id)?.name ?? null,
          // Days after today are counted for an assignment still open: a projection, not yet owed.
          projected:
            month.end > now &&
            inMonth.some((a) => a.agent_id === id && (a.unassigned_at === null || a.unassigned_at > now)),
          days_assigned: bill.days,
          rate: bill.days > 0 ? bill.rate : (byId.get(id)?.billing_rate ?? lastRate(organizationRates)),
          revenue: bill.revenue,
          usage: monthUsage.get(id) ?? ZERO,
        };
      });
      const unattributed = monthUsage.get('');
      if (unattributed)
        rows.push({
          agent_id: null,
          agent_name: null,
          projected: false,
          days_assigned: 0,
          rate: 0n,
          revenue: 0n,
          usage: unattributed,
        });
      return { month, rows };
    });
  }

  async function resolve(ctx: RequestContext, idOrSlug: string, permission: 'billing:read' | 'usage:read') {
    const org = await organizations.load(db, idOrSlug);
    authorize(ctx, [permission], org.id);
    return org;
  }

  /**
   * The organization and what `read` finds for it. Given an id (not a slug), the caller is
   * authorized from the id alone, so the reads run beside loading the organization: one round
   * trip less on the hot billing reads. Nothing is returned before both the check and the load.
   */
  async function withOrganization<T>(
    ctx: RequestContext,
    idOrSlug: string,
    read: (organizationId: string) => Promise<T>,
  ) {
    if (ID_PATTERN.test(idOrSlug)) {
      authorize(ctx, ['billing:read'], idOrSlug);
      const [org, data] = await Promise.all([organizations.load(db, idOrSlug), read(idOrSlug)]);
      return { org, data };
    }
    const org = await resolve(ctx, idOrSlug, 'billing:read');
    return { org, data: await read(org.id) };
  }

  return {
    /** GET …/billing: the per-agent records of a month (default: this month). */
    async billing(
      ctx: RequestContext,
      idOrSlug: string,
      query: Static<typeof BillingQuery>,
    ): Promise<Static<typeof BillingResponse>> {
      const month = monthOf(query.month ?? monthKey(new Date()));
      const { org, data: months } = await withOrganization(ctx, idOrSlug, (id) => records(id, [month]));
      const rows = months[0]?.rows ?? [];
      return {
        organization_id: org.id,
        month: month.key,
        currency: org.currency,
        days_in_month: month.days,
        projected: rows.some((r) => r.projected),
        data: rows.map((r) => ({
          agent_id: r.agent_id,
          agent_name: r.agent_name,
          days_assigned: r.days_assigned,
          rate: formatMoney(r.rate),
          revenue: formatMoney(r.revenue),
          projected: r.projected,
          ...totalsView(r.usage),
        })),
      };
    },

    /** GET …/billing-summary: monthly revenue, cost and token totals (default: the last 12 months). */
    async summary(
      ctx: RequestContext,
      idOrSlug: string,
      query: Static<typeof SummaryQuery>,
    ): Promise<Static<typeof SummaryResponse>> {
      const now = new Date();
      const to = query.to ?? monthKey(now);
      const from =
        query.from ?? monthKey(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 11, 1)));
      if (from > to) throw invalidField('from', 'must not be after to');
      const keys = monthsBetween(from, to);
      if (keys.length > 120) throw invalidField('from', 'covers more than 120 months');
      const { org, data: months } = await withOrganization(ctx, idOrSlug, (id) =>
        records(id, keys.map(monthOf)),
      );
      const data = [];
      for (const { month, rows } of months) {
        if (rows.length === 0) continue;
        const usage = rows.reduce((acc, r) => add(acc, r.usage), ZERO);
        const revenue = rows.reduce((acc, r) => acc + r.revenue, 0n);
        const billed = rows.filter((r) => r.days_assigned > 0).length;
        data.push({
          month: month.key,
          revenue: formatMoney(revenue),
          projected: rows.some((r) => r.projected),
          agents: billed,
          ...totalsView(usage),
        });
      }
      return { organization_id: org.id, currency: org.currency, data };
    },

    /** GET /api/billing-summary: the whole platform's month (operator), from the roll-ups. */
    async platformSummary(
      ctx: RequestContext,
      query: Static<typeof PlatformSummaryQuery>,
    ): Promise<Static<typeof PlatformSummaryResponse>> {
      authorize(ctx, ['billing:read_all'], null);
      const now = new Date();
      const month = monthOf(query.month ?? monthKey(now));
      // Everything that does not depend on another read, at once.
      const [usage, assignments, agentRates, orgRates] = await Promise.all([
        ledger.usageOfEveryOrganization(db, dateOf(month.start), dateOf(month.end)),
        agents.assignmentsDuring(db, null, month.start, month.end),
        agents.rateHistoriesDuring(db, null, month.start, month.end),
        organizations.allRateHistories(db),
      ]);
      const orgIds = [...new Set([...usage.keys(), ...assignments.map((a) => a.organization_id)])];
      const orgs = new Map((await organizations.summaries(db, orgIds)).map((o) => [o.id, o]));
      const money = new Map<string, { revenue: bigint; cost: bigint }>();
      const bucket = (currency: string) => {
        const b = money.get(currency) ?? { revenue: 0n, cost: 0n };
        money.set(currency, b);
        return b;
      };
      // Each agent's intervals in each organization, then its revenue there.
      const intervals = new Map<string, Map<string, Array<{ from: Date; to: Date | null }>>>();
      for (const a of assignments) {
        let byAgent = intervals.get(a.organization_id);
        if (!byAgent) {
          byAgent = new Map();
          intervals.set(a.organization_id, byAgent);
        }
        const list = byAgent.get(a.agent_id);
        if (list) list.push({ from: a.assigned_at, to: a.unassigned_at });
        else byAgent.set(a.agent_id, [{ from: a.assigned_at, to: a.unassigned_at }]);
      }
      for (const [orgId, byAgent] of intervals) {
        const org = orgs.get(orgId);
        if (!org) continue;
        const b = bucket(org.currency);
        const orgHistory = orgRates.get(orgId) ?? [];
        for (const [agentId, list] of byAgent)
          b.revenue += billDays(month, list, agentRates.get(agentId) ?? [], orgHistory).revenue;
      }
      let total = ZERO;
      for (const [orgId, u] of usage) {
        total = add(total, u);
        const org = orgs.get(orgId);
        if (org) bucket(org.currency).cost += u.cost;
      }
      const { cost: _cost, ...counts } = totalsView(total);
      return {
        month: month.key,
        organizations: orgIds.length,
        projected:
          month.end > now &&
          assignments.some(
            (a) => a.assigned_at < month.end && (a.unassigned_at === null || a.unassigned_at > now),
          ),
        ...counts,
        by_currency: [...money.entries()]
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([currency, m]) => ({ currency, revenue: formatMoney(m.revenue), cost: formatMoney(m.cost) })),
      };
    },

    /** GET …/analytics: per day usage over a range (default: the last 30 days) and the top agents by credits. */
    async analytics(
      ctx: RequestContext,
      idOrSlug: string,
      query: Static<typeof AnalyticsQuery>,
    ): Promise<Static<typeof AnalyticsResponse>> {
      const org = await resolve(ctx, idOrSlug, 'usage:read');
      const today = new Date().toISOString().slice(0, 10);
      const to = query.to ?? today;
      const from = query.from ?? new Date(Date.parse(to) - 29 * 86_400_000).toISOString().slice(0, 10);
      if (from > to) throw invalidField('from', 'must not be after to');
      if (Date.parse(to) - Date.parse(from) > 366 * 86_400_000)
        throw invalidField('from', 'covers more than a year');
      const end = new Date(Date.parse(to) + 86_400_000).toISOString().slice(0, 10);
      const days = await ledger.usageByDay(db, org.id, from, end);
      const usage = new Map<string, UsageTotals>();
      for (const perAgent of (await ledger.usageByMonthAndAgent(db, org.id, from, end)).values())
        for (const [id, t] of perAgent) usage.set(id, add(usage.get(id) ?? ZERO, t));
      const top = [...usage.entries()]
        .filter(([id]) => id !== '')
        .sort((a, b) =>
          b[1].credits > a[1].credits ? 1 : b[1].credits < a[1].credits ? -1 : a[0] < b[0] ? -1 : 1,
        )
        .slice(0, query.top ?? 10);
      const names = new Map(
        (
          await agents.byIds(
            db,
            top.map(([id]) => id),
          )
        ).map((a) => [a.id, a.name]),
      );
      return {
        organization_id: org.id,
        from,
        to,
        currency: org.currency,
        days: days.map((d) => ({
          day: d.day,
          events: Number(d.events),
          credits: formatAmount(d.credits),
          cost: formatMoney(d.cost),
        })),
        top_agents: top.map(([id, t]) => ({
          agent_id: id,
          agent_name: names.get(id) ?? null,
          events: Number(t.events),
          credits: formatAmount(t.credits),
        })),
      };
    },
  };
}

export type BillingService = ReturnType<typeof createBillingService>;
