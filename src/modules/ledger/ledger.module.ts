import { defineModule, runGuards } from '../kernel.js';
import { maxOverdraftOf, planOf } from '../plans/plans.catalog.js';
import { ledgerRoutes } from './ledger.routes.js';
import { createLedgerService, type LedgerService } from './ledger.service.js';
import { createInvoiceProvider } from './payments.js';

declare module '../kernel.js' {
  interface ServiceMap {
    ledger: LedgerService;
  }
}

export const ledgerModule = defineModule({
  name: 'ledger',
  create: ({ db, audit, hub, deps, log, services }) => {
    const ledger = createLedgerService({
      db,
      prepared: deps.db.prepared,
      organizations: services.organizations,
      payments: deps.payments ?? createInvoiceProvider(),
      // Lanes overlap commits, each holding a connection while it runs. A few are enough: the
      // process decides one batch at a time, and fewer lanes make larger batches (two measured
      // best on a 2-core machine, against one, three or six). At least one connection stays for
      // reads; PGlite has one connection, so one lane.
      lanes: Math.max(1, Math.min(deps.ledgerLanes ?? 2, deps.db.poolSize - 1)),
      // Read when a usage event names an agent; the agents module is built after this one.
      agentOrganizations: (ids) => services.agents.organizationsOf(ids),
      audit,
      events: hub.events,
      log,
    });
    ledger.guardSettings((ctx, id, policy) => runGuards(hub, 'credit_settings.change', db, ctx, id, policy));
    return ledger;
  },
  routes: (ledger) => ledgerRoutes(ledger),
  on: {
    'organization.created': (ledger, tx, e) => ledger.openAccount(tx, e.organization_id),
    'subscription.changed': async (ledger, tx, e, ctx) => {
      const plan = planOf(e.to);
      await ledger.setUsageEventsLimit(tx, e.organization_id, plan.limits.monthly_usage_events);
      // At creation there is nothing to lower: the new account has no overdraft.
      if (ctx && e.from !== null) await ledger.capOverdraft(tx, ctx, e.organization_id, maxOverdraftOf(plan));
    },
    'features.changed': async (ledger, tx, e, ctx) => {
      if (ctx && !e.features.includes('allow_overdraft'))
        await ledger.withdrawOverdraft(tx, ctx, [e.organization_id]);
    },
  },
  views: { organizationExport: (ledger, ex, id) => ledger.exportSection(ex, id) },
  limits: { monthly_usage_events: (ledger, ex, id) => ledger.monthUsageEvents(ex, id) },
  jobs: {
    'hold expiry': (ledger) => ledger.expireDueHolds(),
    'top-up start': (ledger) => ledger.startPendingTopUps(),
  },
});
