import { type ApiKeysService, KEY_PREFIX } from '../api-keys/api-keys.service.js';
import type { Credential } from './identity.credential.js';

/** An organization's or an agent's API key (`obk_…`), limited on its own budget once valid. */
export function apiKeyCredential(apiKeys: ApiKeysService): Credential {
  return {
    kind: 'api_key',
    claims: (token) => (token?.startsWith(KEY_PREFIX) ? 'sole' : undefined),
    verify: (token) => apiKeys.verify(token ?? ''),
    rateBucket: (actor) => `key:${actor.id}`,
  };
}
