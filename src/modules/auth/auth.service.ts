import { randomBytes } from 'node:crypto';
import { betterAuth } from 'better-auth';
import type { Db } from '../../db/client.js';
import type { Actor, RequestContext } from '../../lib/authz.js';
import { AppError, type ErrorCode } from '../../lib/problem.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import { authOptions } from './auth.config.js';

const SECRET_KEY = 'auth_secret';

/** The signing secret: AUTH_SECRET, else one generated on first start and shared through the database. */
export async function loadAuthSecret(db: Db, fromEnv: string | undefined): Promise<string> {
  if (fromEnv) return fromEnv;
  await db
    .insertInto('platform_settings')
    .values({ key: SECRET_KEY, value: randomBytes(32).toString('base64url') })
    .onConflict((oc) => oc.column('key').doNothing())
    .execute();
  const row = await db
    .selectFrom('platform_settings')
    .select('value')
    .where('key', '=', SECRET_KEY)
    .executeTakeFirstOrThrow();
  return row.value;
}

/** Better Auth's error codes, mapped onto ours. */
function codeFor(status: number, authCode: string | undefined): ErrorCode {
  if (authCode === 'USER_ALREADY_EXISTS' || authCode === 'USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL')
    return 'email_taken';
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
};

/**
 * Users and sessions, through Better Auth (password hashing, sessions, cookies): never our own
 * crypto. Sign-up creates the user's personal organization with them as owner, and every new
 * session starts with an active organization.
 */
export function createAuthService(deps: {
  db: Db;
  secret: string;
  baseURL: string;
  organizations: OrganizationsService;
  /** The roles a signed-in user acts with (memberships, oversight, "join as"). */
  access: (
    userId: string,
    sessionId: string,
  ) => Promise<Pick<Extract<Actor, { type: 'user' }>, 'roles' | 'oversight' | 'joined'>>;
}) {
  const { db, organizations } = deps;
  const base = authOptions({ db, secret: deps.secret, baseURL: deps.baseURL });
  const auth = betterAuth({
    ...base,
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
            const first = await db
              .selectFrom('members')
              .select('organization_id')
              .where('user_id', '=', session.userId)
              .orderBy('created_at')
              .limit(1)
              .executeTakeFirst();
            if (first)
              await db
                .insertInto('session_contexts')
                .values({ session_id: session.id, active_organization_id: first.organization_id })
                .onConflict((oc) => oc.column('session_id').doNothing())
                .execute();
          },
        },
      },
    },
  });

  return {
    /** Better Auth's own routes (/api/auth/*), answered with problem+json on error. */
    async handle(request: Request): Promise<Response> {
      const response = await auth.handler(request);
      if (response.status < 400) return response;
      let body: { code?: string; message?: string } = {};
      try {
        body = (await response.clone().json()) as typeof body;
      } catch {
        // not JSON: keep the status only
      }
      const code = codeFor(response.status, body.code);
      const field = body.code ? FIELD_OF[body.code] : undefined;
      const detail = body.message ?? response.statusText ?? 'Authentication failed';
      throw new AppError(code, detail, {
        ...(field ? { errors: [{ field, message: detail }] } : {}),
        extra: body.code ? { auth_code: body.code } : {},
      });
    },

    /** The signed-in user behind a session cookie or session bearer token, if any. */
    async sessionActor(headers: Headers): Promise<Actor | undefined> {
      const session = await auth.api.getSession({ headers });
      if (!session) return undefined;
      return {
        type: 'user',
        id: session.user.id,
        sessionId: session.session.id,
        ...(await deps.access(session.user.id, session.session.id)),
      };
    },

    /** Creates an account and its first session; returns the session's response headers (cookie, token). */
    async signUp(body: { email: string; name: string; password: string }) {
      const response = await auth.api.signUpEmail({ body, asResponse: true });
      if (response.status >= 400) {
        const err = (await response.json().catch(() => ({}))) as { code?: string; message?: string };
        throw new AppError(codeFor(response.status, err.code), err.message ?? 'Sign-up failed', {
          ...(err.code && FIELD_OF[err.code]
            ? { errors: [{ field: FIELD_OF[err.code] as string, message: err.message ?? '' }] }
            : {}),
        });
      }
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
