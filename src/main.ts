import { buildApp } from './app.js';
import { type Config, ConfigError, loadConfig } from './config.js';
import { createDb } from './db/client.js';
import { migrate } from './db/migrate.js';

/**
 * config -> db -> migrate -> buildApp -> listen. SIGTERM/SIGINT stop accepting connections,
 * let in-flight requests finish, then close the database.
 */
export async function serve(config: Config): Promise<void> {
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
      workers: true,
    });
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
    throw err;
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    app?.log.info({ signal }, 'shutting down');
    const timer = setTimeout(() => process.exit(1), 30_000);
    timer.unref();
    if (app) {
      const closing = app.close();
      // A keep-alive connection whose request was in flight at close becomes idle only
      // afterwards; close such connections as they go idle instead of waiting for their timeout.
      const sweep = setInterval(() => app?.server.closeIdleConnections(), 50);
      await closing;
      clearInterval(sweep);
    }
    await db.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
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
