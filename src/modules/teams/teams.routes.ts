import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { PageResponse } from '../../lib/pagination.js';
import {
  CreateTeamBody,
  ListTeamsQuery,
  TeamResponse,
  type TeamsService,
  UpdateTeamBody,
} from './teams.service.js';

const tags = ['teams'];
const TeamParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });

export const teamsRoutes =
  (teams: TeamsService): FastifyPluginAsyncTypebox =>
  async (app) => {
    app.post(
      '/api/teams',
      {
        schema: {
          tags,
          summary: 'Create a team (in an organization, or — operator only — on its own)',
          body: CreateTeamBody,
          response: { 201: TeamResponse },
        },
      },
      async (req, reply) => reply.status(201).send(await teams.create(req.ctx, req.body)),
    );
    app.get(
      '/api/teams',
      {
        schema: {
          tags,
          summary: 'Teams the caller can see; filter by organization_id',
          querystring: ListTeamsQuery,
          response: { 200: PageResponse(TeamResponse) },
        },
      },
      async (req) => teams.list(req.ctx, req.query),
    );
    app.get(
      '/api/teams/:id',
      {
        schema: {
          tags,
          summary: 'A team, with this month’s spend',
          params: TeamParams,
          response: { 200: TeamResponse },
        },
      },
      async (req) => teams.get(req.ctx, req.params.id),
    );
    app.patch(
      '/api/teams/:id',
      {
        schema: {
          tags,
          summary: 'Rename, describe, or set the monthly budget (null removes it)',
          params: TeamParams,
          body: UpdateTeamBody,
          response: { 200: TeamResponse },
        },
      },
      async (req) => teams.update(req.ctx, req.params.id, req.body),
    );
    app.delete(
      '/api/teams/:id',
      { schema: { tags, summary: 'Delete a team', params: TeamParams, response: { 204: Type.Null() } } },
      async (req, reply) => {
        await teams.remove(req.ctx, req.params.id);
        return reply.status(204).send(null);
      },
    );
    app.post(
      '/api/teams/:id/assign-org',
      {
        schema: {
          tags,
          summary: 'Assign (or move) the team to an organization',
          params: TeamParams,
          body: Type.Object(
            { organization_id: Type.String({ minLength: 1, maxLength: 100 }) },
            { additionalProperties: false },
          ),
          response: { 200: TeamResponse },
        },
      },
      async (req) => teams.assign(req.ctx, req.params.id, req.body.organization_id),
    );
    app.post(
      '/api/teams/:id/unassign-org',
      {
        schema: {
          tags,
          summary: 'Remove the team from its organization (the team remains)',
          params: TeamParams,
          response: { 200: TeamResponse },
        },
      },
      async (req) => teams.unassign(req.ctx, req.params.id),
    );
  };
