import { defineModule } from '../kernel.js';
import { teamsRoutes } from './teams.routes.js';
import { createTeamsService, type TeamsService } from './teams.service.js';

declare module '../kernel.js' {
  interface ServiceMap {
    teams: TeamsService;
  }
}

export const teamsModule = defineModule({
  name: 'teams',
  create: ({ db, audit, services }) =>
    createTeamsService({ db, audit, organizations: services.organizations }),
  routes: (teams) => teamsRoutes(teams),
  on: { 'organization.deleted': (teams, tx, e) => teams.onOrganizationDeleted(tx, e.organization_id) },
  views: {
    organizationDetail: (teams, ex, id) => teams.details(ex, id),
    organizationCounts: (teams, ex, ids) => teams.listCounts(ex, ids),
  },
});
