import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { OrganizationParams } from '../organizations/organizations.schema.js';
import {
  ApiKeyResponse,
  type ApiKeysService,
  CreateAgentKeyBody,
  CreateApiKeyBody,
  CreatedApiKeyResponse,
} from './api-keys.service.js';

const tags = ['api keys'];

export const apiKeysRoutes =
  (keys: ApiKeysService): FastifyPluginAsyncTypebox =>
  async (app) => {
    app.post(
      '/api/organizations/:id/api-keys',
      {
        schema: {
          tags,
          summary: 'Create an API key; the secret is returned once',
          params: OrganizationParams,
          body: CreateApiKeyBody,
          response: { 201: CreatedApiKeyResponse },
        },
      },
      async (req, reply) => reply.status(201).send(await keys.create(req.ctx, req.params.id, req.body)),
    );
    app.get(
      '/api/organizations/:id/api-keys',
      {
        schema: {
          tags,
          summary: 'API keys (never their secrets)',
          params: OrganizationParams,
          response: { 200: Type.Object({ data: Type.Array(ApiKeyResponse) }) },
        },
      },
      async (req) => keys.list(req.ctx, req.params.id),
    );
    app.post(
      '/api/agents/:id/api-keys',
      {
        schema: {
          tags,
          summary:
            'Create an agent’s own key: it records usage as that agent, in whichever organization the agent works for',
          params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) }),
          body: CreateAgentKeyBody,
          response: { 201: CreatedApiKeyResponse },
        },
      },
      async (req, reply) =>
        reply.status(201).send(await keys.createForAgent(req.ctx, req.params.id, req.body)),
    );
    app.delete(
      '/api/organizations/:id/api-keys/:keyId',
      {
        schema: {
          tags,
          summary: 'Revoke an API key, at once in every process',
          params: Type.Object({
            id: Type.String({ minLength: 1, maxLength: 100 }),
            keyId: Type.String({ minLength: 1, maxLength: 100 }),
          }),
          response: { 204: Type.Null() },
        },
      },
      async (req, reply) => {
        await keys.revoke(req.ctx, req.params.id, req.params.keyId);
        return reply.status(204).send(null);
      },
    );
  };
