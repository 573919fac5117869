import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { sql } from 'kysely';
import { Type } from 'typebox';
import type { DbHandle } from './db/client.js';
import type { RequestContext } from './lib/authz.js';
import {
  installErrorHandling,
  installJsonParser,
  installValidation,
  REQUEST_ID_HEADER,
  requestIdFrom,
  sendProblem,
} from './lib/http.js';
import { AppError } from './lib/problem.js';
import { createAuditService } from './modules/audit/audit.service.js';
import { ledgerRoutes } from './modules/ledger/ledger.routes.js';
import { createLedgerService, type LedgerService } from './modules/ledger/ledger.service.js';
import { createInvoiceProvider, type PaymentProvider } from './modules/ledger/payments.js';
import { createOperatorService, type OperatorService } from './modules/operator/operator.service.js';
import { organizationsRoutes } from './modules/organizations/organizations.routes.js';
import {
  createOrganizationsService,
  type OrganizationLifecycle,
  type OrganizationsService,
} from './modules/organizations/organizations.service.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling and the request id; set for every /api route before its handler runs. */
    ctx: RequestContext;
  }
}

export interface AppDeps {
  db: DbHandle;
  adminToken: string | undefined;
  logger?: FastifyServerOptions['logger'];
  /** Largest accepted request body, in bytes. */
  bodyLimit?: number;
  /** Where top-up money comes from; the embedded invoice provider by default. */
  payments?: PaymentProvider;
  /** Run the hold-expiry and top-up workers on a timer (the server does; tests drive them). */
  workers?: boolean;
}

export interface Services {
  operator: OperatorService;
  organizations: OrganizationsService;
  ledger: LedgerService;
}

export type App = FastifyInstance & { services: Services };

const VERSION = '0.1.0';
const BEARER = /^Bearer\s+(\S+)$/i;

function wireServices(deps: AppDeps): Services {
  const db = deps.db.db;
  const audit = createAuditService();
  const lifecycle: OrganizationLifecycle = { created: [] };
  const organizations = createOrganizationsService({ db, audit, lifecycle });
  const ledger = createLedgerService({
    db,
    organizations,
    payments: deps.payments ?? createInvoiceProvider(),
    // PGlite has one connection; on PostgreSQL a few lanes overlap commits.
    lanes: deps.db.kind === 'pglite' ? 1 : 4,
  });
  lifecycle.created.push(ledger.openAccount);
  return { operator: createOperatorService({ db, adminToken: deps.adminToken }), organizations, ledger };
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
    return503OnClosing: true,
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

  const services = wireServices(deps);
  installValidation(app);
  installJsonParser(app);
  installErrorHandling(app);

  app.addHook('onRequest', async (req, reply) => {
    reply.header(REQUEST_ID_HEADER, req.id);
  });
  // A POST or PATCH without a body is an empty object: its schema then names what is missing.
  app.addHook('preValidation', async (req) => {
    if (req.body === undefined && (req.method === 'POST' || req.method === 'PATCH')) req.body = {};
  });

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
  await app.register(swaggerUi, { routePrefix: '/docs' });

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
        summary: 'The database answers',
        security: [],
        response: { 200: Type.Object({ status: Type.Literal('ready'), database: Type.String() }) },
      },
    },
    async () => {
      try {
        await sql`select 1`.execute(deps.db.db);
      } catch {
        throw new AppError('service_unavailable', 'The database does not answer');
      }
      return { status: 'ready' as const, database: deps.db.kind };
    },
  );

  await app.register(async (api) => {
    api.addHook('onRequest', async (req, reply) => {
      const match = BEARER.exec(req.headers.authorization ?? '');
      const actor = match?.[1] ? await services.operator.authenticate(match[1]) : undefined;
      if (!actor) {
        reply.header('www-authenticate', 'Bearer');
        return sendProblem(
          reply,
          new AppError(
            'unauthenticated',
            match ? 'The bearer token is not valid' : 'Send Authorization: Bearer <token>',
          ),
          req.id,
        );
      }
      req.ctx = { actor, requestId: req.id };
    });
    await api.register(organizationsRoutes(services.organizations));
    await api.register(ledgerRoutes(services.ledger));
  });

  if (deps.workers) {
    // Every process runs them; the ledger's row locks make concurrent runs safe.
    const timer = setInterval(() => {
      services.ledger.expireDueHolds().catch((err: unknown) => app.log.error({ err }, 'hold expiry failed'));
      services.ledger
        .startPendingTopUps()
        .catch((err: unknown) => app.log.error({ err }, 'top-up start failed'));
    }, 1000);
    timer.unref();
    app.addHook('onClose', async () => clearInterval(timer));
  }

  const decorated = app as unknown as App;
  decorated.decorate('services', services);
  return decorated;
}
