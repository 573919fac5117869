import type { Permission } from './authz.js';

/**
 * What each API route requires, declared in one table: `public` (no credentials),
 * `authenticated` (any caller; the service narrows what they see), or the permissions required
 * on the route's organization. The app refuses to start if an /api route is missing here, the
 * OpenAPI document publishes each entry as `x-permissions`, and a test walks every route as every
 * role and as an outsider to prove the services enforce exactly this.
 */
export type RouteRequirement = 'public' | 'authenticated' | Permission[];

export const ROUTE_PERMISSIONS: Record<string, RouteRequirement> = {
  'POST /api/organizations': ['organization:create'],
  'GET /api/organizations': 'authenticated',
  'GET /api/organizations/:id': ['organization:read'],
  'PATCH /api/organizations/:id': ['organization:update'],
  'DELETE /api/organizations/:id': ['organization:delete'],
  'POST /api/organizations/:id/toggle': ['organization:toggle'],
  'GET /api/organizations/:id/export': ['organization:export'],
  'GET /api/organizations/:id/audit-log': ['audit_log:read'],

  'POST /api/organizations/:id/credits/add': ['credits:add'],
  'POST /api/organizations/:id/credits/deduct': ['credits:deduct'],
  'POST /api/organizations/:id/credits/transfer': ['credits:transfer'],
  'GET /api/organizations/:id/balance': ['credits:read'],
  'PATCH /api/organizations/:id/credit-settings': ['credits:settings'],
  'GET /api/organizations/:id/transactions': ['credits:read'],
  'POST /api/organizations/:id/holds': ['usage:record'],
  'GET /api/organizations/:id/holds/:holdId': ['credits:read'],
  'POST /api/organizations/:id/holds/:holdId/capture': ['usage:record'],
  'POST /api/organizations/:id/holds/:holdId/release': ['usage:record'],
  'GET /api/organizations/:id/top-ups': ['credits:read'],
  'POST /api/organizations/:id/top-ups/:topUpId/mark-paid': ['top_ups:mark_paid'],
  'GET /api/ledger/verify': ['ledger:verify'],
  'POST /api/usage': ['usage:record'],

  'GET /api/organizations/:id/members': ['members:read'],
  'POST /api/organizations/:id/members': ['members:manage'],
  'PATCH /api/organizations/:id/members/:userId': ['members:manage'],
  'DELETE /api/organizations/:id/members/:userId': ['members:manage'],
  'POST /api/organizations/:id/transfer-ownership': ['members:manage_owners'],

  'GET /api/me': 'authenticated',
  'POST /api/me/active-organization': 'authenticated',
  'GET /api/organization': 'authenticated',
  'GET /api/organization/balance': 'authenticated',
  'GET /api/organization/transactions': 'authenticated',

  'POST /api/organizations/:id/api-keys': ['api_keys:manage'],
  'GET /api/organizations/:id/api-keys': ['api_keys:read'],
  'DELETE /api/organizations/:id/api-keys/:keyId': ['api_keys:manage'],

  'POST /api/organizations/:id/invitations': ['invitations:manage'],
  'GET /api/organizations/:id/invitations': ['invitations:manage'],
  'POST /api/organizations/:id/invitations/:invitationId/resend': ['invitations:manage'],
  'DELETE /api/organizations/:id/invitations/:invitationId': ['invitations:manage'],
  'GET /api/invitations/:token': 'public',
  'POST /api/invitations/:token/accept': 'public',

  'GET /api/dev/mailbox': ['mailbox:read'],
  'POST /api/operator/admin-token/rotate': ['admin_token:rotate'],

  // Agents: the permission applies to the agent's organization (and, to assign, the target's too).
  'POST /api/agents': ['agents:manage'],
  'GET /api/agents': 'authenticated',
  'GET /api/agents/:id': ['agents:read'],
  'PATCH /api/agents/:id': ['agents:manage'],
  'DELETE /api/agents/:id': ['agents:manage'],
  'POST /api/agents/:id/assign-org': ['agents:manage'],
  'POST /api/agents/:id/unassign-org': ['agents:manage'],
  'POST /api/agents/:id/api-keys': ['agents:manage', 'api_keys:manage'],

  'GET /api/organizations/:id/billing-summary': ['billing:read'],
  'GET /api/organizations/:id/billing': ['billing:read'],
  'GET /api/organizations/:id/analytics': ['usage:read'],
  'GET /api/billing-summary': ['billing:read_all'],

  // Teams: the permission applies to the team's organization; a team without one is the operator's.
  'POST /api/teams': ['teams:manage'],
  'GET /api/teams': 'authenticated',
  'GET /api/teams/:id': ['teams:read'],
  'PATCH /api/teams/:id': ['teams:manage'],
  'DELETE /api/teams/:id': ['teams:manage'],
  'POST /api/teams/:id/assign-org': ['teams:manage'],
  'POST /api/teams/:id/unassign-org': ['teams:manage'],

  'GET /api/plans': 'authenticated',
  'GET /api/organizations/:id/subscription': ['subscription:read'],
  'PUT /api/organizations/:id/subscription': ['subscription:manage'],
  'POST /api/organizations/:id/subscription/cancel': ['subscription:manage'],
  'POST /api/organizations/:id/subscription/reactivate': ['subscription:manage'],
  'GET /api/organizations/:id/features': ['features:read'],
  // A sub-organization's grants are its parent's to set: the permission applies to the parent.
  'PUT /api/organizations/:id/features': ['sub_organizations:manage'],

  // Sub-organizations: the permission applies to the parent (:id); :subId is any organization below it.
  'POST /api/organizations/:id/sub-organizations': ['sub_organizations:manage'],
  'GET /api/organizations/:id/sub-organizations': ['sub_organizations:read'],
  'GET /api/organizations/:id/sub-organizations/usage': ['sub_organizations:read'],
  'GET /api/organizations/:id/sub-organizations/:subId/billing': ['sub_organizations:read'],
  'PUT /api/organizations/:id/sub-organizations/:subId/spending-limit': ['sub_organizations:manage'],
  // Detaching hands an organization and its balance out of the tree: the parent's owners only.
  'POST /api/organizations/:id/sub-organizations/:subId/detach': [
    'sub_organizations:manage',
    'members:manage_owners',
  ],
  'POST /api/organizations/:id/sub-organizations/:subId/join-as': ['sub_organizations:manage'],
  'DELETE /api/me/join-as': 'authenticated',

  'GET /api/organizations/:id/customization': ['organization:read'],
  'PUT /api/organizations/:id/customization': ['organization:update'],
  'POST /api/organizations/:id/domains': ['domains:manage'],
  'GET /api/organizations/:id/domains': ['domains:read'],
  'POST /api/organizations/:id/domains/:domainId/verify': ['domains:manage'],
  'DELETE /api/organizations/:id/domains/:domainId': ['domains:manage'],
};
