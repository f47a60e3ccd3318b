/**
 * The real Temporal server (go.temporal.io/server, built by scripts/install-temporal-server.sh)
 * on PostgreSQL: its databases and role, its schemas (temporal-sql-tool through
 * deploy/temporal/setup-schema.sh), the server process (deploy/temporal/config.yaml), and the
 * namespace with Sluice's search attributes (deploy/temporal/setup-namespace.sh). docker-compose.yml
 * runs the same version with the same files.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Connection } from '@temporalio/client';
import { SEARCH_ATTRIBUTE_NAMES } from '../../../contracts/ids.js';
import { TEMPORAL_CLI } from '../temporal-dev-server.js';
import { freePort } from '../free-port.js';
import { managedProcess, type ManagedProcess } from './process.js';

const run = promisify(execFile);

/** A free TCP port on 127.0.0.1 from 10000 up to `limit` (exclusive), not in `taken`. */
async function freePortBelow(limit: number, taken: readonly number[]): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 10_000 + Math.floor(Math.random() * (limit - 10_000));
    if (taken.includes(port)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const probe = net.createServer();
      probe.once('error', () => resolve(false));
      probe.listen({ port, host: '127.0.0.1', exclusive: true }, () => probe.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error(`no free port below ${limit}`);
}

/** The repository's `deploy/temporal/` folder. */
export const TEMPORAL_DEPLOY_DIR = fileURLToPath(new URL('../../../deploy/temporal/', import.meta.url));

/** The pinned server version (deploy/temporal/VERSION; docker-compose.yml's images carry the same). */
export const TEMPORAL_SERVER_VERSION = readFileSync(`${TEMPORAL_DEPLOY_DIR}VERSION`, 'utf8').trim();

const INSTALL_DIR = fileURLToPath(new URL(`../../../.tools/temporal-server/${TEMPORAL_SERVER_VERSION}/`, import.meta.url));
export const TEMPORAL_SERVER_BIN = `${INSTALL_DIR}bin/temporal-server`;
export const TEMPORAL_SQL_TOOL = `${INSTALL_DIR}bin/temporal-sql-tool`;
export const TEMPORAL_SCHEMA_DIR = `${INSTALL_DIR}schema/postgresql/v12`;

/** The search attributes in deploy/temporal/search-attributes.txt (what setup-namespace.sh registers). */
export function searchAttributeFile(): string[] {
  return readFileSync(`${TEMPORAL_DEPLOY_DIR}search-attributes.txt`, 'utf8')
    .split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
}

/** Where Temporal's PostgreSQL role and databases live. */
export interface TemporalDatabase {
  host: string;
  port: number;
  user: string;
  password: string;
}

/**
 * Creates Temporal's login role and its two databases (owned by it) when missing, connected as an
 * administrator (`adminUrl`: the embedded server's superuser, or DATABASE_URL's role, which then
 * needs CREATEDB and CREATEROLE or an existing `temporal` role).
 */
export async function ensureTemporalDatabases(adminUrl: string, db: TemporalDatabase): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const ident = (s: string) => `"${s.replaceAll('"', '""')}"`;
    const literal = (s: string) => `'${s.replaceAll("'", "''")}'`;
    const role = await client.query('select 1 from pg_roles where rolname = $1', [db.user]);
    if (role.rowCount === 0) await client.query(`create role ${ident(db.user)} login password ${literal(db.password)}`);
    else await client.query(`alter role ${ident(db.user)} login password ${literal(db.password)}`);
    for (const name of ['temporal', 'temporal_visibility']) {
      const exists = await client.query('select 1 from pg_database where datname = $1', [name]);
      if (exists.rowCount === 0) await client.query(`create database ${ident(name)} owner ${ident(db.user)}`);
    }
  } finally {
    await client.end();
  }
}

/** Runs deploy/temporal/setup-schema.sh with the pinned temporal-sql-tool (idempotent). */
export async function setupTemporalSchemas(db: TemporalDatabase): Promise<void> {
  await run('sh', [`${TEMPORAL_DEPLOY_DIR}setup-schema.sh`], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      SQL_TOOL: TEMPORAL_SQL_TOOL, SCHEMA_DIR: TEMPORAL_SCHEMA_DIR,
      SQL_HOST: db.host, SQL_PORT: String(db.port), SQL_USER: db.user, SQL_PASSWORD: db.password,
    },
    maxBuffer: 16 * 1024 * 1024,
  });
}

/** Runs deploy/temporal/setup-namespace.sh with the pinned Temporal CLI (idempotent). */
export async function setupTemporalNamespace(address: string, namespace: string): Promise<void> {
  const listed = searchAttributeFile();
  if (listed.join(',') !== SEARCH_ATTRIBUTE_NAMES.join(',')) {
    throw new Error(`deploy/temporal/search-attributes.txt (${listed.join(', ')}) differs from contracts/ids.ts (${SEARCH_ATTRIBUTE_NAMES.join(', ')})`);
  }
  await run('sh', [`${TEMPORAL_DEPLOY_DIR}setup-namespace.sh`], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', TEMPORAL_CLI, TEMPORAL_ADDRESS: address, NAMESPACE: namespace },
    maxBuffer: 16 * 1024 * 1024,
  });
}

/** Whether a Temporal frontend answers on `address`. */
export async function frontendAnswers(address: string): Promise<boolean> {
  try {
    const connection = await Connection.connect({ address, connectTimeout: 2_000 });
    try {
      await connection.workflowService.getSystemInfo({});
      return true;
    } finally {
      await connection.close();
    }
  } catch {
    return false;
  }
}

export interface TemporalServerOptions {
  db: TemporalDatabase;
  /** Frontend gRPC port; when omitted, a free one. */
  port?: number;
  /** @default 4 */
  historyShards?: number;
  onLine?: (line: string) => void;
  onCrash?: (description: string) => void;
}

export interface TemporalServer {
  address: string;
  process: ManagedProcess;
}

/**
 * Creates the server process (all four services in one process, as `temporal-server start` runs
 * them; on several hosts each runs with `--service`), on free ports, not started yet. The ports
 * stay fixed, so a restart (`process.start()` again) comes back on the same address.
 */
export async function temporalServer(options: TemporalServerOptions): Promise<TemporalServer> {
  if (!existsSync(TEMPORAL_SERVER_BIN) || !existsSync(TEMPORAL_SQL_TOOL)) {
    throw new Error(`Temporal server ${TEMPORAL_SERVER_VERSION} not found in .tools/temporal-server: run "bash scripts/install-temporal-server.sh"`);
  }
  const frontend = options.port ?? await freePort();
  const ports: Record<string, number> = {};
  for (const name of ['FRONTEND_HTTP', 'HISTORY', 'MATCHING', 'WORKER']) {
    ports[`TEMPORAL_${name}_PORT`] = await freePort();
  }
  // Membership ports are stored in a smallint column (cluster_membership.rpc_port): below 32768.
  for (const name of ['FRONTEND_MEMBERSHIP', 'HISTORY_MEMBERSHIP', 'MATCHING_MEMBERSHIP', 'WORKER_MEMBERSHIP']) {
    ports[`TEMPORAL_${name}_PORT`] = await freePortBelow(32_768, Object.values(ports));
  }
  const address = `127.0.0.1:${frontend}`;
  const env: Record<string, string> = {
    TEMPORAL_DB_HOST: options.db.host,
    TEMPORAL_DB_PORT: String(options.db.port),
    TEMPORAL_DB_USER: options.db.user,
    TEMPORAL_DB_PASSWORD: options.db.password,
    TEMPORAL_NUM_HISTORY_SHARDS: String(options.historyShards ?? 4),
    TEMPORAL_BIND_IP: '127.0.0.1',
    TEMPORAL_FRONTEND_PORT: String(frontend),
    TEMPORAL_DYNAMIC_CONFIG: `${TEMPORAL_DEPLOY_DIR}dynamicconfig.yaml`,
    TEMPORAL_LOG_LEVEL: 'warn',
    ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
  };
  const proc = managedProcess({
    name: 'temporal',
    role: 'temporal',
    command: TEMPORAL_SERVER_BIN,
    args: ['--config-file', `${TEMPORAL_DEPLOY_DIR}config.yaml`, '--allow-no-auth', 'start'],
    env,
    probe: () => frontendAnswers(address),
    readyTimeoutMs: 120_000,
    ...(options.onLine ? { onLine: options.onLine } : {}),
    ...(options.onCrash ? { onCrash: options.onCrash } : {}),
  });
  return { address, process: proc };
}
