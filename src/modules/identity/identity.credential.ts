import type { IncomingHttpHeaders } from 'node:http';
import type { Actor } from '../../lib/authz.js';

/** What checking a credential found: the caller, or how long a throttled credential must wait. */
export interface Verdict {
  actor?: Actor | undefined;
  /** Seconds before this credential may try again (too many failures); 0 when not throttled. */
  retryAfter?: number;
}

/**
 * One kind of credential a request may carry. The identity service asks each kind in order
 * whether it claims the request; a kind that claims it verifies it. A new kind of caller (an
 * OAuth access token, say) is one more file implementing this, listed in identity.service.ts.
 */
export interface Credential {
  kind: string;
  /**
   * Whether this kind reads the request (a bearer token with its prefix, a session cookie):
   * `sole` when the request can only be this kind's (no other is asked if it fails), `first`
   * when a later kind may still recognize it, undefined when it is not this kind's.
   */
  claims(token: string | undefined, headers: IncomingHttpHeaders): 'sole' | 'first' | undefined;
  verify(token: string | undefined, headers: IncomingHttpHeaders): Promise<Verdict>;
  /** Requests per minute for a verified caller of this kind, keyed by `bucket`; absent: by client address. */
  rateBucket?(actor: Actor): string;
}
