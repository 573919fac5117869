import { defineModule } from '../kernel.js';
import { apiKeysRoutes } from './api-keys.routes.js';
import { type ApiKeysService, createApiKeysService } from './api-keys.service.js';

declare module '../kernel.js' {
  interface ServiceMap {
    apiKeys: ApiKeysService;
  }
}

export const apiKeysModule = defineModule({
  name: 'apiKeys',
  create: ({ deps, audit, services }) =>
    createApiKeysService({
      db: deps.db,
      audit,
      organizations: services.organizations,
      agents: services.agents,
      failuresPerPrefix: deps.rateLimit?.perIp ?? 1200,
    }),
  routes: (apiKeys) => apiKeysRoutes(apiKeys),
  on: {
    // An agent's keys follow it, and go with it.
    'agent.assigned': (apiKeys, tx, e) => apiKeys.onAgentMoved(tx, e.agent_id, e.organization_id),
    'agent.deleted': (apiKeys, tx, e) => apiKeys.onAgentDeleted(tx, e.agent_id),
    'organization.deleted': (apiKeys, tx, e) => apiKeys.onOrganizationDeleted(tx, e.organization_id),
  },
  views: { organizationExport: (apiKeys, ex, id) => apiKeys.exportSection(ex, id) },
  start: (apiKeys) => apiKeys.start(),
});
