import { defineModule } from '../kernel.js';
import { apiKeyCredential } from './api-key.credential.js';
import { createIdentityService, type IdentityService } from './identity.service.js';
import { operatorCredential } from './operator.credential.js';
import { sessionCredential } from './session.credential.js';

declare module '../kernel.js' {
  interface ServiceMap {
    identity: IdentityService;
  }
}

export const identityModule = defineModule({
  name: 'identity',
  // In order: the first kind that claims a request decides (operator tokens without the obo_
  // prefix, as ADMIN_TOKEN may be, are tried before the session they might otherwise be).
  create: ({ db, services }) =>
    createIdentityService([
      operatorCredential(services.operator),
      apiKeyCredential(services.apiKeys),
      sessionCredential({
        auth: services.auth,
        members: services.members,
        organizations: services.organizations,
        me: services.me,
        db,
      }),
    ]),
});
