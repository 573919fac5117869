import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { PageResponse } from '../../lib/pagination.js';
import { sendTransactions } from '../ledger/ledger.routes.js';
import { BalanceResponse, TransactionResponse, TransactionsQuery } from '../ledger/ledger.schema.js';
import type { LedgerService } from '../ledger/ledger.service.js';
import { OrganizationDetailResponse } from '../organizations/organizations.schema.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import type { MeService } from './me.service.js';

const MembershipView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  slug: Type.String(),
  active: Type.Boolean(),
  parent_id: Type.Union([Type.String(), Type.Null()]),
  role: Type.String(),
  via: Type.Union([Type.Literal('member'), Type.Literal('oversight'), Type.Literal('join_as')], {
    description:
      'member: a membership; oversight: owner/admin of a parent organization; join_as: joined as the role',
  }),
});

export const MeResponse = Type.Object({
  user: Type.Object({
    id: Type.String(),
    name: Type.String(),
    email: Type.String(),
    created_at: Type.String({ format: 'date-time' }),
  }),
  organizations: Type.Array(MembershipView),
  active_organization: Type.Union([MembershipView, Type.Null()]),
  joined_as: Type.Union(
    [
      Type.Object({
        organization_id: Type.String(),
        role: Type.String(),
        return_organization_id: Type.Union([Type.String(), Type.Null()]),
      }),
      Type.Null(),
    ],
    { description: 'Set while the session acts in a sub-organization through "join as"' },
  ),
});

export const meRoutes =
  (me: MeService, organizations: OrganizationsService, ledger: LedgerService): FastifyPluginAsyncTypebox =>
  async (app) => {
    app.get(
      '/api/me',
      {
        schema: {
          tags: ['me'],
          summary: 'The signed-in user, their organizations and roles, and the active organization',
          response: { 200: MeResponse },
        },
      },
      async (req) => me.me(req.ctx),
    );

    app.post(
      '/api/me/active-organization',
      {
        schema: {
          tags: ['me'],
          summary: 'Switch the session’s active organization',
          body: Type.Object(
            { organization_id: Type.String({ minLength: 1, maxLength: 100, description: 'id or slug' }) },
            { additionalProperties: false },
          ),
          response: { 200: MeResponse },
        },
      },
      async (req) => me.switchActive(req.ctx, req.body.organization_id),
    );

    const implicit = ['organization (active)'];
    app.get(
      '/api/organization',
      {
        schema: {
          tags: implicit,
          summary: 'The active organization',
          response: { 200: OrganizationDetailResponse },
        },
      },
      async (req) => organizations.get(req.ctx, await me.activeOrganizationId(req.ctx)),
    );
    app.get(
      '/api/organization/balance',
      {
        schema: {
          tags: implicit,
          summary: 'The active organization’s balance',
          response: { 200: BalanceResponse },
        },
      },
      async (req) => ledger.balance(req.ctx, await me.activeOrganizationId(req.ctx)),
    );
    app.get(
      '/api/organization/transactions',
      {
        schema: {
          tags: implicit,
          summary: 'The active organization’s transactions (?format=csv downloads them)',
          querystring: TransactionsQuery,
          response: { 200: PageResponse(TransactionResponse) },
        },
      },
      async (req, reply) =>
        sendTransactions(reply, ledger, req.ctx, await me.activeOrganizationId(req.ctx), req.query),
    );
  };
