import { defineModule } from '../kernel.js';
import { agentsRoutes } from './agents.routes.js';
import { type AgentsService, createAgentsService } from './agents.service.js';

declare module '../kernel.js' {
  interface ServiceMap {
    agents: AgentsService;
  }
}

export const agentsModule = defineModule({
  name: 'agents',
  create: ({ db, audit, hub, services }) =>
    createAgentsService({
      db,
      audit,
      organizations: services.organizations,
      events: hub.events,
      capacity: services.plans.assertCapacity,
    }),
  routes: (agents) => agentsRoutes(agents),
  guards: { 'organization.delete': (agents, tx, id) => agents.refuseDeletionWithAgents(tx, id) },
  views: {
    organizationDetail: (agents, ex, id) => agents.details(ex, id),
    organizationCounts: (agents, ex, ids) => agents.listCounts(ex, ids),
    organizationExport: (agents, ex, id) => agents.exportSection(ex, id),
  },
  limits: { agents: (agents, ex, id) => agents.countAgents(ex, id) },
});
