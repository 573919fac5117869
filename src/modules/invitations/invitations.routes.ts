import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Actor } from '../../lib/authz.js';
import { PageQuery, PageResponse } from '../../lib/pagination.js';
import { AppError } from '../../lib/problem.js';
import { OrganizationParams } from '../organizations/organizations.schema.js';
import { acceptPage } from './accept-page.js';
import {
  AcceptInvitationBody,
  CreateInvitationBody,
  InvitationPreviewResponse,
  InvitationResponse,
  type InvitationsService,
} from './invitations.service.js';

const tags = ['invitations'];
const InvitationParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  invitationId: Type.String({ minLength: 1, maxLength: 100 }),
});
const TokenParams = Type.Object({
  token: Type.String({
    minLength: 20,
    maxLength: 100,
    pattern: '^[A-Za-z0-9_-]+$',
    'x-message': 'is not an invitation token',
  }),
});

/** Routes for members of the inviting organization (behind authentication). */
export const invitationsRoutes =
  (invitations: InvitationsService): FastifyPluginAsyncTypebox =>
  async (app) => {
    app.post(
      '/api/organizations/:id/invitations',
      {
        schema: {
          tags,
          summary: 'Invite someone by email with a role; the mail carries the link',
          params: OrganizationParams,
          body: CreateInvitationBody,
          response: { 201: InvitationResponse },
        },
      },
      async (req, reply) =>
        reply.status(201).send(await invitations.create(req.ctx, req.params.id, req.body)),
    );
    app.get(
      '/api/organizations/:id/invitations',
      {
        schema: {
          tags,
          summary: 'Invitations, newest first',
          params: OrganizationParams,
          querystring: Type.Object({ ...PageQuery }, { additionalProperties: false }),
          response: { 200: PageResponse(InvitationResponse) },
        },
      },
      async (req) => invitations.list(req.ctx, req.params.id, req.query),
    );
    app.post(
      '/api/organizations/:id/invitations/:invitationId/resend',
      {
        schema: {
          tags,
          summary: 'Send again with a new link and a new expiry',
          params: InvitationParams,
          response: { 200: InvitationResponse },
        },
      },
      async (req) => invitations.resend(req.ctx, req.params.id, req.params.invitationId),
    );
    app.delete(
      '/api/organizations/:id/invitations/:invitationId',
      {
        schema: {
          tags,
          summary: 'Revoke an invitation',
          params: InvitationParams,
          response: { 204: Type.Null() },
        },
      },
      async (req, reply) => {
        await invitations.revoke(req.ctx, req.params.id, req.params.invitationId);
        return reply.status(204).send(null);
      },
    );
  };

/** The link's routes: public, with an optional session. */
export const invitationLinkRoutes =
  (
    invitations: InvitationsService,
    authenticate: (headers: Record<string, unknown>) => Promise<Actor | undefined>,
  ): FastifyPluginAsyncTypebox =>
  async (app) => {
    app.get(
      '/api/invitations/:token',
      {
        schema: {
          tags,
          summary: 'What an invitation link is for (public; 410 when expired, revoked or used)',
          security: [],
          params: TokenParams,
          response: { 200: InvitationPreviewResponse },
        },
      },
      async (req) => invitations.preview(req.params.token),
    );
    app.get('/invitations/:token', { schema: { hide: true, params: TokenParams } }, async (req, reply) => {
      // The page's inline script and style run under its CSP through this response's nonces.
      const nonce = reply.htmlPage();
      const invitation = await invitations.preview(req.params.token).catch((err: unknown) => {
        if (err instanceof AppError) return err;
        throw err;
      });
      reply.type('text/html; charset=utf-8').header('cache-control', 'no-store');
      if (invitation instanceof AppError)
        return reply
          .status(invitation.status)
          .send(acceptPage({ token: req.params.token, problem: invitation.message, nonce }));
      return reply.send(acceptPage({ token: req.params.token, invitation, nonce }));
    });
    app.post(
      '/api/invitations/:token/accept',
      {
        schema: {
          tags,
          summary:
            'Accept: signed in with the invited email, or sign up through the link with name and password',
          security: [],
          params: TokenParams,
          body: AcceptInvitationBody,
          response: {
            200: Type.Object({ organization_id: Type.String(), user_id: Type.String(), role: Type.String() }),
          },
        },
      },
      async (req, reply) => {
        const actor = await authenticate(req.headers);
        const { result, sessionHeaders } = await invitations.accept(
          actor ? { actor, requestId: req.id } : undefined,
          req.params.token,
          req.body,
        );
        const token = sessionHeaders?.get('set-auth-token');
        if (token) reply.header('set-auth-token', token);
        const cookies = sessionHeaders?.getSetCookie() ?? [];
        if (cookies.length) reply.header('set-cookie', cookies);
        return result;
      },
    );
  };
