/**
 * The production shape on one machine, as separate OS processes (`npm run cluster`, and the
 * cluster tests and bench): PostgreSQL (embedded, or DATABASE_URL), the real Temporal server on it
 * (PostgreSQL persistence and SQL visibility), Sluice's migrations and first-start state, then
 * API processes behind nginx, control workers and inference workers, each started with only the
 * environment its role reads (README "At scale").
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { SluiceConfig } from '../../../runtime/config.js';
import type { Logger } from '../../../runtime/logger.js';
import { createDb } from '../../../db/database.js';
import { migrateToLatest } from '../../../db/migrate.js';
import { ensureTinyGguf } from '../../../workers/llama/tiny-gguf.js';
import { ensureAdminKey, ensureModels } from '../bootstrap.js';
import { startEmbeddedPostgres, type RunningPostgres } from '../embedded-postgres.js';
import { freePort } from '../free-port.js';
import { managedProcess, type ManagedProcess } from './process.js';
import { ensureTemporalDatabases, frontendAnswers, setupTemporalNamespace, setupTemporalSchemas, temporalServer, TEMPORAL_SERVER_VERSION, type TemporalDatabase } from './temporal-server.js';
import { DEV_SERVER_DYNAMIC_CONFIG, TEMPORAL_CLI } from '../temporal-dev-server.js';
import { SEARCH_ATTRIBUTE_NAMES } from '../../../contracts/ids.js';
import { loadBalancer } from './lb.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** The roles of Sluice's own processes. */
export type SluiceRole = 'api' | 'worker-control' | 'worker-inference';

const ENTRY: Record<SluiceRole, { script: string; ready: string }> = {
  api: { script: 'scripts/api.ts', ready: 'api listening' },
  'worker-control': { script: 'scripts/worker-control.ts', ready: 'control worker running' },
  'worker-inference': { script: 'scripts/worker-inference.ts', ready: 'inference worker running' },
};

export interface ClusterOptions {
  /** The cluster's own configuration (`loadConfig()` of `npm run cluster`). */
  config: SluiceConfig;
  /** PostgreSQL's data, Temporal's and nginx's files and the process logs. @default `<SLUICE_DATA_DIR>/cluster` */
  stateDir?: string;
  /** SLUICE_DATA_DIR of the Sluice processes (generated models, upload spool). @default config.dataDir */
  sluiceDataDir?: string;
  /** @default 2 */
  apis?: number;
  /** @default 2 */
  controlWorkers?: number;
  /** Inference workers of `config.pool`. @default 2 */
  inferenceWorkers?: number;
  /** Port of the load balancer. @default config.port (0 = a free port) */
  lbPort?: number;
  /** Extra environment per role (tests: smaller pools, the instant backend). */
  roleEnv?: Partial<Record<SluiceRole, Record<string, string>>>;
  /**
   * The real server (the production shape), or the Temporal CLI's dev server (SQLite) for
   * side-by-side numbers (bench/cluster.ts) with the same processes around it. @default "server"
   */
  temporal?: 'server' | 'dev-server';
  /**
   * Restart a Sluice process, Temporal or nginx that exits on its own (what a supervisor such as
   * compose's `restart: unless-stopped` does); every such exit is logged either way. Tests leave it
   * off, so a crash stays visible. @default false
   */
  restartCrashed?: boolean;
  log: Logger;
  signal?: AbortSignal;
}

/** One Sluice process of the cluster. */
export interface ClusterProcess extends ManagedProcess {
  role: SluiceRole;
  /** The API's own URL (api processes), or the metrics listener's. */
  url: string;
}

export interface Cluster {
  /** The load balancer: what clients use. */
  url: string;
  temporalAddress: string;
  namespace: string;
  /** Sluice's database (an administrator's URL: for tests and tools, never given to inference workers). */
  databaseUrl: string;
  /** The admin key when this start stored it or it was configured; null when an earlier start stored it. */
  adminKey: string | null;
  temporal: ManagedProcess;
  lb: ManagedProcess;
  apis: ClusterProcess[];
  controlWorkers: ClusterProcess[];
  inferenceWorkers: ClusterProcess[];
  /** Every process the cluster started, Temporal and nginx included (PostgreSQL runs embedded in this process' children). */
  processes(): ManagedProcess[];
  /** Stops and starts PostgreSQL again (embedded only). */
  restartPostgres(): Promise<void>;
  /** PID of the PostgreSQL server (embedded only), for CPU figures. */
  postgresPid(): Promise<number | null>;
  /** What runs where, one line each. */
  summary(): string[];
  /** Children first (load balancer, APIs, workers), then Temporal, then PostgreSQL. */
  stop(): Promise<void>;
}

function dbParts(url: string): { host: string; port: number } {
  const u = new URL(url);
  const host = decodeURIComponent(u.hostname);
  return { host: host.startsWith('/') || host === '' ? '127.0.0.1' : host, port: Number(u.port || 5432) };
}

/** Starts the cluster; on any failure (or an abort) stops what it started and rejects. */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const { config, log } = options;
  const stateDir = path.resolve(options.stateDir ?? path.join(config.dataDir, 'cluster'));
  const sluiceDataDir = path.resolve(options.sluiceDataDir ?? config.dataDir);
  await fs.mkdir(path.join(stateDir, 'logs'), { recursive: true });
  const logFiles: WriteStream[] = [];
  const logTo = (name: string) => {
    const file = createWriteStream(path.join(stateDir, 'logs', `${name}.log`), { flags: 'a' });
    logFiles.push(file);
    return (line: string) => file.write(line + '\n');
  };
  const undo: Array<() => Promise<void>> = [];
  const unwind = async () => {
    stopping = true;
    for (const step of undo.reverse()) await step().catch((e: unknown) => log.warn('cluster stop step failed', { error: e instanceof Error ? e.message : String(e) }));
    undo.length = 0;
    for (const f of logFiles) f.end();
  };
  const check = () => options.signal?.throwIfAborted();
  let stopping = false;
  const supervised: ManagedProcess[] = [];
  /** Logs a crash and, when asked to, starts the process again after a second. */
  const onCrash = (description: string) => {
    log.error('cluster process exited on its own', { child: description });
    if (!options.restartCrashed || stopping) return;
    const proc = supervised.find((p) => description.startsWith(`${p.spec.name} `));
    setTimeout(() => {
      if (stopping || !proc || proc.running()) return;
      log.warn('restarting', { child: proc.spec.name });
      proc.start().catch((err: unknown) => log.error('restart failed', { child: proc.spec.name, error: err instanceof Error ? err.message.slice(0, 500) : String(err) }));
    }, 1000).unref();
  };
  try {
    // PostgreSQL.
    const pgPort = config.embeddedPgPort;
    const pgDir = path.join(stateDir, 'postgres');
    let postgres: RunningPostgres | null = null;
    const pgOnLog = logTo('postgres');
    const startPostgres = async () => {
      postgres = await startEmbeddedPostgres({ dir: pgDir, port: pgPort, database: 'sluice', onLog: pgOnLog });
      return postgres;
    };
    const databaseUrl = config.databaseUrl ?? (await startPostgres()).url;
    undo.push(async () => { await postgres?.stop(); });
    check();
    const temporal = options.temporal === 'dev-server'
      ? devServer(path.join(stateDir, 'temporal-dev.db'), config.embeddedTemporalPort, config.temporalNamespace, logTo('temporal'), onCrash)
      : await realServer(config, databaseUrl, stateDir, logTo('temporal'), onCrash);
    supervised.push(temporal.process);
    undo.push(() => temporal.process.stop(15_000));
    await temporal.process.start();
    check();
    if (options.temporal !== 'dev-server') await setupTemporalNamespace(temporal.address, config.temporalNamespace);
    check();

    // Sluice's schema and first-start state (compose's `migrate` step), here and not in two
    // control workers at once.
    const { db } = createDb({ connectionString: databaseUrl, max: 2 });
    let adminKey: string | null = config.adminKey;
    let streamUrl: string | null = null;
    try {
      await migrateToLatest(db);
      const admin = await ensureAdminKey(db, config.adminKey);
      if (admin.created) adminKey = admin.secret;
      await ensureModels(db, { pool: config.pool, contextSize: config.contextSize, ggufModels: config.ggufModels });
    } finally {
      await db.destroy();
    }
    if (!config.databaseUrl) streamUrl = await ensureStreamWriter(databaseUrl, await secretFile(path.join(stateDir, 'stream-writer-password')));
    else if (config.streamDatabaseUrl) streamUrl = config.streamDatabaseUrl;
    await ensureTinyGguf(path.join(sluiceDataDir, 'models'));
    check();

    // Sluice's processes, each with only what its role reads.
    const common: Record<string, string> = {
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: config.temporalNamespace,
      SLUICE_DATA_DIR: sluiceDataDir,
      SLUICE_LOG_LEVEL: config.logLevel === 'debug' ? 'debug' : 'info',
      ...(config.payloadKey ? { SLUICE_PAYLOAD_KEY: config.payloadKey } : {}),
      ...(config.payloadKeyPrevious ? { SLUICE_PAYLOAD_KEY_PREVIOUS: config.payloadKeyPrevious } : {}),
    };
    const withDb = { DATABASE_URL: databaseUrl, ...(config.auditKey ? { SLUICE_AUDIT_KEY: config.auditKey } : {}) };
    const sluice = async (role: SluiceRole, name: string): Promise<ClusterProcess> => {
      const port = await freePort();
      const env: Record<string, string> = role === 'api'
        ? { ...common, ...withDb, PORT: String(port) }
        : role === 'worker-control'
          ? { ...common, ...withDb, SLUICE_METRICS_PORT: String(port) }
          : {
            ...common, SLUICE_POOL: config.pool, SLUICE_METRICS_PORT: String(port),
            SLUICE_SLOTS: String(config.slots), SLUICE_THREADS: String(config.threads), SLUICE_CONTEXT_SIZE: String(config.contextSize),
            ...(streamUrl ? { SLUICE_STREAM_DATABASE_URL: streamUrl } : {}),
          };
      Object.assign(env, options.roleEnv?.[role] ?? {});
      const entry = ENTRY[role];
      const proc = managedProcess({
        name, role,
        command: process.execPath,
        args: ['--import', 'tsx', path.join(ROOT, entry.script)],
        cwd: ROOT,
        env,
        ready: (line) => line.includes(`"msg":"${entry.ready}"`),
        readyTimeoutMs: 180_000,
        onLine: logTo(name),
        onCrash,
      });
      supervised.push(proc);
      undo.push(() => proc.stop(30_000));
      return Object.assign(proc, { role, url: `http://127.0.0.1:${port}` });
    };
    const controlWorkers = await Promise.all(Array.from({ length: options.controlWorkers ?? 2 }, (_, i) => sluice('worker-control', `worker-control-${i + 1}`)));
    const inferenceWorkers = await Promise.all(Array.from({ length: options.inferenceWorkers ?? 2 }, (_, i) => sluice('worker-inference', `worker-inference-${config.pool}-${i + 1}`)));
    const apis = await Promise.all(Array.from({ length: options.apis ?? 2 }, (_, i) => sluice('api', `api-${i + 1}`)));
    // Control workers bundle the workflow code at start (CPU-bound): one after the other on a small machine.
    for (const w of controlWorkers) {
      await w.start();
      check();
    }
    await Promise.all([...inferenceWorkers, ...apis].map((p) => p.start()));
    check();

    const lb = await loadBalancer({
      dir: path.join(stateDir, 'nginx'), port: options.lbPort ?? (config.port === 0 ? await freePort() : config.port),
      upstreams: apis.map((a) => new URL(a.url).host), onLine: logTo('lb'), onCrash,
    });
    supervised.push(lb.process);
    undo.push(() => lb.process.stop(10_000));
    await lb.process.start();

    const all = (): ManagedProcess[] => [lb.process, ...apis, ...controlWorkers, ...inferenceWorkers, temporal.process];
    return {
      url: lb.url,
      temporalAddress: temporal.address,
      namespace: config.temporalNamespace,
      databaseUrl,
      adminKey,
      temporal: temporal.process,
      lb: lb.process,
      apis, controlWorkers, inferenceWorkers,
      processes: all,
      async restartPostgres() {
        if (config.databaseUrl) throw new Error('PostgreSQL is external (DATABASE_URL): restart it yourself');
        const running = postgres as RunningPostgres | null;
        await running?.stop();
        await startPostgres();
      },
      async postgresPid() {
        if (config.databaseUrl) return null;
        const text = await fs.readFile(path.join(pgDir, 'postmaster.pid'), 'utf8').catch(() => null);
        const pid = Number(text?.split('\n')[0]);
        return Number.isInteger(pid) && pid > 0 ? pid : null;
      },
      summary() {
        const lines = [
          `  load balancer    ${lb.url}/v1   (nginx, pid ${lb.process.pid() ?? '-'}) -> ${apis.map((a) => new URL(a.url).host).join(', ')}`,
          ...apis.map((a) => `  ${a.spec.name.padEnd(16)} ${a.url}   (pid ${a.pid() ?? '-'})`),
          ...controlWorkers.map((w) => `  ${w.spec.name.padEnd(16)} metrics ${w.url}/metrics   (pid ${w.pid() ?? '-'})`),
          ...inferenceWorkers.map((w) => `  ${w.spec.name.padEnd(16)} metrics ${w.url}/metrics   (pid ${w.pid() ?? '-'}; no database URL)`),
          `  temporal         ${temporal.address}   (${options.temporal === 'dev-server' ? 'the CLI dev server on SQLite' : `server ${TEMPORAL_SERVER_VERSION} on PostgreSQL`}, pid ${temporal.process.pid() ?? '-'}; namespace ${config.temporalNamespace})`,
          `  postgres         ${config.databaseUrl ? '(external, DATABASE_URL)' : `127.0.0.1:${pgPort}   (embedded, ${pgDir})`}`,
          `  logs             ${path.join(stateDir, 'logs')}`,
        ];
        return lines;
      },
      stop: unwind,
    };
  } catch (err) {
    await unwind();
    throw err;
  }
}

/** Temporal's databases, role and schemas on the cluster's PostgreSQL, and the server process (not started). */
async function realServer(config: SluiceConfig, databaseUrl: string, stateDir: string, onLine: (line: string) => void, onCrash: (description: string) => void) {
  const temporalDb: TemporalDatabase = config.databaseUrl
    ? { ...dbParts(config.databaseUrl), user: decodeURIComponent(new URL(config.databaseUrl).username), password: decodeURIComponent(new URL(config.databaseUrl).password) }
    : { host: '127.0.0.1', port: config.embeddedPgPort, user: 'temporal', password: await secretFile(path.join(stateDir, 'temporal-db-password')) };
  await ensureTemporalDatabases(databaseUrl, temporalDb).catch((err: unknown) => {
    throw new Error(`creating Temporal's role and databases failed (with DATABASE_URL: create "temporal" and "temporal_visibility" owned by that role first): ${err instanceof Error ? err.message : String(err)}`);
  });
  await setupTemporalSchemas(temporalDb);
  return temporalServer({ db: temporalDb, port: config.embeddedTemporalPort, onLine, onCrash });
}

/** The Temporal CLI's dev server as a cluster process, with the same search attributes and dynamic config as `npm start`'s. */
function devServer(dbFile: string, port: number, namespace: string, onLine: (line: string) => void, onCrash: (description: string) => void) {
  const address = `127.0.0.1:${port}`;
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--headless', '--log-level', 'warn',
    '--db-filename', dbFile, '--sqlite-pragma', 'journal_mode=wal', '--sqlite-pragma', 'synchronous=normal'];
  if (namespace !== 'default') args.push('--namespace', namespace);
  for (const name of SEARCH_ATTRIBUTE_NAMES) args.push('--search-attribute', `${name}=Keyword`);
  for (const [key, value] of Object.entries(DEV_SERVER_DYNAMIC_CONFIG)) args.push('--dynamic-config-value', `${key}=${value}`);
  const proc = managedProcess({ name: 'temporal', role: 'temporal', command: TEMPORAL_CLI, args, env: {}, probe: () => frontendAnswers(address), readyTimeoutMs: 60_000, onLine, onCrash });
  return { address, process: proc };
}

/** A random secret kept in `file` (made on first use), so a restarted cluster reuses it. */
async function secretFile(file: string): Promise<string> {
  const existing = await fs.readFile(file, 'utf8').catch(() => null);
  if (existing && existing.trim()) return existing.trim();
  const secret = randomBytes(24).toString('hex');
  await fs.writeFile(file, secret, { mode: 0o600 });
  return secret;
}

/**
 * A login role granted only `sluice_stream_writer` (migration 0202) for the inference workers'
 * stream chunks: they get this URL, never DATABASE_URL.
 */
async function ensureStreamWriter(adminUrl: string, password: string): Promise<string> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const literal = `'${password.replaceAll("'", "''")}'`;
    const exists = await client.query("select 1 from pg_roles where rolname = 'sluice_stream'");
    if (exists.rowCount === 0) await client.query(`create role sluice_stream login password ${literal} in role sluice_stream_writer`);
    else await client.query(`alter role sluice_stream login password ${literal}`);
  } finally {
    await client.end();
  }
  const u = new URL(adminUrl);
  u.username = 'sluice_stream';
  u.password = password;
  return u.toString();
}
