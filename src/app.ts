import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
  type FastifyServerOptions,
} from 'fastify';
import { sql } from 'kysely';
import { Type } from 'typebox';
import type { PlanChanges, SignUpPolicy } from './config.js';
import type { DbHandle } from './db/client.js';
import type { Actor, RequestContext } from './lib/authz.js';
import { createDrain, type Drain } from './lib/drain.js';
import {
  bearerToken,
  clientErrorHandler,
  installErrorHandling,
  installJsonParser,
  installValidation,
  REQUEST_ID_HEADER,
  requestIdFrom,
  sendProblem,
} from './lib/http.js';
import { createMetrics, type Metrics, metricsRoute } from './lib/metrics.js';
import { AppError } from './lib/problem.js';
import { ROUTE_PERMISSIONS } from './lib/route-permissions.js';
import { installSecurity, isHttps } from './lib/security.js';
import { agentsRoutes } from './modules/agents/agents.routes.js';
import { type AgentHooks, type AgentsService, createAgentsService } from './modules/agents/agents.service.js';
import { apiKeysRoutes } from './modules/api-keys/api-keys.routes.js';
import {
  type ApiKeysService,
  createApiKeysService,
  KEY_PREFIX,
} from './modules/api-keys/api-keys.service.js';
import { createAuditService } from './modules/audit/audit.service.js';
import { type AuthService, createAuthService, loadAuthSecret } from './modules/auth/auth.service.js';
import { billingRoutes } from './modules/billing/billing.routes.js';
import { type BillingService, createBillingService } from './modules/billing/billing.service.js';
import { createDnsResolver, type TxtResolver } from './modules/domains/dns.js';
import { domainsRoutes } from './modules/domains/domains.routes.js';
import { createDomainsService, type DomainsService } from './modules/domains/domains.service.js';
import { invitationLinkRoutes, invitationsRoutes } from './modules/invitations/invitations.routes.js';
import {
  createInvitationsService,
  type InvitationsService,
} from './modules/invitations/invitations.service.js';
import { ledgerRoutes } from './modules/ledger/ledger.routes.js';
import { createLedgerService, type LedgerService } from './modules/ledger/ledger.service.js';
import { createInvoiceProvider, type PaymentProvider } from './modules/ledger/payments.js';
import { createMailService, type MailService } from './modules/mail/mail.service.js';
import { meRoutes } from './modules/me/me.routes.js';
import { createMeService, type MeService } from './modules/me/me.service.js';
import { membersRoutes } from './modules/members/members.routes.js';
import { createMembersService, type MembersService } from './modules/members/members.service.js';
import { operatorRoutes } from './modules/operator/operator.routes.js';
import { createOperatorService, type OperatorService } from './modules/operator/operator.service.js';
import { customizationRoutes } from './modules/organizations/customization.routes.js';
import {
  type CustomizationService,
  createCustomizationService,
} from './modules/organizations/customization.service.js';
import { organizationsRoutes } from './modules/organizations/organizations.routes.js';
import {
  createOrganizationsService,
  type OrganizationLifecycle,
  type OrganizationsService,
} from './modules/organizations/organizations.service.js';
import {
  createFeaturesService,
  type FeaturesChanged,
  type FeaturesService,
} from './modules/plans/features.service.js';
import { type Limit, maxOverdraftOf } from './modules/plans/plans.catalog.js';
import { plansRoutes } from './modules/plans/plans.routes.js';
import {
  type Counter,
  createPlansService,
  type PlanChanged,
  type PlansService,
} from './modules/plans/plans.service.js';
import { subOrganizationsRoutes } from './modules/sub-organizations/sub-organizations.routes.js';
import {
  createSubOrganizationsService,
  type SubOrganizationsService,
} from './modules/sub-organizations/sub-organizations.service.js';
import { teamsRoutes } from './modules/teams/teams.routes.js';
import { createTeamsService, type TeamsService } from './modules/teams/teams.service.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling and the request id; set for every /api route before its handler runs. */
    ctx: RequestContext;
  }
}

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
  /** Run the hold-expiry, top-up and renewal workers on a timer (the server does; tests drive them). */
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

export interface Services {
  operator: OperatorService;
  organizations: OrganizationsService;
  ledger: LedgerService;
  members: MembersService;
  auth: AuthService;
  me: MeService;
  apiKeys: ApiKeysService;
  mail: MailService;
  invitations: InvitationsService;
  agents: AgentsService;
  billing: BillingService;
  teams: TeamsService;
  plans: PlansService;
  features: FeaturesService;
  subOrganizations: SubOrganizationsService;
  customization: CustomizationService;
  domains: DomainsService;
}

export type App = FastifyInstance & { services: Services; metrics: Metrics; drain: Drain };

const VERSION = '0.1.0';

async function wireServices(deps: AppDeps, log: FastifyBaseLogger): Promise<Services> {
  const db = deps.db.db;
  const audit = createAuditService();
  const lifecycle: OrganizationLifecycle = {
    creating: [],
    created: [],
    deleted: [],
    deleting: [],
    details: [],
    counts: [],
    exports: [],
  };
  const organizations = createOrganizationsService({ db, audit, lifecycle, listen: deps.db.listen });
  const featuresChanged: FeaturesChanged[] = [];
  const features = createFeaturesService({ db, audit, organizations, changed: featuresChanged });
  const counters: Partial<Record<Limit, Counter>> = {};
  const planChanged: PlanChanged[] = [];
  const plans = createPlansService({
    db,
    audit,
    organizations,
    features,
    counters,
    planChanged,
    planChanges: deps.planChanges ?? 'operator',
  });
  const agentHooks: AgentHooks = { moved: [], deleted: [] };
  const agents = createAgentsService({
    db,
    audit,
    organizations,
    hooks: agentHooks,
    capacity: plans.assertCapacity,
  });
  const ledger = createLedgerService({
    db,
    prepared: deps.db.prepared,
    organizations,
    payments: deps.payments ?? createInvoiceProvider(),
    // Lanes overlap commits, each holding a connection while it runs. A few are enough: the
    // process decides one batch at a time, and fewer lanes make larger batches (two measured
    // best on a 2-core machine, against one, three or six). At least one connection stays for
    // reads; PGlite has one connection, so one lane.
    lanes: Math.max(1, Math.min(deps.ledgerLanes ?? 2, deps.db.poolSize - 1)),
    agentOrganizations: agents.organizationsOf,
    audit,
    log,
  });
  const members = createMembersService({ db, audit, organizations, capacity: plans.assertCapacity });
  lifecycle.created.push(ledger.openAccount, members.onOrganizationCreated, plans.onOrganizationCreated);
  planChanged.push(
    (tx, id, plan) => ledger.setUsageEventsLimit(tx, id, plan.limits.monthly_usage_events),
    async (tx, id, plan, ctx) => {
      if (ctx) await ledger.capOverdraft(tx, ctx, id, maxOverdraftOf(plan));
    },
  );
  lifecycle.creating.push(plans.assertOrganizationCapacity);
  featuresChanged.push((tx, ctx, effective) =>
    ledger.withdrawOverdraft(
      tx,
      ctx,
      [...effective].filter(([, f]) => !f.has('allow_overdraft')).map(([id]) => id),
    ),
  );
  counters.agents = agents.countAgents;
  counters.members = (ex, id) => members.countMembers(ex, id);
  counters.sub_organizations = organizations.countChildren;
  counters.monthly_usage_events = ledger.monthUsageEvents;
  ledger.guardSettings(async (_ctx, id, policy) => {
    if (policy.overdraft_enabled === true) await features.require(db, id, 'allow_overdraft');
    if (policy.overdraft_limit !== undefined)
      await plans.assertOverdraftLimit(db, id, policy.overdraft_limit);
  });
  const me = createMeService({ db, organizations });
  const subOrganizations = createSubOrganizationsService({
    db,
    audit,
    organizations,
    members,
    ledger,
    plans,
    features,
    me,
  });
  ledger.guardSettings(subOrganizations.guardSpendingLimit);
  const apiKeys = createApiKeysService({
    db: deps.db,
    audit,
    organizations,
    agents,
    failuresPerPrefix: deps.rateLimit?.perIp ?? 1200,
  });
  agentHooks.moved.push(apiKeys.onAgentMoved);
  agentHooks.deleted.push(apiKeys.onAgentDeleted);
  lifecycle.deleted.push(members.onOrganizationDeleted, apiKeys.onOrganizationDeleted);
  lifecycle.details.push(async (ex, id) => ({ member_count: await members.countMembers(ex, id) }));
  const mail = createMailService({
    db,
    smtpUrl: deps.smtpUrl,
    from: deps.mailFrom ?? 'Orgbase <no-reply@orgbase.local>',
  });
  const auth = createAuthService({
    db,
    secret: await loadAuthSecret(db, deps.authSecret),
    baseURL: deps.publicUrl ?? 'http://127.0.0.1:3000',
    organizations,
    members,
    me,
    access: subOrganizations.accessOf,
    mail,
    log,
    requireEmailVerification: deps.requireEmailVerification ?? false,
    signUp: deps.signUp ?? 'open',
  });
  const invitations = createInvitationsService({
    db,
    audit,
    organizations,
    members,
    auth,
    me,
    mail,
    publicUrl: deps.publicUrl ?? 'http://127.0.0.1:3000',
  });
  lifecycle.deleted.push(invitations.onOrganizationDeleted);
  lifecycle.deleting.push(agents.refuseDeletionWithAgents, members.refuseDeletingLastOrganization);
  lifecycle.details.push(agents.details);
  const teams = createTeamsService({ db, audit, organizations });
  lifecycle.deleted.push(teams.onOrganizationDeleted);
  lifecycle.details.push(teams.details);
  lifecycle.counts.push(members.listCounts, agents.listCounts, teams.listCounts);
  const domains = createDomainsService({
    db,
    audit,
    organizations,
    features,
    resolver: deps.resolver ?? createDnsResolver({ servers: deps.dnsServers ?? [] }),
  });
  lifecycle.deleted.push(domains.onOrganizationDeleted);
  lifecycle.exports.push(
    domains.exportSection,
    members.exportSection,
    ledger.exportSection,
    apiKeys.exportSection,
    invitations.exportSection,
    agents.exportSection,
  );
  return {
    operator: createOperatorService({ db, adminToken: deps.adminToken }),
    organizations,
    ledger,
    members,
    auth,
    me,
    apiKeys,
    mail,
    invitations,
    agents,
    billing: createBillingService({ db, organizations, agents }),
    teams,
    plans,
    features,
    subOrganizations,
    customization: createCustomizationService({
      db,
      audit,
      organizations,
      requireFeature: (ex, id) => features.require(ex, id, 'custom_branding'),
    }),
    domains,
  };
}

/**
 * The one app factory: the server, the CLI and the tests all build the service here.
 * It does not migrate or listen; `main.ts` does, so tests can share one migrated database.
 */
export async function buildApp(deps: AppDeps): Promise<App> {
  const app = Fastify({
    logger: deps.logger ?? false,
    bodyLimit: deps.bodyLimit ?? 1024 * 1024,
    genReqId: requestIdFrom,
    forceCloseConnections: 'idle',
    // The drain answers requests that arrive while closing, as problem+json (src/lib/drain.ts).
    return503OnClosing: false,
    clientErrorHandler,
    ajv: { customOptions: { strict: false } },
    // Errors Fastify raises before routing (a malformed URL) still leave as problem+json.
    frameworkErrors: (err, req, reply) => {
      reply.header(REQUEST_ID_HEADER, req.id);
      sendProblem(
        reply,
        new AppError('validation_failed', `The request URL is malformed: ${err.message}`),
        req.id,
      );
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  deps.instrument?.(app);
  const services = await wireServices(deps, app.log);
  const drain = createDrain();
  const metrics = createMetrics({
    db: deps.db,
    ledger: services.ledger,
    inFlight: () => drain.inFlight,
    processMetrics: deps.processMetrics,
  });
  const stopListening = [await services.apiKeys.start(), await services.organizations.start()];
  app.addHook('onClose', async () => {
    for (const stop of stopListening) await stop();
    services.mail.close();
  });
  installValidation(app);
  installJsonParser(app);
  installErrorHandling(app);

  // Synchronous hooks (done-callback style): on every request, an async hook's promise is a cost
  // for nothing when the hook never waits.
  app.addHook('onRequest', (req, reply, done) => {
    reply.header(REQUEST_ID_HEADER, req.id);
    done();
  });
  drain.install(app);
  metrics.install(app);
  // A POST or PATCH without a body is an empty object: its schema then names what is missing.
  app.addHook('preValidation', (req, _reply, done) => {
    if (req.body === undefined && (req.method === 'POST' || req.method === 'PATCH')) req.body = {};
    done();
  });

  installSecurity(app, { publicUrl: deps.publicUrl });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Orgbase',
        version: VERSION,
        description:
          'Organizations, members, sub-organizations and an exact credits ledger. Errors are RFC 9457 problem+json with a stable `code`.',
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    // Its own CSP, with the hashes of its inline scripts; upgrade-insecure-requests only on https.
    staticCSP: true,
    transformStaticCSP: (header) =>
      isHttps(deps.publicUrl) ? header : header.replace(/\s*upgrade-insecure-requests;?/, ''),
  });

  // No /api route without a declared requirement: checked as routes register, so start-up fails.
  app.addHook('onRoute', (route) => {
    if (!route.url.startsWith('/api/') || route.url.startsWith('/api/auth/')) return;
    for (const method of ([] as string[]).concat(route.method)) {
      if (method === 'HEAD') continue;
      const requirement = ROUTE_PERMISSIONS[`${method} ${route.url}`];
      if (!requirement) throw new Error(`${method} ${route.url} has no entry in ROUTE_PERMISSIONS`);
      route.schema = { ...route.schema, 'x-permissions': requirement } as typeof route.schema;
    }
  });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  app.get(
    '/healthz',
    {
      schema: {
        tags: ['health'],
        summary: 'The process is up',
        security: [],
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );
  app.get(
    '/readyz',
    {
      schema: {
        tags: ['health'],
        summary: 'The database answers and the process is not shutting down (503 once it is)',
        security: [],
        response: { 200: Type.Object({ status: Type.Literal('ready'), database: Type.String() }) },
      },
    },
    async (req, reply) => {
      // Expected while shutting down: answered, not logged as a failure.
      if (drain.draining)
        return sendProblem(
          reply,
          new AppError('service_unavailable', 'The service is shutting down'),
          req.id,
        );
      try {
        await sql`select 1`.execute(deps.db.db);
      } catch {
        throw new AppError('service_unavailable', 'The database does not answer');
      }
      return { status: 'ready' as const, database: deps.db.kind };
    },
  );

  await app.register(
    metricsRoute(metrics, {
      metricsToken: deps.metricsToken,
      isOperator: async (token) => (await services.operator.authenticate(token)) !== undefined,
    }),
  );

  const limits = deps.rateLimit ?? { perIp: 1200, perKey: 6000 };
  // An API key is checked once per request: by the rate limiter, then by authentication.
  const keyChecks = new WeakMap<FastifyRequest, Promise<{ actor?: Actor; retryAfter: number }>>();
  const keyCheck = (req: FastifyRequest, token: string) => {
    let check = keyChecks.get(req);
    if (!check) {
      check = services.apiKeys.verify(token);
      keyChecks.set(req, check);
    }
    return check;
  };
  await app.register(rateLimit, {
    global: true,
    hook: 'onRequest',
    // A valid API key is limited on its own budget; everyone else by address, a wrong key too
    // (a prefix alone must not spend a real key's budget). The operator is not limited.
    // Synchronous unless there is a key to check: no promise per request for nothing.
    keyGenerator: (req) => {
      const token = bearerToken(req.headers);
      if (!token?.startsWith(KEY_PREFIX)) return `ip:${req.ip}`;
      return keyCheck(req, token).then(({ actor }) => (actor ? `key:${actor.id}` : `ip:${req.ip}`));
    },
    max: (_req, key) => (key.startsWith('key:') ? limits.perKey : limits.perIp),
    timeWindow: 60_000,
    allowList: async (req) => {
      const token = bearerToken(req.headers);
      return (
        token !== undefined &&
        !token.startsWith(KEY_PREFIX) &&
        (await services.operator.authenticate(token)) !== undefined
      );
    },
    errorResponseBuilder: (_req, context) =>
      new AppError('rate_limited', `Too many requests; retry in ${Math.ceil(context.ttl / 1000)} s`),
  });

  // Better Auth's routes: sign-up, sign-in, sign-out, sessions, password change.
  app.route({
    method: ['GET', 'POST'],
    url: '/api/auth/*',
    schema: { hide: true },
    handler: async (req, reply) => {
      const url = new URL(req.url, deps.publicUrl ?? `http://${req.headers.host ?? '127.0.0.1'}`);
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers.set(k, v);
      // The body is re-serialized as JSON whatever arrived (or nothing did).
      if (req.method === 'POST') headers.set('content-type', 'application/json');
      // Browsers send Origin with every POST, and Better Auth checks it against PUBLIC_URL. A
      // request with neither Origin nor cookie is a server-side client (Node's fetch adds
      // Sec-Fetch-Mode, which would make Better Auth demand an Origin it cannot have).
      if (!headers.has('origin') && !headers.has('cookie'))
        for (const h of ['sec-fetch-site', 'sec-fetch-mode', 'sec-fetch-dest']) headers.delete(h);
      const response = await services.auth
        .handle(
          new Request(url, {
            method: req.method,
            headers,
            ...(req.method === 'POST' ? { body: JSON.stringify(req.body ?? {}) } : {}),
          }),
        )
        .catch((err: unknown) => {
          // Per-account throttles (sign-in failures, account mail) say when to come back.
          if (err instanceof AppError && typeof err.extra?.retry_after === 'number')
            reply.header('retry-after', String(err.extra.retry_after));
          throw err;
        });
      reply.status(response.status);
      response.headers.forEach((value, key) => {
        if (key !== 'set-cookie' && key !== 'content-length') reply.header(key, value);
      });
      const cookies = response.headers.getSetCookie();
      if (cookies.length) reply.header('set-cookie', cookies);
      return reply.send(await response.text());
    },
  });

  /** The caller: the operator token, else a session (bearer token or cookie). */
  async function authenticate(headers: FastifyRequest['headers'], req?: FastifyRequest) {
    const token = bearerToken(headers);
    if (token?.startsWith('obo_')) return services.operator.authenticate(token);
    if (token?.startsWith(KEY_PREFIX))
      return req ? (await keyCheck(req, token)).actor : services.apiKeys.authenticate(token);
    if (!token && !headers.cookie) return undefined;
    const h = new Headers();
    if (headers.authorization) h.set('authorization', headers.authorization);
    if (headers.cookie) h.set('cookie', headers.cookie);
    return (await services.operator.authenticate(token ?? '')) ?? services.auth.sessionActor(h);
  }

  await app.register(
    invitationLinkRoutes(services.invitations, (h) => authenticate(h as FastifyRequest['headers'])),
  );

  await app.register(async (api) => {
    // preParsing, not onRequest: the rate limiter's per-route onRequest hook must count a
    // request before authentication can refuse it, or token guessing would go unlimited.
    api.addHook('preParsing', async (req, reply, payload) => {
      const token = bearerToken(req.headers);
      const actor = await authenticate(req.headers, req);
      if (!actor) {
        const wait = token?.startsWith(KEY_PREFIX) ? (await keyCheck(req, token)).retryAfter : 0;
        if (wait) {
          reply.header('retry-after', String(wait));
          return sendProblem(
            reply,
            new AppError('rate_limited', `Too many failed attempts with this key; retry in ${wait} s`),
            req.id,
          );
        }
        reply.header('www-authenticate', 'Bearer');
        return sendProblem(
          reply,
          new AppError(
            'unauthenticated',
            token ? 'The bearer token is not valid' : 'Send Authorization: Bearer <token>',
          ),
          req.id,
        );
      }
      req.ctx = { actor, requestId: req.id };
      return payload;
    });
    await api.register(organizationsRoutes(services.organizations));
    await api.register(ledgerRoutes(services.ledger));
    await api.register(membersRoutes(services.members));
    await api.register(apiKeysRoutes(services.apiKeys));
    await api.register(invitationsRoutes(services.invitations));
    await api.register(agentsRoutes(services.agents));
    await api.register(billingRoutes(services.billing));
    await api.register(teamsRoutes(services.teams));
    await api.register(plansRoutes(services.plans, services.features));
    await api.register(subOrganizationsRoutes(services.subOrganizations));
    await api.register(customizationRoutes(services.customization));
    await api.register(domainsRoutes(services.domains));
    api.get(
      '/api/dev/mailbox',
      {
        schema: {
          tags: ['operator'],
          summary: 'Operator: the local mailbox (mail kept when SMTP_URL is unset), newest first',
        },
      },
      async (req) => services.mail.listMailbox(req.ctx),
    );
    await api.register(meRoutes(services.me, services.organizations, services.ledger));
    await api.register(operatorRoutes(services.operator));
  });

  if (deps.workers) {
    // Every process runs them; the ledger's row locks make concurrent runs safe.
    const timer = setInterval(() => {
      services.ledger.expireDueHolds().catch((err: unknown) => app.log.error({ err }, 'hold expiry failed'));
      services.ledger
        .startPendingTopUps()
        .catch((err: unknown) => app.log.error({ err }, 'top-up start failed'));
      services.plans
        .renewDue()
        .catch((err: unknown) => app.log.error({ err }, 'subscription renewal failed'));
    }, 1000);
    timer.unref();
    app.addHook('onClose', async () => clearInterval(timer));
  }

  const decorated = app as unknown as App;
  decorated.decorate('services', services);
  decorated.decorate('metrics', metrics);
  decorated.decorate('drain', drain);
  return decorated;
}
