import { Resolver } from 'node:dns/promises';

/** Looks up TXT records; each record is its strings joined. Missing name/no data -> []. */
export interface TxtResolver {
  resolveTxt(name: string): Promise<string[]>;
}

/**
 * The lookup could not get an answer (timeout, server failure, refused connection): whether the
 * record exists is unknown, so callers should report "try again later" rather than "not verified".
 */
export class DnsLookupError extends Error {
  override readonly name = 'DnsLookupError';
  constructor(
    message: string,
    /** The resolver's error code, e.g. 'ETIMEOUT', 'ESERVFAIL', 'ECONNREFUSED'. */
    readonly code: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Codes meaning the DNS answered authoritatively that there is no such record (or no such name). */
const NO_RECORD_CODES = new Set(['ENODATA', 'ENOTFOUND', 'ENONAME']);

const FAILURE_TEXT: Record<string, string> = {
  ETIMEOUT: 'timed out',
  ESERVFAIL: 'DNS server failure',
  ECONNREFUSED: 'connection refused',
  EREFUSED: 'query refused',
};

const DEFAULT_TIMEOUT_MS = 2000;

/** Node's resolver; `servers` like ['127.0.0.1:5353'] points it at given DNS servers (else the system's). */
export function createDnsResolver(opts: { servers?: string[]; timeoutMs?: number } = {}): TxtResolver {
  // `timeout` is the first attempt's wait; c-ares lengthens it on the retry, so a silent server
  // fails after about 4x timeoutMs (measured: 1.2 s for 300 ms, 4 s for 1000 ms).
  const resolver = new Resolver({ timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, tries: 2 });
  if (opts.servers && opts.servers.length > 0) resolver.setServers(opts.servers);

  return {
    async resolveTxt(name) {
      try {
        const records = await resolver.resolveTxt(name);
        // A TXT record is one or more <=255-byte character-strings; they form one value (RFC 7208 §3.3).
        return records.map((chunks) => chunks.join(''));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== undefined && NO_RECORD_CODES.has(code)) return [];
        const why = (code && FAILURE_TEXT[code]) ?? code ?? 'unknown error';
        throw new DnsLookupError(`DNS TXT lookup for ${name} failed: ${why}`, code, { cause: err });
      }
    },
  };
}
