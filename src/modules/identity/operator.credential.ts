import { KEY_PREFIX } from '../api-keys/api-keys.service.js';
import type { OperatorService } from '../operator/operator.service.js';
import type { Credential } from './identity.credential.js';

export const OPERATOR_PREFIX = 'obo_';

/**
 * The platform operator's token (`obo_…`, or ADMIN_TOKEN as configured, whatever its shape). A
 * token without a known prefix may still be a session token: then the session is asked next.
 */
export function operatorCredential(operator: OperatorService): Credential {
  return {
    kind: 'operator',
    claims: (token) =>
      token === undefined || token.startsWith(KEY_PREFIX)
        ? undefined
        : token.startsWith(OPERATOR_PREFIX)
          ? 'sole'
          : 'first',
    verify: async (token) => ({ actor: await operator.authenticate(token ?? '') }),
  };
}
