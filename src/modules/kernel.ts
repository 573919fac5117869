import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyBaseLogger, FastifyInstance, FastifyServerOptions } from 'fastify';
import type { PlanChanges, SignUpPolicy } from '../config.js';
import type { Db, DbHandle, Executor, Tx } from '../db/client.js';
import type { RequestContext } from '../lib/authz.js';
import { createEventBus, type DomainEvent, type EventBus, type EventType } from '../lib/events.js';
import { type AuditService, createAuditService } from './audit/audit.service.js';
import type { TxtResolver } from './domains/dns.js';
import type { SettingsGuard } from './ledger/ledger.context.js';
import type { PaymentProvider } from './ledger/payments.js';
import type { Limit } from './plans/plans.catalog.js';
import type { Counter } from './plans/plans.limits.js';

/**
 * How modules make one service. Each module folder exports one `module` object (its
 * `*.module.ts`) that says how its service is built, which routes it serves, which domain events
 * it handles, what it refuses on other modules' behalf (guards), what it adds to the shared
 * organization views, and which plan limits it counts. `src/modules/index.ts` lists the modules
 * in order; `assemble` builds them in that order and connects the declarations; `app.ts` does no
 * per-module wiring. A module reaches another one only through its service (`k.services`).
 */

export interface AppDeps {
  db: DbHandle;
  adminToken: string | undefined;
  /** Better Auth's signing secret; undefined: generated once and kept in the database. */
  authSecret?: string | undefined;
  /** The service's external URL (cookies, links in mail). */
  publicUrl?: string | undefined;
  logger?: FastifyServerOptions['logger'];
  /** Largest accepted request body, in bytes. */
  bodyLimit?: number;
  /** Where top-up money comes from; the embedded invoice provider by default. */
  payments?: PaymentProvider;
  /** SMTP server for outgoing mail; undefined keeps mail in the local mailbox. */
  smtpUrl?: string | undefined;
  mailFrom?: string | undefined;
  /** Ledger batches committed at once (LEDGER_LANES); at most the pool size less one. */
  ledgerLanes?: number;
  /** Requests per minute per client IP, and per API key (in-process counters). */
  rateLimit?: { perIp: number; perKey: number };
  /** Run the modules' jobs on a timer (the server does; tests drive them). */
  workers?: boolean;
  /** DNS servers for domain verification; empty or undefined: the system's. */
  dnsServers?: string[] | undefined;
  /** Looks up TXT records for domain verification (tests pass one aimed at their own DNS server). */
  resolver?: TxtResolver;
  /** REQUIRE_EMAIL_VERIFICATION: sign-in waits until the address is verified. */
  requireEmailVerification?: boolean;
  /** SIGNUP: who may create an account (open, invite-only, closed; default open). */
  signUp?: SignUpPolicy;
  /** PLAN_CHANGES: who changes plans with a fee, the operator alone (default) or also owners and admins. */
  planChanges?: PlanChanges;
  /** A bearer token that may read /metrics besides the operator's (METRICS_TOKEN). */
  metricsToken?: string | undefined;
  /** Node's process-wide metrics in /metrics (the server; not tests, which build many apps). */
  processMetrics?: boolean;
  /** Runs first on the new Fastify instance: tracing adds its hooks here when enabled. */
  instrument?: (app: FastifyInstance) => void;
}

/** Every module's service by name: each `*.module.ts` adds its own entry (declaration merging). */
// biome-ignore lint/suspicious/noEmptyInterface: filled by the modules' declarations
export interface ServiceMap {}
export type ModuleName = keyof ServiceMap;

/** Refusals a module raises about another module's change, run in that change's transaction. */
export interface Guards {
  /** Before a top-level organization is written (the plan's organizations per account). */
  'organization.create': (tx: Tx, ctx: RequestContext) => Promise<void>;
  /** Before an organization is deleted (agents still attached, a member's last organization). */
  'organization.delete': (tx: Tx, organizationId: string) => Promise<void>;
  /** Before credit settings change (the plan's features and caps, a parent's spending limit). */
  'credit_settings.change': (ex: Executor, ...args: Parameters<SettingsGuard>) => Promise<void>;
}

/** What modules add to the organization's shared views. */
export interface Views {
  /** Fields of the organization detail (member_count, agents, teams, ...). */
  organizationDetail: (ex: Executor, organizationId: string) => Promise<Record<string, unknown>>;
  /** Counts in list rows, one query per contributor for a whole page. */
  organizationCounts: (
    ex: Executor,
    organizationIds: string[],
  ) => Promise<Map<string, Record<string, number>>>;
  /** Sections of the organization's export document. */
  organizationExport: (ex: Executor, organizationId: string) => Promise<Record<string, unknown>>;
}

/** The declarations of every module, connected: what services consult at call time. */
export interface Hub {
  events: EventBus;
  guards: { [G in keyof Guards]: Array<Guards[G]> };
  views: { [V in keyof Views]: Array<Views[V]> };
  /** How much of each plan limit an organization uses, from the module that owns the thing. */
  limits: Partial<Record<Limit, Counter>>;
}

/** What a module's `create` receives. */
export interface Kernel {
  deps: AppDeps;
  db: Db;
  audit: AuditService;
  log: FastifyBaseLogger;
  hub: Hub;
  /** The services of the modules listed before this one (a later one throws: reorder the list). */
  services: ServiceMap;
}

export interface ModuleDefinition<N extends ModuleName> {
  name: N;
  create(k: Kernel): ServiceMap[N] | Promise<ServiceMap[N]>;
  /** Routes under /api, behind authentication (`req.ctx` is the caller). */
  routes?(service: ServiceMap[N], k: Kernel): FastifyPluginAsyncTypebox;
  /** Routes outside /api's authentication (pages reached from a link). */
  publicRoutes?(service: ServiceMap[N], k: Kernel): FastifyPluginAsyncTypebox;
  /** Domain events this module reacts to, in the publishing transaction. */
  on?: {
    [T in EventType]?: (
      service: ServiceMap[N],
      tx: Tx,
      event: DomainEvent<T>,
      ctx: RequestContext | undefined,
    ) => Promise<void>;
  };
  guards?: {
    [G in keyof Guards]?: (service: ServiceMap[N], ...args: Parameters<Guards[G]>) => Promise<void>;
  };
  views?: {
    [V in keyof Views]?: (service: ServiceMap[N], ...args: Parameters<Views[V]>) => ReturnType<Views[V]>;
  };
  limits?: {
    [L in Limit]?: (service: ServiceMap[N], ex: Executor, organizationId: string) => Promise<number>;
  };
  /** Started with the app (listeners); returns how to stop. */
  start?(service: ServiceMap[N]): Promise<() => Promise<void> | void>;
  /** Periodic work the server runs every second; tests call the service directly. */
  jobs?: Record<string, (service: ServiceMap[N]) => Promise<unknown>>;
}

export type AnyModule = { [N in ModuleName]: ModuleDefinition<N> }[ModuleName];

export function defineModule<N extends ModuleName>(m: ModuleDefinition<N>): ModuleDefinition<N> {
  return m;
}

/** A module with its service built, its declarations bound to it. */
export interface AssembledModule {
  name: ModuleName;
  routes?: FastifyPluginAsyncTypebox | undefined;
  publicRoutes?: FastifyPluginAsyncTypebox | undefined;
  start?: (() => Promise<() => Promise<void> | void>) | undefined;
  jobs: Array<{ name: string; run: () => Promise<unknown> }>;
}

export interface Assembled {
  services: ServiceMap;
  kernel: Kernel;
  modules: AssembledModule[];
}

/** Builds every module's service in order, then connects what they declared. */
export async function assemble(
  list: readonly AnyModule[],
  deps: AppDeps,
  log: FastifyBaseLogger,
): Promise<Assembled> {
  const hub: Hub = {
    events: createEventBus(),
    guards: { 'organization.create': [], 'organization.delete': [], 'credit_settings.change': [] },
    views: { organizationDetail: [], organizationCounts: [], organizationExport: [] },
    limits: {},
  };
  const built: Record<string, unknown> = {};
  const services = new Proxy(built, {
    get(target, name: string) {
      if (!(name in target)) throw new Error(`Module "${name}" is used before it is built: list it earlier`);
      return target[name];
    },
  }) as unknown as ServiceMap;
  const kernel: Kernel = { deps, db: deps.db.db, audit: createAuditService(), log, hub, services };
  for (const definition of list) {
    if (definition.name in built) throw new Error(`Module "${definition.name}" is listed twice`);
    built[definition.name] = await definition.create(kernel);
  }
  const modules = list.map((definition) => {
    const m = definition as unknown as Erased;
    const service = built[m.name];
    connect(hub, m, service);
    return {
      name: definition.name,
      routes: m.routes?.(service, kernel),
      publicRoutes: m.publicRoutes?.(service, kernel),
      start: m.start && (() => (m.start as (s: unknown) => Promise<() => Promise<void> | void>)(service)),
      jobs: Object.entries(m.jobs ?? {}).map(([name, job]) => ({ name, run: () => job(service) })),
    };
  });
  return { services: built as unknown as ServiceMap, kernel, modules };
}

/** A definition seen without its service's type, to connect it. */
type Fn = (...args: never[]) => unknown;
interface Erased {
  name: ModuleName;
  routes?: (service: unknown, k: Kernel) => FastifyPluginAsyncTypebox;
  publicRoutes?: (service: unknown, k: Kernel) => FastifyPluginAsyncTypebox;
  start?: (service: unknown) => Promise<() => Promise<void> | void>;
  jobs?: Record<string, (service: unknown) => Promise<unknown>>;
  on?: Record<string, Fn>;
  guards?: Record<string, Fn>;
  views?: Record<string, Fn>;
  limits?: Record<string, Fn>;
}

function connect(hub: Hub, m: Erased, service: unknown) {
  const bind =
    (f: Fn) =>
    (...args: unknown[]) =>
      (f as (...a: unknown[]) => unknown)(service, ...args);
  for (const [type, f] of Object.entries(m.on ?? {}))
    hub.events.subscribe({ [type]: bind(f) } as Parameters<EventBus['subscribe']>[0]);
  for (const [name, f] of Object.entries(m.guards ?? {}))
    (hub.guards[name as keyof Guards] as unknown[]).push(bind(f));
  for (const [name, f] of Object.entries(m.views ?? {}))
    (hub.views[name as keyof Views] as unknown[]).push(bind(f));
  for (const [limit, f] of Object.entries(m.limits ?? {})) hub.limits[limit as Limit] = bind(f) as Counter;
}

/** Runs every guard of `name` in order; the first refusal throws. */
export async function runGuards<G extends keyof Guards>(
  hub: Pick<Hub, 'guards'>,
  name: G,
  ...args: Parameters<Guards[G]>
): Promise<void> {
  for (const guard of hub.guards[name])
    await (guard as (...a: Parameters<Guards[G]>) => Promise<void>)(...args);
}
