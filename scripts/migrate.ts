/** `npm run migrate`: applies pending migrations to DATABASE_URL; exits non-zero on failure. */
import { loadConfig } from '../runtime/config.js';
import { createDb } from '../db/database.js';
import { migrateToLatest } from '../db/migrate.js';

const config = loadConfig();
if (!config.databaseUrl) {
  process.stderr.write('DATABASE_URL is required (npm start migrates the embedded database itself)\n');
  process.exit(1);
}
const { db } = createDb({ connectionString: config.databaseUrl, max: 1 });
try {
  const applied = await migrateToLatest(db);
  process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'up to date\n');
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
} finally {
  await db.destroy();
}
