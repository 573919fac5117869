import { defineModule } from '../kernel.js';
import { plansRoutes } from './plans.routes.js';
import { createPlansService, type PlansService } from './plans.service.js';

declare module '../kernel.js' {
  interface ServiceMap {
    plans: PlansService;
  }
}

export const plansModule = defineModule({
  name: 'plans',
  create: ({ db, audit, hub, deps, services }) =>
    createPlansService({
      db,
      audit,
      organizations: services.organizations,
      features: services.features,
      counters: hub.limits,
      events: hub.events,
      // Asked when an account creates an organization; the members module is built after this one.
      ownedBy: (ex, userId) => services.members.ownedBy(ex, userId),
      planChanges: deps.planChanges ?? 'operator',
    }),
  routes: (plans, { services }) => plansRoutes(plans, services.features),
  on: {
    'organization.created': (plans, tx, e) => plans.onOrganizationCreated(tx, e.organization_id),
  },
  guards: {
    'organization.create': (plans, tx, ctx) => plans.assertOrganizationCapacity(tx, ctx),
    'credit_settings.change': async (plans, ex, _ctx, id, policy) => {
      if (policy.overdraft_limit !== undefined)
        await plans.assertOverdraftLimit(ex, id, policy.overdraft_limit);
    },
  },
  jobs: { 'subscription renewal': (plans) => plans.renewDue() },
});
