import { defineModule } from '../kernel.js';
import { subOrganizationsRoutes } from './sub-organizations.routes.js';
import { createSubOrganizationsService, type SubOrganizationsService } from './sub-organizations.service.js';

declare module '../kernel.js' {
  interface ServiceMap {
    subOrganizations: SubOrganizationsService;
  }
}

export const subOrganizationsModule = defineModule({
  name: 'subOrganizations',
  create: ({ db, audit, services }) =>
    createSubOrganizationsService({
      db,
      audit,
      organizations: services.organizations,
      members: services.members,
      ledger: services.ledger,
      plans: services.plans,
      features: services.features,
      me: services.me,
    }),
  routes: (subOrganizations) => subOrganizationsRoutes(subOrganizations),
  guards: {
    'credit_settings.change': (subOrganizations, _ex, ctx, id, policy) =>
      subOrganizations.guardSpendingLimit(ctx, id, policy),
  },
});
