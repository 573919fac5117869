import { defineModule } from '../kernel.js';
import { organizationsRoutes } from './organizations.routes.js';
import { createOrganizationsService, type OrganizationsService } from './organizations.service.js';

declare module '../kernel.js' {
  interface ServiceMap {
    organizations: OrganizationsService;
  }
}

export const organizationsModule = defineModule({
  name: 'organizations',
  create: (k) =>
    createOrganizationsService({ db: k.db, audit: k.audit, hub: k.hub, listen: k.deps.db.listen }),
  routes: (organizations) => organizationsRoutes(organizations),
  limits: { sub_organizations: (organizations, ex, id) => organizations.countChildren(ex, id) },
  start: (organizations) => organizations.start(),
});
