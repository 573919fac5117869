import { defineModule } from '../kernel.js';
import { membersRoutes } from './members.routes.js';
import { createMembersService, type MembersService } from './members.service.js';

declare module '../kernel.js' {
  interface ServiceMap {
    members: MembersService;
  }
}

export const membersModule = defineModule({
  name: 'members',
  create: ({ db, audit, hub, services }) =>
    createMembersService({
      db,
      audit,
      organizations: services.organizations,
      capacity: services.plans.assertCapacity,
      events: hub.events,
    }),
  routes: (members) => membersRoutes(members),
  on: {
    // The creator becomes the owner.
    'organization.created': async (members, tx, e, ctx) => {
      if (ctx) await members.onOrganizationCreated(tx, e.organization_id, ctx);
    },
    'organization.deleted': (members, tx, e) => members.onOrganizationDeleted(tx, e.organization_id),
  },
  guards: { 'organization.delete': (members, tx, id) => members.refuseDeletingLastOrganization(tx, id) },
  views: {
    organizationDetail: async (members, ex, id) => ({ member_count: await members.countMembers(ex, id) }),
    organizationCounts: (members, ex, ids) => members.listCounts(ex, ids),
    organizationExport: (members, ex, id) => members.exportSection(ex, id),
  },
  limits: { members: (members, ex, id) => members.countMembers(ex, id) },
});
