// Prints the SQL Better Auth needs for our configuration, to be committed as a migration.
// Run: npx tsx scripts/auth-schema.ts
import { getMigrations } from 'better-auth/db/migration';
import { createPgliteDb, openPglite } from '../src/db/client.js';
import { authOptions } from '../src/modules/auth/auth.config.js';

const handle = createPgliteDb(await openPglite('memory://'));
const { compileMigrations } = await getMigrations(
  authOptions({ db: handle.db, secret: 'x'.repeat(32), baseURL: 'http://localhost' }),
);
process.stdout.write(`${await compileMigrations()}\n`);
await handle.close();
