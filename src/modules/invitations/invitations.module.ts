import type { IncomingHttpHeaders } from 'node:http';
import { defineModule } from '../kernel.js';
import { invitationLinkRoutes, invitationsRoutes } from './invitations.routes.js';
import { createInvitationsService, type InvitationsService } from './invitations.service.js';

declare module '../kernel.js' {
  interface ServiceMap {
    invitations: InvitationsService;
  }
}

export const invitationsModule = defineModule({
  name: 'invitations',
  create: ({ db, audit, deps, services }) =>
    createInvitationsService({
      db,
      audit,
      organizations: services.organizations,
      members: services.members,
      auth: services.auth,
      me: services.me,
      mail: services.mail,
      publicUrl: deps.publicUrl ?? 'http://127.0.0.1:3000',
    }),
  routes: (invitations) => invitationsRoutes(invitations),
  // The link's page and its accept, reached signed in or not.
  publicRoutes: (invitations, { services }) =>
    invitationLinkRoutes(invitations, (headers) =>
      services.identity.identify(headers as IncomingHttpHeaders),
    ),
  on: {
    'organization.deleted': (invitations, tx, e) => invitations.onOrganizationDeleted(tx, e.organization_id),
  },
  views: { organizationExport: (invitations, ex, id) => invitations.exportSection(ex, id) },
});
