import type { BetterAuthOptions } from 'better-auth';
import { bearer } from 'better-auth/plugins/bearer';
import type { Db } from '../../db/client.js';
import { type IdPrefix, newId } from '../../lib/ids.js';

const snake = (fields: string[]) =>
  Object.fromEntries(fields.map((f) => [f, f.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)]));

const ID_PREFIX: Record<string, IdPrefix> = {
  user: 'usr',
  session: 'ses',
  account: 'acc',
  verification: 'vrf',
};

/**
 * Better Auth's options, shared by the running service and the schema generator
 * (scripts/auth-schema.ts). Its tables follow our naming and live in our own migrations.
 */
export function authOptions(deps: { db: Db; secret: string; baseURL: string }) {
  return {
    appName: 'Orgbase',
    baseURL: deps.baseURL,
    basePath: '/api/auth',
    secret: deps.secret,
    database: { db: deps.db, type: 'postgres' },
    user: { modelName: 'users', fields: snake(['emailVerified', 'createdAt', 'updatedAt']) },
    session: {
      modelName: 'sessions',
      fields: snake(['expiresAt', 'token', 'createdAt', 'updatedAt', 'ipAddress', 'userAgent', 'userId']),
    },
    account: {
      modelName: 'accounts',
      fields: snake([
        'accountId',
        'providerId',
        'userId',
        'accessToken',
        'refreshToken',
        'idToken',
        'accessTokenExpiresAt',
        'refreshTokenExpiresAt',
        'scope',
        'password',
        'createdAt',
        'updatedAt',
      ]),
    },
    verification: {
      modelName: 'verifications',
      fields: snake(['identifier', 'value', 'expiresAt', 'createdAt', 'updatedAt']),
    },
    emailAndPassword: {
      enabled: true,
      minPasswordLength: 8,
      maxPasswordLength: 128,
      resetPasswordTokenExpiresIn: 3600,
      revokeSessionsOnPasswordReset: true,
    },
    // Only the token as issued (`set-auth-token`, signed with the secret), never the bare session token.
    plugins: [bearer({ requireSignature: true })],
    telemetry: { enabled: false },
    logger: { level: 'error' as const },
    advanced: {
      // Better Auth skips its origin and redirect checks under a test runner: never here, so the
      // tests see what production does.
      disableOriginCheck: false,
      database: { generateId: ({ model }: { model: string }) => newId(ID_PREFIX[model] ?? 'usr') },
    },
  } satisfies BetterAuthOptions;
}
