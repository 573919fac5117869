import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { OrganizationParams, OrganizationResponse } from '../organizations/organizations.schema.js';
import {
  CreateSubOrganizationBody,
  DetachBody,
  JoinAsBody,
  JoinAsResponse,
  SpendingLimitBody,
  SubOrganizationBillingResponse,
  SubOrganizationList,
  SubOrganizationParams,
  SubOrganizationsQuery,
  TreeUsageQuery,
  TreeUsageResponse,
} from './sub-organizations.schema.js';
import type { SubOrganizationsService } from './sub-organizations.service.js';

export const subOrganizationsRoutes =
  (subs: SubOrganizationsService): FastifyPluginAsyncTypebox =>
  async (app) => {
    const tags = ['sub-organizations'];
    app.post(
      '/api/organizations/:id/sub-organizations',
      {
        schema: {
          tags,
          summary:
            'Create a sub-organization (the parent needs the sub_organizations feature: Business or Enterprise)',
          params: OrganizationParams,
          body: CreateSubOrganizationBody,
          response: { 201: OrganizationResponse },
        },
      },
      async (req, reply) => reply.status(201).send(await subs.create(req.ctx, req.params.id, req.body)),
    );
    app.get(
      '/api/organizations/:id/sub-organizations',
      {
        schema: {
          tags,
          summary: 'Direct sub-organizations: name, plan, balance, member count',
          params: OrganizationParams,
          querystring: SubOrganizationsQuery,
          response: { 200: SubOrganizationList },
        },
      },
      async (req) => subs.list(req.ctx, req.params.id, req.query),
    );
    app.get(
      '/api/organizations/:id/sub-organizations/usage',
      {
        schema: {
          tags,
          summary: 'Usage of the organization and every organization below it over a date range',
          params: OrganizationParams,
          querystring: TreeUsageQuery,
          response: { 200: TreeUsageResponse },
        },
      },
      async (req) => subs.treeUsage(req.ctx, req.params.id, req.query),
    );
    app.get(
      '/api/organizations/:id/sub-organizations/:subId/billing',
      {
        schema: {
          tags,
          summary: 'A sub-organization’s billing summary',
          params: SubOrganizationParams,
          response: { 200: SubOrganizationBillingResponse },
        },
      },
      async (req) => subs.billing(req.ctx, req.params.id, req.params.subId),
    );
    app.put(
      '/api/organizations/:id/sub-organizations/:subId/spending-limit',
      {
        schema: {
          tags,
          summary: 'Set (or, with null, lift) a sub-organization’s monthly spending limit',
          params: SubOrganizationParams,
          body: SpendingLimitBody,
          response: { 200: SubOrganizationBillingResponse },
        },
      },
      async (req) =>
        subs.setSpendingLimit(req.ctx, req.params.id, req.params.subId, req.body.monthly_spending_limit),
    );
    app.post(
      '/api/organizations/:id/sub-organizations/:subId/detach',
      {
        schema: {
          tags,
          summary: 'Make a direct sub-organization independent (its own plan: free unless given)',
          params: SubOrganizationParams,
          body: DetachBody,
          response: { 200: OrganizationResponse },
        },
      },
      async (req) => subs.detach(req.ctx, req.params.id, req.params.subId, req.body ?? {}),
    );
    app.post(
      '/api/organizations/:id/sub-organizations/:subId/join-as',
      {
        schema: {
          tags,
          summary: 'Switch this session into a sub-organization with a role (audited as you)',
          params: SubOrganizationParams,
          body: JoinAsBody,
          response: { 200: JoinAsResponse },
        },
      },
      async (req) => subs.joinAs(req.ctx, req.params.id, req.params.subId, req.body.role),
    );
    app.delete(
      '/api/me/join-as',
      {
        schema: {
          tags: ['me'],
          summary: 'Leave the organization joined with "join as" and return to where the session was',
          response: { 200: JoinAsResponse },
        },
      },
      async (req) => subs.leaveJoin(req.ctx),
    );
  };
