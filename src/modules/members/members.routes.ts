import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { PageResponse } from '../../lib/pagination.js';
import { OrganizationParams } from '../organizations/organizations.schema.js';
import {
  AddMemberBody,
  MemberParams,
  MemberResponse,
  MembersQuery,
  TransferOwnershipBody,
  UpdateMemberBody,
} from './members.schema.js';
import type { MembersService } from './members.service.js';

const tags = ['members'];

export const membersRoutes =
  (members: MembersService): FastifyPluginAsyncTypebox =>
  async (app) => {
    app.get(
      '/api/organizations/:id/members',
      {
        schema: {
          tags,
          summary: 'Members and their roles',
          params: OrganizationParams,
          querystring: MembersQuery,
          response: { 200: PageResponse(MemberResponse) },
        },
      },
      async (req) => members.list(req.ctx, req.params.id, req.query),
    );
    app.post(
      '/api/organizations/:id/members',
      {
        schema: {
          tags,
          summary:
            'Add someone already in this organization’s tree with a role (403 invitation_required otherwise)',
          params: OrganizationParams,
          body: AddMemberBody,
          response: { 201: MemberResponse },
        },
      },
      async (req, reply) => reply.status(201).send(await members.add(req.ctx, req.params.id, req.body)),
    );
    app.patch(
      '/api/organizations/:id/members/:userId',
      {
        schema: {
          tags,
          summary: 'Change a member’s role (409 last_owner when it would leave no owner)',
          params: MemberParams,
          body: UpdateMemberBody,
          response: { 200: MemberResponse },
        },
      },
      async (req) => members.changeRole(req.ctx, req.params.id, req.params.userId, req.body.role),
    );
    app.delete(
      '/api/organizations/:id/members/:userId',
      {
        schema: {
          tags,
          summary: 'Remove a member, or leave (`me`)',
          params: MemberParams,
          response: { 204: Type.Null() },
        },
      },
      async (req, reply) => {
        await members.remove(req.ctx, req.params.id, req.params.userId);
        return reply.status(204).send(null);
      },
    );
    app.post(
      '/api/organizations/:id/transfer-ownership',
      {
        schema: {
          tags,
          summary: 'Make another member the owner; the current owner becomes an admin',
          params: OrganizationParams,
          body: TransferOwnershipBody,
          response: { 200: MemberResponse },
        },
      },
      async (req) => members.transferOwnership(req.ctx, req.params.id, req.body.user_id),
    );
  };
