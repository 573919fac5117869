import { overseeing, userAccess } from '../../lib/authz.js';
import type { AuthService } from '../auth/auth.service.js';
import type { MeService } from '../me/me.service.js';
import type { MembersService } from '../members/members.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import type { Credential } from './identity.credential.js';

/**
 * A signed-in user's session (Better Auth's signed bearer token or its cookie), acting with its
 * memberships and the sub-organization oversight rule (`userAccess` in src/lib/authz.ts).
 */
export function sessionCredential(deps: {
  auth: Pick<AuthService, 'session'>;
  members: Pick<MembersService, 'rolesOf'>;
  organizations: Pick<OrganizationsService, 'descendantsOf'>;
  me: Pick<MeService, 'joinedOf'>;
  db: Parameters<OrganizationsService['descendantsOf']>[0];
}): Credential {
  return {
    kind: 'session',
    claims: (token, headers) => (token !== undefined || headers.cookie !== undefined ? 'sole' : undefined),
    async verify(_token, headers) {
      const h = new Headers();
      if (headers.authorization) h.set('authorization', headers.authorization);
      if (headers.cookie) h.set('cookie', headers.cookie);
      const session = await deps.auth.session(h);
      if (!session) return {};
      const direct = await deps.members.rolesOf(session.userId);
      const below = await deps.organizations.descendantsOf(deps.db, overseeing(direct));
      const joined = below.length ? await deps.me.joinedOf(session.sessionId) : undefined;
      return {
        actor: {
          type: 'user',
          id: session.userId,
          sessionId: session.sessionId,
          ...userAccess(direct, below, joined),
        },
      };
    },
  };
}
