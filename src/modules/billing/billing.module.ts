import { defineModule } from '../kernel.js';
import { billingRoutes } from './billing.routes.js';
import { type BillingService, createBillingService } from './billing.service.js';

declare module '../kernel.js' {
  interface ServiceMap {
    billing: BillingService;
  }
}

export const billingModule = defineModule({
  name: 'billing',
  create: ({ db, services }) =>
    createBillingService({
      db,
      organizations: services.organizations,
      agents: services.agents,
      ledger: services.ledger,
    }),
  routes: (billing) => billingRoutes(billing),
});
