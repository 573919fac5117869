import { defineModule } from '../kernel.js';
import { authRoutes } from './auth.routes.js';
import { type AuthService, createAuthService, loadAuthSecret } from './auth.service.js';

declare module '../kernel.js' {
  interface ServiceMap {
    auth: AuthService;
  }
}

export const authModule = defineModule({
  name: 'auth',
  create: async ({ db, deps, log, services }) =>
    createAuthService({
      db,
      secret: await loadAuthSecret(db, deps.authSecret),
      baseURL: deps.publicUrl ?? 'http://127.0.0.1:3000',
      organizations: services.organizations,
      members: services.members,
      me: services.me,
      mail: services.mail,
      log,
      requireEmailVerification: deps.requireEmailVerification ?? false,
      signUp: deps.signUp ?? 'open',
    }),
  // Better Auth answers its own requests, authenticated or not.
  publicRoutes: (auth, { deps }) => authRoutes(auth, deps.publicUrl),
});
