import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { Nullable } from '../../lib/schema.js';
import { OrganizationParams } from '../organizations/organizations.schema.js';
import type { DomainsService } from './domains.service.js';

const DomainParams = Type.Object({
  ...OrganizationParams.properties,
  domainId: Type.String({ minLength: 1, maxLength: 100 }),
});

const AddDomainBody = Type.Object(
  {
    domain: Type.String({
      minLength: 3,
      maxLength: 253,
      pattern: '^(?=.{3,253}\\.?$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\\.)+[a-zA-Z]{2,63}\\.?$',
      'x-message': 'must be a domain name such as "agents.example.com"',
    }),
  },
  { additionalProperties: false },
);

const DomainResponse = Type.Object({
  id: Type.String(),
  organization_id: Type.String(),
  domain: Type.String(),
  status: Type.Union([Type.Literal('pending'), Type.Literal('verified')]),
  verification: Type.Object(
    { type: Type.Literal('TXT'), name: Type.String(), value: Type.String() },
    { description: 'Publish this TXT record, then call verify' },
  ),
  verified_at: Nullable(Type.String({ format: 'date-time' })),
  last_checked_at: Nullable(Type.String({ format: 'date-time' })),
  created_at: Type.String({ format: 'date-time' }),
});

export const domainsRoutes =
  (domains: DomainsService): FastifyPluginAsyncTypebox =>
  async (app) => {
    const tags = ['domains'];
    app.post(
      '/api/organizations/:id/domains',
      {
        schema: {
          tags,
          summary: 'Add a custom domain (needs custom_domains); answers with the TXT record that proves it',
          params: OrganizationParams,
          body: AddDomainBody,
          response: { 201: DomainResponse },
        },
      },
      async (req, reply) => reply.status(201).send(await domains.add(req.ctx, req.params.id, req.body)),
    );
    app.get(
      '/api/organizations/:id/domains',
      {
        schema: {
          tags,
          summary: 'The organization’s domains',
          params: OrganizationParams,
          response: {
            200: Type.Object({ data: Type.Array(DomainResponse), next_cursor: Type.Null() }),
          },
        },
      },
      async (req) => domains.list(req.ctx, req.params.id),
    );
    app.post(
      '/api/organizations/:id/domains/:domainId/verify',
      {
        schema: {
          tags,
          summary: 'Look the TXT record up now (409 domain_not_verified until it is published)',
          params: DomainParams,
          response: { 200: DomainResponse },
        },
      },
      async (req) => domains.verify(req.ctx, req.params.id, req.params.domainId),
    );
    app.delete(
      '/api/organizations/:id/domains/:domainId',
      {
        schema: { tags, summary: 'Remove a domain', params: DomainParams },
      },
      async (req, reply) => {
        await domains.remove(req.ctx, req.params.id, req.params.domainId);
        return reply.status(204).send();
      },
    );
  };
