import { resolve } from 'node:path';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface Config {
  port: number;
  host: string;
  /** PostgreSQL connection string; undefined means embedded PGlite in `dataDir`. */
  databaseUrl: string | undefined;
  dataDir: string;
  /** Operator bearer token from the environment; undefined means "use or create the stored one". */
  adminToken: string | undefined;
  logLevel: LogLevel;
  databasePoolSize: number;
  /** Keep hot statements prepared per connection (off behind a pooler that cannot, e.g. PgBouncer < 1.21 in transaction mode). */
  databasePrepare: boolean;
  /** Ledger batches a process commits at once (PostgreSQL; PGlite always has one). */
  ledgerLanes: number;
  publicUrl: string | undefined;
  /** Better Auth's signing secret; undefined means "generated once, kept in the database". */
  authSecret: string | undefined;
  rateLimit: { perIp: number; perKey: number };
  smtpUrl: string | undefined;
  mailFrom: string;
  /** DNS servers for domain verification ("host:port"); empty means the system's resolvers. */
  dnsServers: string[];
  /** Sign-in waits until the email address is verified (REQUIRE_EMAIL_VERIFICATION). */
  requireEmailVerification: boolean;
  /** Who may create an account (SIGNUP). */
  signUp: SignUpPolicy;
  /** After SIGTERM/SIGINT, how long requests in flight get to finish before connections are cut. */
  shutdownDrainMs: number;
  /** A bearer token that may read /metrics (besides the operator's); undefined: the operator's only. */
  metricsToken: string | undefined;
  /** OTLP/HTTP collector base URL; set, the process exports traces there. */
  otelEndpoint: string | undefined;
  /** Who changes plans: the operator alone (default), or also the organizations' owners and admins. */
  planChanges: PlanChanges;
}

export const PLAN_CHANGES = ['operator', 'owners'] as const;
export type PlanChanges = (typeof PLAN_CHANGES)[number];

/** `open`: anyone signs up; `invite-only`: only through an invitation link; `closed`: no account is created. */
export const SIGN_UP_POLICIES = ['open', 'invite-only', 'closed'] as const;
export type SignUpPolicy = (typeof SIGN_UP_POLICIES)[number];

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`Invalid configuration: ${variable} ${message}`);
    this.name = 'ConfigError';
  }
}

function intVar(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

function boolVar(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = raw.toLowerCase();
  if (['true', '1', 'on', 'yes'].includes(v)) return true;
  if (['false', '0', 'off', 'no'].includes(v)) return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

function urlVar(env: NodeJS.ProcessEnv, name: string, protocols: string[]): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, 'is not a valid URL');
  }
  if (!protocols.includes(url.protocol))
    throw new ConfigError(name, `must start with ${protocols.map((p) => `${p}//`).join(' or ')}`);
  return raw;
}

/** DNS_SERVERS: comma-separated IPv4 addresses, each with an optional port ("1.1.1.1,127.0.0.1:5353"). */
function dnsServersVar(env: NodeJS.ProcessEnv): string[] {
  const raw = env.DNS_SERVERS;
  if (raw === undefined || raw.trim() === '') return [];
  const servers = raw.split(',').map((s) => s.trim());
  for (const s of servers)
    if (!/^\d{1,3}(\.\d{1,3}){3}(:\d{1,5})?$/.test(s))
      throw new ConfigError('DNS_SERVERS', `must be IPv4 addresses with optional ports, got "${s}"`);
  return servers;
}

/** Reads and validates the environment once, at start. Every failure names its variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const logLevel = (env.LOG_LEVEL || 'info').toLowerCase();
  if (!LOG_LEVELS.includes(logLevel as LogLevel))
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}, got "${env.LOG_LEVEL}"`);
  const adminToken = env.ADMIN_TOKEN || undefined;
  if (adminToken !== undefined && (adminToken.length < 16 || /\s/.test(adminToken)))
    throw new ConfigError('ADMIN_TOKEN', 'must be at least 16 characters with no whitespace');
  const authSecret = env.AUTH_SECRET || undefined;
  if (authSecret !== undefined && authSecret.length < 32)
    throw new ConfigError('AUTH_SECRET', 'must be at least 32 characters');
  const metricsToken = env.METRICS_TOKEN || undefined;
  if (metricsToken !== undefined && (metricsToken.length < 16 || /\s/.test(metricsToken)))
    throw new ConfigError('METRICS_TOKEN', 'must be at least 16 characters with no whitespace');
  const planChanges = (env.PLAN_CHANGES || 'operator').toLowerCase();
  if (!PLAN_CHANGES.includes(planChanges as PlanChanges))
    throw new ConfigError('PLAN_CHANGES', `must be operator or owners, got "${env.PLAN_CHANGES}"`);
  const signUp = (env.SIGNUP || 'open').toLowerCase();
  if (!SIGN_UP_POLICIES.includes(signUp as SignUpPolicy))
    throw new ConfigError('SIGNUP', `must be open, invite-only or closed, got "${env.SIGNUP}"`);
  const host = env.HOST || '127.0.0.1';
  if (/\s/.test(host)) throw new ConfigError('HOST', 'must be a host name or address');
  return {
    port: intVar(env, 'PORT', 3000, 0, 65535),
    host,
    databaseUrl: urlVar(env, 'DATABASE_URL', ['postgres:', 'postgresql:']),
    dataDir: resolve(env.ORGBASE_DATA_DIR || './data'),
    adminToken,
    logLevel: logLevel as LogLevel,
    databasePoolSize: intVar(env, 'DATABASE_POOL_SIZE', 10, 1, 1000),
    databasePrepare: boolVar(env, 'DATABASE_PREPARE', true),
    ledgerLanes: intVar(env, 'LEDGER_LANES', 2, 1, 64),
    publicUrl: urlVar(env, 'PUBLIC_URL', ['http:', 'https:']),
    authSecret,
    smtpUrl: urlVar(env, 'SMTP_URL', ['smtp:', 'smtps:']),
    mailFrom: env.MAIL_FROM || 'Orgbase <no-reply@orgbase.local>',
    dnsServers: dnsServersVar(env),
    requireEmailVerification: boolVar(env, 'REQUIRE_EMAIL_VERIFICATION', false),
    signUp: signUp as SignUpPolicy,
    planChanges: planChanges as PlanChanges,
    shutdownDrainMs: intVar(env, 'SHUTDOWN_DRAIN_MS', 10_000, 0, 600_000),
    metricsToken,
    otelEndpoint: urlVar(env, 'OTEL_EXPORTER_OTLP_ENDPOINT', ['http:', 'https:']),
    rateLimit: {
      perIp: intVar(env, 'RATE_LIMIT_PER_MINUTE', 1200, 1, 10_000_000),
      perKey: intVar(env, 'RATE_LIMIT_KEY_PER_MINUTE', 6000, 1, 10_000_000),
    },
  };
}
