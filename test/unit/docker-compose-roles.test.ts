/**
 * The database roles of docker-compose.yml, on a real PostgreSQL (embedded, its own cluster): the
 * `postgres-roles` one-shot's script runs as written in the file (twice: every `up` re-runs it),
 * then Sluice's migrations run as the `sluice` role it made (not a superuser, no CREATEROLE), then
 * the inference workers' `sluice_stream` login appends a streamed chunk and can read nothing.
 * No Docker engine: the script is the file's own text, run by psql.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createDb } from '../../db/database.js';
import { migrateToLatest } from '../../db/migrate.js';
import { publishChunk, readChunks } from '../../db/repositories/streams.js';
import { startEmbeddedPostgres, type RunningPostgres } from '../../scripts/lib/embedded-postgres.js';
import { freePort } from '../../scripts/lib/free-port.js';

const run = promisify(execFile);
const PSQL = '/usr/bin/psql';

interface Service { environment?: Record<string, unknown>; command?: string[] }
const compose = parse(readFileSync(new URL('../../docker-compose.yml', import.meta.url), 'utf8'), { merge: true }) as { services: Record<string, Service> };
const rolesService = compose.services['postgres-roles']!;
/** The one-shot's shell script, with Compose's `$$` escapes resolved as Compose does. */
const script = (rolesService.command ?? []).join('\n').replaceAll('$$', '$');

const passwords = { SLUICE_DB_PASSWORD: 'sluice-pw', TEMPORAL_DB_PASSWORD: 'temporal-pw', SLUICE_STREAM_DB_PASSWORD: 'stream-pw' };
let root: string;
let server: RunningPostgres;
let port: number;

beforeAll(async () => {
  if (!existsSync(PSQL)) throw new Error(`${PSQL} missing: install Debian's postgresql-client`);
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-roles-'));
  // World-traversable: as root, PostgreSQL runs as the postgres user.
  await fs.chmod(root, 0o755);
  port = await freePort();
  server = await startEmbeddedPostgres({ dir: path.join(root, 'pg'), port, database: 'postgres' });
}, 120_000);
afterAll(async () => {
  await server?.stop();
  if (root) await fs.rm(root, { recursive: true, force: true });
});

/** Runs the one-shot's script against the test server, as its environment in the file gives it. */
async function runRolesScript(): Promise<void> {
  const superuser = new URL(server.url);
  await run('/bin/sh', ['-c', script], {
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: decodeURIComponent(superuser.username), PGPASSWORD: decodeURIComponent(superuser.password),
      ...passwords,
    },
  });
}

const urlAs = (user: string, password: string) => `postgres://${user}:${password}@127.0.0.1:${port}/sluice`;

describe('docker-compose.yml database roles, on a real PostgreSQL', () => {
  it('makes the roles and databases, idempotently', async () => {
    expect(script).toMatch(/psql/);
    await runRolesScript();
    await runRolesScript();
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    try {
      const { rows } = await admin.query<{ rolname: string; rolsuper: boolean; rolcreaterole: boolean; rolcanlogin: boolean }>(
        `select rolname, rolsuper, rolcreaterole, rolcanlogin from pg_roles where rolname in ('sluice', 'temporal', 'sluice_stream', 'sluice_stream_writer') order by rolname`);
      expect(rows).toEqual([
        { rolname: 'sluice', rolsuper: false, rolcreaterole: false, rolcanlogin: true },
        { rolname: 'sluice_stream', rolsuper: false, rolcreaterole: false, rolcanlogin: true },
        { rolname: 'sluice_stream_writer', rolsuper: false, rolcreaterole: false, rolcanlogin: false },
        { rolname: 'temporal', rolsuper: false, rolcreaterole: false, rolcanlogin: true },
      ]);
    } finally {
      await admin.end();
    }
  });

  it("runs every Sluice migration as the `sluice` role, then lets the stream writer append a chunk and read nothing", async () => {
    const owner = createDb({ connectionString: urlAs('sluice', passwords.SLUICE_DB_PASSWORD), max: 2 });
    const writer = createDb({ connectionString: urlAs('sluice_stream', passwords.SLUICE_STREAM_DB_PASSWORD), max: 2 });
    try {
      const applied = await migrateToLatest(owner.db);
      expect(applied).toContain('2026-12-01-0202-stream-chunks');
      const id = await publishChunk(writer.db, { requestId: 'req_roles', attempt: 'd:1', model: 'm', content: 'hello' });
      expect(id).toBeGreaterThan(0);
      expect((await readChunks(owner.db, 'req_roles', 0)).map((c) => c.content)).toEqual(['hello']);
      // The writer reads no chunk text, and no other table.
      await expect(readChunks(writer.db, 'req_roles', 0)).rejects.toThrow(/permission denied/);
      await expect(writer.pool.query('select id from requests limit 1')).rejects.toThrow(/permission denied/);
      await expect(writer.pool.query('select id from api_keys limit 1')).rejects.toThrow(/permission denied/);
    } finally {
      await writer.db.destroy();
      await owner.db.destroy();
    }
  });
});
