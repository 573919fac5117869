/**
 * The invitations module owns `invitations`: invitations by email to join an organization with a
 * role. Rules: the token is mailed and never stored (only its SHA-256), so not even the inviter can
 * accept in the invitee's place; an invitation is single use and expires after 7 days (expired,
 * revoked or used tokens answer 410); an address has at most one pending invitation per
 * organization; owner-role invitations take `members:manage_owners`. Joining goes through the
 * members module, accounts through the auth module.
 */
import { createHash, randomBytes } from 'node:crypto';
import { type Static, Type } from 'typebox';
import type { Db, Executor, Tx } from '../../db/client.js';
import { authorize, type RequestContext, type Role } from '../../lib/authz.js';
import { newId } from '../../lib/ids.js';
import { DEFAULT_LIMIT, decodeCursor, type Page, toPage } from '../../lib/pagination.js';
import { AppError, invalidField } from '../../lib/problem.js';
import type { AuditService } from '../audit/audit.service.js';
import { type AuthService, accountById } from '../auth/auth.service.js';
import type { MailService } from '../mail/mail.service.js';
import type { MeService } from '../me/me.service.js';
import { RoleSchema } from '../members/members.schema.js';
import type { MembersService } from '../members/members.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import { invitationEmail } from './invitation-email.js';
import * as repo from './invitations.repo.js';

export const INVITATION_TTL_MS = 7 * 24 * 3600 * 1000;

export const CreateInvitationBody = Type.Object(
  { email: Type.String({ maxLength: 254, format: 'email' }), role: RoleSchema },
  { additionalProperties: false },
);

export const AcceptInvitationBody = Type.Object(
  {
    name: Type.Optional(
      Type.String({ minLength: 1, maxLength: 200, pattern: '\\S', 'x-message': 'must not be blank' }),
    ),
    password: Type.Optional(Type.String({ minLength: 8, maxLength: 128 })),
  },
  {
    additionalProperties: false,
    description: 'Signed in: no body. Not signed in: name and password create the account',
  },
);

export const InvitationResponse = Type.Object({
  id: Type.String(),
  organization_id: Type.String(),
  email: Type.String(),
  role: Type.String(),
  status: Type.Union([
    Type.Literal('pending'),
    Type.Literal('accepted'),
    Type.Literal('revoked'),
    Type.Literal('expired'),
  ]),
  expires_at: Type.String({ format: 'date-time' }),
  sent_count: Type.Integer(),
  last_sent_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  created_at: Type.String({ format: 'date-time' }),
});

export const InvitationPreviewResponse = Type.Object({
  organization: Type.Object({
    id: Type.String(),
    name: Type.String(),
    slug: Type.String(),
    branding: Type.Record(Type.String(), Type.Unknown()),
  }),
  email: Type.String(),
  role: Type.String(),
  expires_at: Type.String({ format: 'date-time' }),
});

type Row = repo.InvitationRow;

function statusOf(r: Row, now = new Date()): Static<typeof InvitationResponse>['status'] {
  if (r.status === 'pending' && r.expires_at <= now) return 'expired';
  return r.status as 'pending' | 'accepted' | 'revoked';
}

function view(r: Row): Static<typeof InvitationResponse> {
  return {
    id: r.id,
    organization_id: r.organization_id,
    email: r.email,
    role: r.role,
    status: statusOf(r),
    expires_at: r.expires_at.toISOString(),
    sent_count: r.sent_count,
    last_sent_at: r.last_sent_at?.toISOString() ?? null,
    created_at: r.created_at.toISOString(),
  };
}

const hash = (token: string) => createHash('sha256').update(token).digest('hex');
const newToken = () => randomBytes(32).toString('base64url');

/** Invitations: created, listed, resent and revoked by the organization; previewed and accepted by link. */
export function createInvitationsService(deps: {
  db: Db;
  audit: AuditService;
  organizations: OrganizationsService;
  members: MembersService;
  auth: AuthService;
  me: MeService;
  mail: MailService;
  publicUrl: string;
}) {
  const { db, audit, organizations } = deps;

  async function send(
    ex: Executor,
    org: { id: string; name: string; branding: Record<string, unknown> },
    email: string,
    role: string,
    token: string,
    inviter: string | null,
  ) {
    const base = deps.publicUrl.replace(/\/$/, '');
    const content = invitationEmail({
      organization: org,
      role,
      inviter,
      acceptUrl: `${base}/invitations/${token}`,
      apiUrl: `${base}/api/invitations/${token}/accept`,
    });
    await deps.mail.send({ to: email, ...content }, ex);
  }

  async function inviterName(ctx: RequestContext): Promise<string | null> {
    if (ctx.actor.type !== 'user') return null;
    return (await accountById(db, ctx.actor.id))?.name ?? null;
  }

  /**
   * An owner-role invitation makes an owner, which takes `members:manage_owners`: so does
   * sending it again or revoking it, not just creating it. 404 when there is no such invitation.
   * Returns its role and status, its row locked until the transaction ends.
   */
  async function authorizeExisting(
    ctx: RequestContext,
    tx: Tx,
    organizationId: string,
    invitationId: string,
  ) {
    const row = await repo.findInvitationForUpdate(tx, organizationId, invitationId);
    if (!row) throw new AppError('not_found', 'No such invitation');
    if (row.role === 'owner') authorize(ctx, ['invitations:manage', 'members:manage_owners'], organizationId);
    return row;
  }

  /** The pending, unexpired invitation behind a token, or 410. */
  async function usable(token: string) {
    const row = await repo.findInvitationByTokenHash(db, hash(token));
    if (!row) throw new AppError('not_found', 'No such invitation');
    if (statusOf(row) !== 'pending')
      throw new AppError('invitation_gone', `The invitation is ${statusOf(row)}`);
    return row;
  }

  return {
    async exportSection(ex: Executor, organizationId: string) {
      return { invitations: (await repo.findInvitationsOf(ex, organizationId)).map(view) };
    },

    /** An organization's pending invitations die with it. */
    async onOrganizationDeleted(tx: Tx, organizationId: string) {
      await repo.updatePendingRevoked(tx, organizationId);
    },

    async create(ctx: RequestContext, idOrSlug: string, body: Static<typeof CreateInvitationBody>) {
      const org = await organizations.load(db, idOrSlug);
      authorize(
        ctx,
        body.role === 'owner' ? ['invitations:manage', 'members:manage_owners'] : ['invitations:manage'],
        org.id,
      );
      const email = body.email.toLowerCase();
      if (await deps.members.hasMemberWithEmail(db, org.id, email))
        throw new AppError('already_member', `${email} is already a member`);
      const token = newToken();
      const inviter = await inviterName(ctx);
      // The mail goes out inside the transaction: if it cannot be sent, no invitation exists
      // (a retry is not blocked by a pending one nobody received).
      const row = await db.transaction().execute(async (tx) => {
        await deps.members.checkCapacity(tx, org.id);
        // An expired pending invitation no longer blocks a new one.
        await repo.updatePendingRevoked(tx, org.id, { expiredFor: email });
        const inserted = await repo.insertInvitation(tx, {
          organization_id: org.id,
          id: newId('inv'),
          email,
          role: body.role,
          token_hash: hash(token),
          invited_by: ctx.actor.id,
          expires_at: new Date(Date.now() + INVITATION_TTL_MS),
        });
        if (!inserted)
          throw new AppError(
            'invitation_pending',
            `${email} already has a pending invitation; resend it instead`,
          );
        await audit.record(tx, ctx, {
          organizationId: org.id,
          action: 'invitation.created',
          targetType: 'invitation',
          targetId: inserted.id,
          changes: { email: { before: null, after: email }, role: { before: null, after: body.role } },
        });
        await send(tx, org, email, body.role, token, inviter);
        return inserted;
      });
      return view(row);
    },

    async list(
      ctx: RequestContext,
      idOrSlug: string,
      query: { limit?: number; cursor?: string },
    ): Promise<Page<Static<typeof InvitationResponse>>> {
      const org = await organizations.load(db, idOrSlug);
      authorize(ctx, ['invitations:manage'], org.id);
      const limit = query.limit ?? DEFAULT_LIMIT;
      const rows = await repo.findInvitationsPage(db, org.id, {
        beforeId: decodeCursor(query.cursor),
        limit: limit + 1,
      });
      return toPage(rows, limit, (r) => r.id, view);
    },

    /** Sends again with a fresh token and a fresh 7 days; the old link stops working. */
    async resend(ctx: RequestContext, idOrSlug: string, invitationId: string) {
      const org = await organizations.load(db, idOrSlug);
      authorize(ctx, ['invitations:manage'], org.id);
      const token = newToken();
      const inviter = await inviterName(ctx);
      const row = await db.transaction().execute(async (tx) => {
        // Locked: it stays as read until the update below.
        const existing = await authorizeExisting(ctx, tx, org.id, invitationId);
        if (existing.status !== 'pending')
          throw new AppError('invitation_gone', `The invitation is ${existing.status}`);
        const updated = (await repo.updateInvitationResent(tx, org.id, invitationId, {
          token_hash: hash(token),
          expires_at: new Date(Date.now() + INVITATION_TTL_MS),
        })) as Row;
        await send(tx, org, updated.email, updated.role, token, inviter);
        return updated;
      });
      return view(row);
    },

    async revoke(ctx: RequestContext, idOrSlug: string, invitationId: string) {
      const org = await organizations.load(db, idOrSlug);
      authorize(ctx, ['invitations:manage'], org.id);
      await db.transaction().execute(async (tx) => {
        // Locked: it stays as read until the update below. Revoking what is no longer pending
        // changes nothing.
        const existing = await authorizeExisting(ctx, tx, org.id, invitationId);
        if (existing.status !== 'pending') return;
        await repo.updateInvitationRevoked(tx, org.id, invitationId);
        await audit.record(tx, ctx, {
          organizationId: org.id,
          action: 'invitation.revoked',
          targetType: 'invitation',
          targetId: invitationId,
        });
      });
    },

    /** What the link shows before accepting: which organization, which role. Public. */
    async preview(token: string) {
      const row = await usable(token);
      const org = await organizations.load(db, row.organization_id);
      return {
        organization: { id: org.id, name: org.name, slug: org.slug, branding: org.branding },
        email: row.email,
        role: row.role,
        expires_at: row.expires_at.toISOString(),
      };
    },

    /**
     * Accepts: a signed-in user whose email matches joins; someone without an account signs up
     * through the link (name + password) and joins. Either way the organization becomes active.
     * Returns the headers of a new session when one was created.
     */
    async accept(ctx: RequestContext | undefined, token: string, body: Static<typeof AcceptInvitationBody>) {
      const row = await usable(token);
      // Before an account is made for the invitee: a full organization refuses now, not after
      // the sign-up (the check repeats under lock when the member is added).
      await db.transaction().execute((tx) => deps.members.checkCapacity(tx, row.organization_id));
      let userId: string;
      let sessionId: string | null = null;
      let sessionHeaders: Headers | undefined;
      if (ctx) {
        if (ctx.actor.type !== 'user')
          throw new AppError('forbidden', 'Invitations are accepted by people, not keys');
        const me = await accountById(db, ctx.actor.id);
        if (!me) throw new AppError('unauthenticated', 'The account is gone');
        if (me.email.toLowerCase() !== row.email)
          throw new AppError('email_mismatch', `This invitation is for ${row.email}`);
        userId = me.id;
        sessionId = ctx.actor.sessionId;
      } else {
        if (!body.name) throw invalidField('name', 'is required to create your account');
        if (!body.password) throw invalidField('password', 'is required to create your account');
        const created = await deps.auth.signUp({
          email: row.email,
          name: body.name,
          password: body.password,
        });
        userId = created.userId;
        sessionId = created.sessionId;
        // auth.signUp marks the address verified: the invitation mail reached it.
        sessionHeaders = created.headers;
      }
      const joinCtx: RequestContext = ctx ?? {
        actor: { type: 'user', id: userId, sessionId, roles: new Map() },
        requestId: 'invitation',
      };
      await db.transaction().execute(async (tx) => {
        if (!(await repo.updateInvitationAccepted(tx, row.organization_id, row.id, userId)))
          throw new AppError('invitation_gone', 'The invitation was used or revoked meanwhile');
        await deps.members
          .addExisting(tx, joinCtx, row.organization_id, userId, row.role as Role)
          .catch((err: unknown) => {
            if (!(err instanceof AppError && err.code === 'already_member')) throw err;
          });
      });
      if (sessionId) await deps.me.setActive(sessionId, row.organization_id);
      return {
        result: { organization_id: row.organization_id, user_id: userId, role: row.role },
        sessionHeaders,
      };
    },
  };
}

export type InvitationsService = ReturnType<typeof createInvitationsService>;
