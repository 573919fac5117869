import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import type { RequestContext } from './lib/authz.js';
import { createDrain, type Drain } from './lib/drain.js';
import type { EventBus } from './lib/events.js';
import { healthRoutes } from './lib/health.js';
import {
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
import { installRateLimits, requireCaller } from './modules/identity/identity.http.js';
import { MODULES } from './modules/index.js';
import { type AppDeps, assemble, type ServiceMap } from './modules/kernel.js';

export type { AppDeps } from './modules/kernel.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling and the request id; set for every /api route before its handler runs. */
    ctx: RequestContext;
  }
}

export type Services = ServiceMap;
/** `events`: the domain-event bus, for what subscribes from outside the modules (an outbox, tests). */
export type App = FastifyInstance & { services: Services; events: EventBus; metrics: Metrics; drain: Drain };

const VERSION = '0.1.0';

/**
 * The one app factory: the server, the CLI and the tests all build the service here, from the
 * modules listed in `src/modules/index.ts`. It does not migrate or listen; `main.ts` does, so
 * tests can share one migrated database.
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
  const { services, kernel, modules } = await assemble(MODULES, deps, app.log);
  const drain = createDrain();
  const metrics = createMetrics({
    db: deps.db,
    ledger: services.ledger,
    inFlight: () => drain.inFlight,
    processMetrics: deps.processMetrics,
  });
  const stops: Array<() => Promise<void> | void> = [];
  for (const m of modules) if (m.start) stops.push(await m.start());
  app.addHook('onClose', async () => {
    for (const stop of stops) await stop();
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
  await app.register(healthRoutes(deps.db, drain));
  await app.register(
    metricsRoute(metrics, {
      metricsToken: deps.metricsToken,
      isOperator: async (token) => (await services.operator.authenticate(token)) !== undefined,
    }),
  );
  await installRateLimits(app, services.identity, deps.rateLimit ?? { perIp: 1200, perKey: 6000 });

  for (const m of modules) if (m.publicRoutes) await app.register(m.publicRoutes);
  await app.register(async (api) => {
    requireCaller(api, services.identity);
    for (const m of modules) if (m.routes) await api.register(m.routes);
  });

  if (deps.workers) {
    // Every process runs them; the modules' row locks make concurrent runs safe.
    const jobs = modules.flatMap((m) => m.jobs);
    const timer = setInterval(() => {
      for (const { name, run } of jobs)
        run().catch((err: unknown) => app.log.error({ err }, `${name} failed`));
    }, 1000);
    timer.unref();
    app.addHook('onClose', async () => clearInterval(timer));
  }

  const decorated = app as unknown as App;
  decorated.decorate('services', services);
  decorated.decorate('events', kernel.hub.events);
  decorated.decorate('metrics', metrics);
  decorated.decorate('drain', drain);
  return decorated;
}
