/**
 * The auth module owns the accounts: `users`, `sessions`, `accounts` and `verifications` (written
 * by Better Auth, which hashes passwords and issues sessions: never our own crypto) and
 * `platform_settings` (the generated signing secret). Other modules read accounts only through
 * `accountById` / `accountByEmail` below. Rules: sign-up creates the user's personal organization
 * with them as owner; every new session starts with an active organization; failed sign-ins and
 * account mail are limited per account.
 */
import { randomBytes } from 'node:crypto';
import { betterAuth } from 'better-auth';
import { createAuthMiddleware } from 'better-auth/api';
import type { SignUpPolicy } from '../../config.js';
import type { Db, Executor, Tx } from '../../db/client.js';
import { createAttemptCounter } from '../../lib/attempts.js';
import type { RequestContext } from '../../lib/authz.js';
import { AppError, type ErrorCode } from '../../lib/problem.js';
import type { MailService } from '../mail/mail.service.js';
import type { MeService } from '../me/me.service.js';
import type { MembersService } from '../members/members.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import { authOptions } from './auth.config.js';
import * as repo from './auth.repo.js';
import { resetPasswordEmail, verificationEmail } from './auth-email.js';

const SECRET_KEY = 'auth_secret';
const BASE_PATH = '/api/auth';
/** Failed sign-ins per account before it waits out the window (from every address together). */
export const SIGN_IN_FAILURES_PER_ACCOUNT = 10;
const SIGN_IN_WINDOW_MS = 15 * 60_000;
/** Reset and verification mails one address can be sent per window. */
export const MAILS_PER_ACCOUNT = 5;
const MAIL_WINDOW_MS = 60 * 60_000;

/** The signing secret: AUTH_SECRET, else one generated on first start and shared through the database. */
export async function loadAuthSecret(db: Db, fromEnv: string | undefined): Promise<string> {
  if (fromEnv) return fromEnv;
  return repo.insertSettingOnce(db, SECRET_KEY, randomBytes(32).toString('base64url'));
}

export type Account = repo.AccountRow;

/**
 * The account with this id, for the modules that show or check people (members, invitations,
 * me). Plain functions rather than service methods: those modules are wired before this one.
 */
export const accountById = (ex: Executor, id: string): Promise<Account | undefined> =>
  repo.findAccountById(ex, id);

/** The account with this address (any case), if any. */
export const accountByEmail = (ex: Executor, email: string): Promise<Account | undefined> =>
  repo.findAccountByEmail(ex, email.toLowerCase());

/**
 * Locks the account's row until `tx` ends, so that checks of what one account owns take turns
 * across requests and processes (it holds up no new session).
 */
export const lockAccount = (tx: Tx, userId: string): Promise<void> => repo.lockUser(tx, userId);

/** Better Auth's error codes, mapped onto ours. */
function codeFor(status: number, authCode: string | undefined): ErrorCode {
  if (authCode === 'USER_ALREADY_EXISTS' || authCode === 'USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL')
    return 'email_taken';
  if (authCode === 'EMAIL_NOT_VERIFIED') return 'email_not_verified';
  if (authCode === 'EMAIL_PASSWORD_SIGN_UP_DISABLED') return 'sign_up_disabled';
  if (status === 401 || authCode === 'INVALID_EMAIL_OR_PASSWORD' || authCode === 'INVALID_PASSWORD')
    return 'unauthenticated';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not_found';
  if (status === 429) return 'rate_limited';
  if (status === 415) return 'unsupported_media_type';
  return 'validation_failed';
}

const FIELD_OF: Record<string, string> = {
  INVALID_EMAIL: 'email',
  PASSWORD_TOO_SHORT: 'password',
  PASSWORD_TOO_LONG: 'password',
  INVALID_PASSWORD: 'current_password',
  INVALID_TOKEN: 'token',
};

/** Where a new password is sent as `newPassword`, a too short or long one names that field. */
function fieldOf(path: string, authCode: string | undefined): string | undefined {
  if (!authCode) return undefined;
  if ((path === '/reset-password' || path === '/change-password') && authCode.startsWith('PASSWORD_TOO_'))
    return 'newPassword';
  return FIELD_OF[authCode];
}

/** The `email` of a JSON body, normalized as Better Auth compares it; undefined if none. */
async function emailIn(request: Request): Promise<string | undefined> {
  const body = (await request
    .clone()
    .json()
    .catch(() => undefined)) as { email?: unknown } | undefined;
  return typeof body?.email === 'string' && body.email.length <= 254
    ? body.email.trim().toLowerCase()
    : undefined;
}

/** Users and sessions, through Better Auth (password hashing, sessions, cookies). */
export function createAuthService(deps: {
  db: Db;
  secret: string;
  baseURL: string;
  organizations: OrganizationsService;
  /** A new session's first active organization: the user's oldest membership. */
  members: Pick<MembersService, 'firstOrganizationOf'>;
  me: Pick<MeService, 'openSession'>;
  /** Reset and verification mail. */
  mail: MailService;
  log: { error(obj: object, msg: string): void };
  /** Sign-in waits until the address is verified (REQUIRE_EMAIL_VERIFICATION). */
  requireEmailVerification?: boolean;
  /** Who may create an account (SIGNUP): open, invite-only (invitation links), closed. */
  signUp?: SignUpPolicy;
}) {
  const { db, organizations } = deps;
  const policy = deps.signUp ?? 'open';
  const requireVerification = deps.requireEmailVerification ?? false;
  const base = authOptions({ db, secret: deps.secret, baseURL: deps.baseURL });
  const apiBase = `${deps.baseURL.replace(/\/$/, '')}${BASE_PATH}`;
  const signInFailures = createAttemptCounter({
    max: SIGN_IN_FAILURES_PER_ACCOUNT,
    windowMs: SIGN_IN_WINDOW_MS,
    maxEntries: 100_000,
  });
  const mailsSent = createAttemptCounter({
    max: MAILS_PER_ACCOUNT,
    windowMs: MAIL_WINDOW_MS,
    maxEntries: 100_000,
  });
  // Addresses signing up through an invitation link: the link proved them, no verification mail.
  const proven = new Set<string>();

  /**
   * Mail for the account never fails the request it belongs to, nor says whether the account
   * exists: it is sent in the background, so a request for an existing account answers as fast
   * as one for an unknown address (Better Auth would otherwise wait for the SMTP server or the
   * mailbox insert, for existing accounts only).
   */
  function sendAccountMail(to: string, content: { subject: string; text: string; html: string }): void {
    deps.mail.send({ to, ...content }, db).catch((err: unknown) => {
      deps.log.error({ err, to }, 'account mail not sent');
    });
  }

  const auth = betterAuth({
    ...base,
    emailAndPassword: {
      ...base.emailAndPassword,
      // Under SIGNUP=closed Better Auth itself creates no account, whichever way it is asked. Not
      // under invite-only: its flag would refuse auth.api.signUpEmail too, which invitation links
      // use, so `handle` refuses the public route there.
      disableSignUp: policy === 'closed',
      requireEmailVerification: requireVerification,
      sendResetPassword: async ({ user, url, token }) => {
        const callback = new URL(url).searchParams.get('callbackURL');
        sendAccountMail(
          user.email,
          resetPasswordEmail({
            email: user.email,
            token,
            apiUrl: `${apiBase}/reset-password`,
            link: callback ? url : null,
          }),
        );
      },
    },
    emailVerification: {
      sendOnSignUp: requireVerification,
      sendOnSignIn: requireVerification,
      sendVerificationEmail: async ({ user, url }) => {
        if (proven.has(user.email.toLowerCase())) return;
        // Without a callbackURL of the client's own, the link answers JSON rather than redirecting
        // to "/", which this API does not serve.
        const link = new URL(url);
        if (link.searchParams.get('callbackURL') === '/') link.searchParams.delete('callbackURL');
        sendAccountMail(user.email, verificationEmail({ email: user.email, url: link.toString() }));
      },
    },
    hooks: {
      // A new password ends every other session, whatever the client asked for (as the anchors do).
      before: createAuthMiddleware(async (ctx) => {
        if (ctx.path === '/change-password' && ctx.body && typeof ctx.body === 'object')
          return { context: { body: { ...ctx.body, revokeOtherSessions: true } } };
      }),
    },
    databaseHooks: {
      user: {
        create: {
          after: async (user) => {
            const ctx: RequestContext = {
              actor: { type: 'user', id: user.id, sessionId: null, roles: new Map() },
              requestId: 'sign-up',
            };
            await organizations.create(ctx, {
              name: user.name.trim() || user.email.split('@')[0] || 'Personal',
            });
          },
        },
      },
      session: {
        create: {
          after: async (session) => {
            const first = await deps.members.firstOrganizationOf(db, session.userId);
            if (first) await deps.me.openSession(db, session.id, first);
          },
        },
      },
    },
  });

  return {
    /** Better Auth's own routes (/api/auth/*), answered with problem+json on error. */
    async handle(request: Request): Promise<Response> {
      const path = new URL(request.url).pathname.slice(BASE_PATH.length);
      const post = request.method === 'POST';
      if (post && path === '/sign-up/email' && policy !== 'open')
        throw new AppError(
          'sign_up_disabled',
          policy === 'invite-only'
            ? 'Accounts are created through invitation links only'
            : 'Accounts are not created through the API',
        );
      // Failed sign-ins are counted per account (from every address), apart from the address's limit.
      // Each attempt takes its place before Better Auth answers it, so concurrent guesses cannot all
      // slip under the limit; one that turns out not to be a wrong password gives its place back.
      const signingIn = post && path === '/sign-in/email' ? await emailIn(request) : undefined;
      if (signingIn) {
        const wait = signInFailures.take(signingIn);
        if (wait)
          throw new AppError(
            'rate_limited',
            `Too many failed sign-ins for this account; retry in ${wait} s`,
            {
              extra: { retry_after: wait },
            },
          );
      }
      const mailing =
        post && (path === '/request-password-reset' || path === '/send-verification-email')
          ? await emailIn(request)
          : undefined;
      if (mailing) {
        const wait = mailsSent.take(mailing);
        if (wait)
          throw new AppError('rate_limited', `Too many mails asked for this address; retry in ${wait} s`, {
            extra: { retry_after: wait },
          });
      }
      let response: Response;
      try {
        response = await auth.handler(request);
      } catch (err) {
        if (signingIn) signInFailures.release(signingIn);
        if (mailing) mailsSent.release(mailing);
        throw err;
      }
      if (signingIn) {
        if (response.status < 400) signInFailures.clear(signingIn);
        else if (response.status !== 401) signInFailures.release(signingIn);
      }
      if (mailing && response.status >= 400) mailsSent.release(mailing);
      if (response.status < 400) return response;
      let body: { code?: string; message?: string } = {};
      try {
        body = (await response.clone().json()) as typeof body;
      } catch {
        // not JSON: keep the status only
      }
      const code = codeFor(response.status, body.code);
      const field = fieldOf(path, body.code);
      const detail = body.message ?? response.statusText ?? 'Authentication failed';
      throw new AppError(code, detail, {
        ...(field ? { errors: [{ field, message: detail }] } : {}),
        extra: body.code ? { auth_code: body.code } : {},
      });
    },

    /** The signed-in user and session behind a session cookie or session bearer token, if any. */
    async session(headers: Headers): Promise<{ userId: string; sessionId: string } | undefined> {
      const session = await auth.api.getSession({ headers });
      return session ? { userId: session.user.id, sessionId: session.session.id } : undefined;
    },

    /**
     * Creates an account whose address is proven (an invitation link reached it) and its first
     * session; returns the session's response headers (cookie, token). Refused under SIGNUP=closed.
     */
    async signUp(body: { email: string; name: string; password: string }) {
      if (policy === 'closed')
        throw new AppError('sign_up_disabled', 'Accounts are not created through the API; sign in to accept');
      const email = body.email.toLowerCase();
      // Asked first: with verification required, Better Auth answers a taken address like a new one.
      if (await repo.findUserIdByEmail(db, email))
        throw new AppError('email_taken', `An account with ${email} exists: sign in to accept`);
      proven.add(email);
      let response: Response;
      try {
        response = await auth.api.signUpEmail({ body, asResponse: true });
      } finally {
        proven.delete(email);
      }
      if (response.status >= 400) {
        const err = (await response.json().catch(() => ({}))) as { code?: string; message?: string };
        throw new AppError(codeFor(response.status, err.code), err.message ?? 'Sign-up failed', {
          ...(err.code && FIELD_OF[err.code]
            ? { errors: [{ field: FIELD_OF[err.code] as string, message: err.message ?? '' }] }
            : {}),
        });
      }
      await repo.updateUserEmailVerified(db, email);
      if (!response.headers.get('set-auth-token'))
        // Verification required: sign-up made no session; the address is verified now, so sign in.
        response = await auth.api.signInEmail({
          body: { email, password: body.password },
          asResponse: true,
        });
      const token = response.headers.get('set-auth-token') ?? '';
      const session = await auth.api.getSession({
        headers: new Headers({ authorization: `Bearer ${token}` }),
      });
      if (!session) throw new Error('sign-up created no session');
      return { userId: session.user.id, sessionId: session.session.id, headers: response.headers };
    },

    api: auth.api,
  };
}

export type AuthService = ReturnType<typeof createAuthService>;
