#!/usr/bin/env -S node --max-semi-space-size=32
import { Command } from 'commander';
import { buildApp } from '../app.js';
import { createDb } from '../db/client.js';
import { migrate } from '../db/migrate.js';
import { loadConfigOrExit, serve } from '../main.js';
import { createOperatorService } from '../modules/operator/operator.service.js';

/**
 * Opens the database for a command the operator API also offers: on PGlite, while a server holds
 * the data directory, the refusal says where to go instead.
 */
async function openBesideServer(config: ReturnType<typeof loadConfigOrExit>, instead: string) {
  try {
    return await createDb(config);
  } catch (err) {
    if (err instanceof Error && /is in use by process/.test(err.message))
      err.message += ` While that server runs, use its operator API instead: ${instead}.`;
    throw err;
  }
}

const program = new Command()
  .name('orgbase')
  .description('Organizations, members and an exact credits ledger for AI-agent platforms')
  .version('0.1.0');

program
  .command('serve')
  .description('Run the HTTP API (migrates the database first)')
  .action(async () => {
    await serve(loadConfigOrExit());
  });

program
  .command('migrate')
  .description('Apply pending database migrations and exit')
  .action(async () => {
    const config = loadConfigOrExit();
    const db = await createDb(config);
    try {
      const result = await migrate(db.db);
      process.stdout.write(
        result.applied.length
          ? `Applied ${result.applied.join(', ')}; schema at version ${result.current}\n`
          : `Nothing to apply; schema at version ${result.current}\n`,
      );
    } finally {
      await db.close();
    }
  });

program
  .command('admin-token')
  .description('Manage the stored operator token (not used when ADMIN_TOKEN is set)')
  .command('rotate')
  .description('Revoke the stored operator token and print a new one')
  .action(async () => {
    const config = loadConfigOrExit();
    const db = await openBesideServer(config, 'POST /api/operator/admin-token/rotate');
    try {
      await migrate(db.db);
      const token = await createOperatorService({ db: db.db, adminToken: undefined }).rotate();
      process.stdout.write(`${token}\n`);
      if (config.adminToken)
        process.stderr.write(
          'Note: ADMIN_TOKEN is set, so the server uses it instead of the stored token.\n',
        );
    } finally {
      await db.close();
    }
  });

program
  .command('ledger')
  .description('Ledger maintenance')
  .command('verify')
  .description(
    'Check that every transaction sums to zero and every balance equals its entries; exit 1 if not',
  )
  .action(async () => {
    const config = loadConfigOrExit();
    const db = await openBesideServer(config, 'GET /api/ledger/verify');
    try {
      const app = await buildApp({ db, adminToken: undefined });
      const report = await app.services.ledger.verify({
        actor: { type: 'operator', id: 'cli' },
        requestId: 'cli',
      });
      process.stdout.write(
        `${report.transactions} transactions, ${report.accounts} accounts: ${report.ok ? 'OK' : `${report.violations.length} violation(s)`}\n`,
      );
      for (const v of report.violations)
        process.stdout.write(
          `  ${v.kind} ${v.organization_id} ${v.subject}: expected ${v.expected}, found ${v.actual}\n`,
        );
      await app.close();
      if (!report.ok) process.exitCode = 1;
    } finally {
      await db.close();
    }
  });

program
  .command('mailbox')
  .description('Show the local mailbox: mail kept when SMTP_URL is unset (newest first)')
  .option('-n, --limit <n>', 'how many messages', '10')
  .action(async (opts: { limit: string }) => {
    const config = loadConfigOrExit();
    const db = await createDb(config);
    try {
      const app = await buildApp({ db, adminToken: undefined });
      const messages = await app.services.mail.mailbox(Math.max(1, Math.min(500, Number(opts.limit) || 10)));
      if (messages.length === 0) process.stdout.write('The mailbox is empty.\n');
      for (const m of messages)
        process.stdout.write(
          `--- ${m.created_at}  ${m.id}\nTo: ${m.to}\nFrom: ${m.from}\nSubject: ${m.subject}\n\n${m.text}\n\n`,
        );
      await app.close();
    } finally {
      await db.close();
    }
  });

program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`orgbase: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
