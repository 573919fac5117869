import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { PageResponse } from '../../lib/pagination.js';
import { AuditEventResponse } from '../audit/audit.service.js';
import {
  AuditLogQuery,
  CreateOrganizationBody,
  ListOrganizationsQuery,
  OrganizationDetailResponse,
  OrganizationListResponse,
  OrganizationParams,
  OrganizationResponse,
  UpdateOrganizationBody,
} from './organizations.schema.js';
import type { OrganizationsService } from './organizations.service.js';

const tags = ['organizations'];

export const organizationsRoutes =
  (organizations: OrganizationsService): FastifyPluginAsyncTypebox =>
  async (app) => {
    app.post(
      '/api/organizations',
      {
        schema: {
          tags,
          summary: 'Create an organization',
          body: CreateOrganizationBody,
          response: { 201: OrganizationResponse },
        },
      },
      async (req, reply) => reply.status(201).send(await organizations.create(req.ctx, req.body)),
    );

    app.get(
      '/api/organizations',
      {
        schema: {
          tags,
          summary: 'List organizations, newest first',
          querystring: ListOrganizationsQuery,
          response: { 200: OrganizationListResponse },
        },
      },
      async (req) => organizations.list(req.ctx, req.query),
    );

    app.get(
      '/api/organizations/:id',
      {
        schema: {
          tags,
          summary: 'Get an organization by id or slug',
          params: OrganizationParams,
          response: { 200: OrganizationDetailResponse },
        },
      },
      async (req) => organizations.get(req.ctx, req.params.id),
    );

    app.patch(
      '/api/organizations/:id',
      {
        schema: {
          tags,
          summary: 'Update an organization',
          params: OrganizationParams,
          body: UpdateOrganizationBody,
          response: { 200: OrganizationResponse },
        },
      },
      async (req) => organizations.update(req.ctx, req.params.id, req.body ?? {}),
    );

    app.post(
      '/api/organizations/:id/toggle',
      {
        schema: {
          tags,
          summary: 'Toggle an organization between active and inactive',
          params: OrganizationParams,
          response: { 200: OrganizationResponse },
        },
      },
      async (req) => organizations.toggle(req.ctx, req.params.id),
    );

    app.delete(
      '/api/organizations/:id',
      {
        schema: {
          tags,
          summary: 'Delete an organization (its ledger and audit records are kept)',
          params: OrganizationParams,
          response: { 204: Type.Null() },
        },
      },
      async (req, reply) => {
        await organizations.remove(req.ctx, req.params.id);
        return reply.status(204).send(null);
      },
    );

    app.get(
      '/api/organizations/:id/export',
      {
        schema: {
          tags,
          summary: 'Export everything the organization owns as one JSON document',
          params: OrganizationParams,
        },
      },
      async (req, reply) => {
        const doc = await organizations.exportData(req.ctx, req.params.id);
        return reply
          .header('content-disposition', `attachment; filename="${doc.organization.slug}-export.json"`)
          .send(doc);
      },
    );

    app.get(
      '/api/organizations/:id/audit-log',
      {
        schema: {
          tags,
          summary: 'The audit log of an organization, newest first',
          params: OrganizationParams,
          querystring: AuditLogQuery,
          response: { 200: PageResponse(AuditEventResponse) },
        },
      },
      async (req) => organizations.auditLog(req.ctx, req.params.id, req.query),
    );
  };
