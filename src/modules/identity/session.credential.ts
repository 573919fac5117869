import type { AuthService } from '../auth/auth.service.js';
import type { Credential } from './identity.credential.js';

/** A signed-in user's session: Better Auth's signed bearer token or its cookie. */
export function sessionCredential(auth: AuthService): Credential {
  return {
    kind: 'session',
    claims: (token, headers) => (token !== undefined || headers.cookie !== undefined ? 'sole' : undefined),
    async verify(_token, headers) {
      const h = new Headers();
      if (headers.authorization) h.set('authorization', headers.authorization);
      if (headers.cookie) h.set('cookie', headers.cookie);
      return { actor: await auth.sessionActor(h) };
    },
  };
}
