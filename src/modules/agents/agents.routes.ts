import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { PageResponse } from '../../lib/pagination.js';
import {
  AgentParams,
  AgentResponse,
  AssignBody,
  CreateAgentBody,
  ListAgentsQuery,
  UpdateAgentBody,
} from './agents.schema.js';
import type { AgentsService } from './agents.service.js';

const tags = ['agents'];

export const agentsRoutes =
  (agents: AgentsService): FastifyPluginAsyncTypebox =>
  async (app) => {
    app.post(
      '/api/agents',
      {
        schema: {
          tags,
          summary: 'Create an agent in an organization (default: the internal one)',
          body: CreateAgentBody,
          response: { 201: AgentResponse },
        },
      },
      async (req, reply) => reply.status(201).send(await agents.create(req.ctx, req.body)),
    );
    app.get(
      '/api/agents',
      {
        schema: {
          tags,
          summary: 'Agents the caller can see; filter by organization_id',
          querystring: ListAgentsQuery,
          response: { 200: PageResponse(AgentResponse) },
        },
      },
      async (req) => agents.list(req.ctx, req.query),
    );
    app.get(
      '/api/agents/:id',
      {
        schema: {
          tags,
          summary: 'An agent, with its effective billing rate',
          params: AgentParams,
          response: { 200: AgentResponse },
        },
      },
      async (req) => agents.get(req.ctx, req.params.id),
    );
    app.patch(
      '/api/agents/:id',
      {
        schema: {
          tags,
          summary: 'Update an agent; billing_rate (or billingRate) null clears the custom rate',
          params: AgentParams,
          body: UpdateAgentBody,
          response: { 200: AgentResponse },
        },
      },
      async (req) => agents.update(req.ctx, req.params.id, req.body),
    );
    app.delete(
      '/api/agents/:id',
      {
        schema: {
          tags,
          summary: 'Delete an agent (its history stays for billing)',
          params: AgentParams,
          response: { 204: Type.Null() },
        },
      },
      async (req, reply) => {
        await agents.remove(req.ctx, req.params.id);
        return reply.status(204).send(null);
      },
    );
    app.post(
      '/api/agents/:id/assign-org',
      {
        schema: {
          tags,
          summary: 'Assign the agent to an organization, moving it from its current one',
          params: AgentParams,
          body: AssignBody,
          response: { 200: AgentResponse },
        },
      },
      async (req) => agents.assign(req.ctx, req.params.id, req.body.organization_id),
    );
    app.post(
      '/api/agents/:id/unassign-org',
      {
        schema: {
          tags,
          summary: 'Return the agent to the internal organization',
          params: AgentParams,
          response: { 200: AgentResponse },
        },
      },
      async (req) => agents.unassign(req.ctx, req.params.id),
    );
  };
