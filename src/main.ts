import type { FastifyBaseLogger } from 'fastify';
import { buildApp } from './app.js';
import { type Config, ConfigError, loadConfig } from './config.js';
import { createDb } from './db/client.js';
import { migrate } from './db/migrate.js';
import type { ProcessErrorKind } from './lib/metrics.js';

/**
 * config -> (tracing) -> db -> migrate -> buildApp -> listen. SIGTERM/SIGINT: /readyz answers 503,
 * requests in flight get up to SHUTDOWN_DRAIN_MS to finish, then the listener and the database
 * close.
 */
export async function serve(config: Config): Promise<void> {
  // Loaded only when asked for: without the variable, no tracing code is even imported.
  const tracing = config.otelEndpoint
    ? await (await import('./lib/tracing.js')).startTracing(config.otelEndpoint)
    : undefined;
  const db = await createDb(config);
  let app: Awaited<ReturnType<typeof buildApp>> | undefined;
  try {
    const migrated = await migrate(db.db);
    app = await buildApp({
      db,
      adminToken: config.adminToken,
      authSecret: config.authSecret,
      publicUrl: publicUrlOf(config),
      logger: { level: config.logLevel },
      rateLimit: config.rateLimit,
      ledgerLanes: config.ledgerLanes,
      smtpUrl: config.smtpUrl,
      mailFrom: config.mailFrom,
      dnsServers: config.dnsServers,
      requireEmailVerification: config.requireEmailVerification,
      signUp: config.signUp,
      planChanges: config.planChanges,
      workers: true,
      metricsToken: config.metricsToken,
      processMetrics: true,
      ...(tracing ? { instrument: tracing.instrument } : {}),
    });
    installProcessHandlers(app.log, app.metrics.processError);
    for (const name of migrated.applied) app.log.info({ migration: name }, 'migration applied');
    const { generatedToken } = await app.services.operator.bootstrap();
    if (generatedToken) {
      // Printed once, on purpose outside the JSON log: only its hash is stored.
      process.stdout.write(
        `\nOrgbase operator token (shown once, only its hash is kept):\n\n  ${generatedToken}\n\n` +
          'Use it as "Authorization: Bearer <token>". Replace it with `orgbase admin-token rotate`.\n\n',
      );
    }
    await app.listen({ port: config.port, host: config.host });
  } catch (err) {
    await app?.close();
    await db.close();
    await tracing?.shutdown();
    throw err;
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping || !app) return;
    stopping = true;
    const drainMs = config.shutdownDrainMs;
    app.log.info({ signal, drain_ms: drainMs }, 'shutting down');
    const timer = setTimeout(() => process.exit(1), drainMs + 30_000);
    timer.unref();
    // Readiness fails first, while the listener stays open, so a load balancer sees it and
    // stops sending; what is in flight (and what still arrives) is served meanwhile.
    app.drain.begin();
    const drained = await app.drain.settled(drainMs);
    if (!drained)
      app.log.warn({ in_flight: app.drain.inFlight }, 'drain window over: closing connections in use');
    app.drain.close();
    const closing = app.close();
    if (!drained) app.server.closeAllConnections();
    // A keep-alive connection whose request was in flight at close becomes idle only
    // afterwards; close such connections as they go idle instead of waiting for their timeout.
    const sweep = setInterval(() => app?.server.closeIdleConnections(), 50);
    await closing;
    clearInterval(sweep);
    await db.close();
    await tracing?.shutdown();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
}

/**
 * A promise nobody handled, or an exception nobody caught, is logged at error level and the
 * process keeps serving. A rejection is some request's or timer's failure, and a request must
 * never stop the service. An uncaught exception could in principle leave in-process state half
 * updated, but every durable fact lives in the database, committed atomically, and what a process
 * caches is checked against it (the ledger's row versions): exiting would turn one bad request
 * into an outage for every request in flight, and one a client could repeat at will.
 * `orgbase_process_errors_total` counts both, for alerting.
 */
export function installProcessHandlers(
  log: Pick<FastifyBaseLogger, 'error'>,
  count: (kind: ProcessErrorKind) => void = () => {},
): void {
  process.on('unhandledRejection', (reason) => {
    count('unhandled_rejection');
    log.error({ err: reason }, 'unhandled promise rejection');
  });
  process.on('uncaughtException', (err) => {
    count('uncaught_exception');
    log.error({ err }, 'uncaught exception');
  });
}

/** PUBLIC_URL, else where this process listens (links in mail must reach it). */
function publicUrlOf(config: Config): string | undefined {
  if (config.publicUrl) return config.publicUrl;
  if (config.port === 0) return undefined;
  const host = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${config.port}`;
}

export function loadConfigOrExit(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}
