import { defineModule } from '../kernel.js';
import { createDnsResolver } from './dns.js';
import { domainsRoutes } from './domains.routes.js';
import { createDomainsService, type DomainsService } from './domains.service.js';

declare module '../kernel.js' {
  interface ServiceMap {
    domains: DomainsService;
  }
}

export const domainsModule = defineModule({
  name: 'domains',
  create: ({ db, audit, deps, services }) =>
    createDomainsService({
      db,
      audit,
      organizations: services.organizations,
      features: services.features,
      resolver: deps.resolver ?? createDnsResolver({ servers: deps.dnsServers ?? [] }),
    }),
  routes: (domains) => domainsRoutes(domains),
  on: { 'organization.deleted': (domains, tx, e) => domains.onOrganizationDeleted(tx, e.organization_id) },
  views: { organizationExport: (domains, ex, id) => domains.exportSection(ex, id) },
});
