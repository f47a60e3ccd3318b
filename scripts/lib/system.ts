/**
 * Assembles Sluice's processes from their parts. `npm start` runs all of them in one process;
 * the separate entry points (`scripts/api.ts`, `workers/*-main.ts`) run one each; tests build the
 * same stack in-process against real servers.
 */
import path from 'node:path';
import type { Server } from 'node:http';
import { Client } from '@temporalio/client';
import { NativeConnection, type Worker, type WorkerOptions } from '@temporalio/worker';
import type pg from 'pg';
import { createDb, type Db } from '../../db/database.js';
import { migrateToLatest } from '../../db/migrate.js';
import { createApp, type AppConfig } from '../../api/app.js';
import { createStreamHub, type StreamHub } from '../../api/stream-hub.js';
import { createControlWorker } from '../../workers/control-worker.js';
import { ensureReconcileSchedule } from '../../workers/schedules.js';
import { createInferenceWorkers } from '../../workers/inference-worker.js';
import { startOpsMetrics, type OpsMetricsRefresher } from '../../workers/ops-metrics.js';
import { ensureBillingSchedule, ensureDayCloseSchedule } from '../../workers/billing-schedule.js';
import { createBackendRegistry, type BackendRegistry, type BackendRegistryOptions } from '../../activities/backends/registry.js';
import { createMetrics, type Metrics } from '../../runtime/metrics.js';
import { payloadCodecsFor } from '../../runtime/payload-codec.js';
import { temporalTlsOptions } from '../../runtime/temporal-runtime.js';
import { installTracing, type Tracing } from '../../runtime/tracing.js';
import type { Logger } from '../../runtime/logger.js';
import type { SluiceConfig } from '../../runtime/config.js';
import type { BreakerConfig } from '../../domain/circuit-breaker.js';
import { startEmbeddedPostgres, type RunningPostgres } from './embedded-postgres.js';
import { startTemporalDevServer, type RunningDevServer } from './temporal-dev-server.js';

export interface Infra {
  databaseUrl: string;
  temporalAddress: string;
  temporalUiUrl: string | null;
  postgres: RunningPostgres | null;
  temporal: RunningDevServer | null;
  stop(): Promise<void>;
}

/**
 * Starts embedded PostgreSQL and the Temporal dev server unless the config points at external ones.
 * `devServerArgs` go to the dev server's command line after Sluice's own (benchmarks only).
 */
export async function startInfra(config: SluiceConfig, log: Logger, signal?: AbortSignal, devServerArgs: readonly string[] = []): Promise<Infra> {
  const postgres = config.databaseUrl
    ? null
    : await startEmbeddedPostgres({ dir: path.join(config.dataDir, 'postgres'), port: config.embeddedPgPort, onLog: (l) => log.debug('postgres', { line: l }) });
  let temporal: RunningDevServer | null = null;
  try {
    signal?.throwIfAborted();
    temporal = config.temporalAddress
      ? null
      : await startTemporalDevServer({
        dbFile: path.join(config.dataDir, 'temporal.db'),
        port: config.embeddedTemporalPort,
        namespace: config.temporalNamespace,
        onLog: (l) => log.debug('temporal', { line: l.slice(0, 500) }),
        ...(signal ? { signal } : {}),
        extraArgs: devServerArgs,
      });
  } catch (err) {
    await postgres?.stop();
    throw err;
  }
  return {
    databaseUrl: config.databaseUrl ?? (postgres as RunningPostgres).url,
    temporalAddress: config.temporalAddress ?? (temporal as RunningDevServer).address,
    temporalUiUrl: temporal?.uiUrl ?? null,
    postgres,
    temporal,
    async stop() {
      await temporal?.stop();
      await postgres?.stop();
    },
  };
}

/**
 * The inference backends' options from the config, for every process that runs inference workers
 * (`npm start` and `npm run worker:inference` alike: the standalone worker used to drop the
 * response-size cap and SLUICE_ENABLE_INSTANT_BACKEND).
 */
export function backendRegistryOptions(config: SluiceConfig): BackendRegistryOptions {
  return {
    dataDir: config.dataDir, slots: config.slots, threads: config.threads, contextSize: config.contextSize, gpu: config.gpu, upstreamKeys: config.upstreamKeys,
    fullSteps: config.llamaFullSteps,
    allowPrivateUpstreams: config.allowPrivateUpstreams,
    maxResponseBytes: config.upstreamMaxResponseBytes, enableInstantBackend: config.enableInstantBackend,
  };
}

export interface Stack {
  db: Db;
  pool: pg.Pool;
  client: Client;
  metrics: Metrics;
  workers: Worker[];
  backends: BackendRegistry | null;
  server: Server | null;
  /** The API's base URL when the API was started. */
  url: string | null;
  stop(): Promise<void>;
}

export interface StackOptions {
  databaseUrl: string;
  temporalAddress: string;
  /** Start the API on config.port (0 = any free port). */
  api: boolean;
  control: boolean;
  /** Pools to start inference workers for, in this process. */
  pools: readonly string[];
  workflowBundle?: WorkerOptions['workflowBundle'] | null;
  breaker?: BreakerConfig;
  /** Run migrations first. @default true */
  migrate?: boolean;
  log: Logger;
  /**
   * Traces, installed by the caller (tests: an in-memory exporter); the stack then leaves its
   * shutdown to the caller. Undefined: installed here from `config.tracing` (null = off) and shut
   * down by `stop()`. @default undefined
   */
  tracing?: Tracing | null;
}

/** The API's settings from the configuration (`eagerStart`: a control worker shares the client's connection). */
export function apiConfigOf(config: SluiceConfig, options: { eagerStart: boolean }): AppConfig {
  return {
    maxBodyBytes: config.maxBodyBytes, namespace: config.temporalNamespace, pools: config.pools,
    eagerStart: options.eagerStart, earlyAnswer: config.earlyAnswer,
    files: { maxBytes: config.fileMaxBytes, maxLines: config.fileMaxLines, maxLineBytes: config.fileMaxLineBytes },
    tenantCaps: config.tenantCaps, uploadProgress: config.uploadProgress, spoolDir: path.join(config.dataDir, 'uploads'),
    batches: { concurrency: config.batchConcurrency, linesPerRun: config.batchLinesPerRun, chunkLines: config.batchChunkLines },
    requestTimeoutMs: config.requestTimeoutMs, auditKey: config.auditKey, webhooks: config.webhooks,
    allowPrivateUpstreams: config.allowPrivateUpstreams, enableInstantBackend: config.enableInstantBackend,
    metricsToken: config.metricsToken,
  };
}

/** Opens the pool and connections and starts the requested roles. `stop()` undoes all of it, in order. */
export async function startStack(config: SluiceConfig, options: StackOptions): Promise<Stack> {
  // Before the pool: the pg instrumentation patches the driver once, per process.
  const tracing = options.tracing !== undefined ? options.tracing : await installTracing(config.tracing, options.log);
  const ownTracing = options.tracing === undefined ? tracing : null;
  const { db, pool } = createDb({ connectionString: options.databaseUrl, max: config.dbPoolSize, timeouts: config.dbTimeouts });
  if (options.migrate ?? true) await migrateToLatest(db);
  const metrics = createMetrics();
  // One native (Rust) connection for the client and the workers: measured ~2x lower latency per
  // call than the grpc-js `Connection` here, and sharing it lets the API ask for eager workflow
  // start (the first workflow task goes straight to the in-process control worker).
  const tls = await temporalTlsOptions(config.temporalTls);
  const connection = await NativeConnection.connect({ address: options.temporalAddress, ...(tls ? { tls } : {}) });
  // Payloads (prompts, completions) are encrypted by the client and every worker alike when
  // SLUICE_PAYLOAD_KEY is set: the same codecs on all three, or histories cannot be read.
  const payloadCodecs = payloadCodecsFor(config);
  const client = new Client({ connection, namespace: config.temporalNamespace, dataConverter: { payloadCodecs }, ...(tracing ? { interceptors: tracing.clientInterceptors } : {}) });
  const workers: Worker[] = [];
  const running: Array<Promise<void>> = [];
  let backends: BackendRegistry | null = null;
  let server: Server | null = null;
  let opsMetrics: OpsMetricsRefresher | null = null;

  if (options.control) {
    const w = await createControlWorker(
      {
        namespace: config.temporalNamespace, workflowBundle: options.workflowBundle ?? null, payloadCodecs, workflowThreads: config.workflowThreads,
        ...(tracing ? { interceptors: tracing.workerInterceptors, sinks: tracing.sinks } : {}),
      },
      connection,
      { db, metrics, temporal: client, auditKey: config.auditKey, webhooks: config.webhooks, responseCache: config.responseCache, log: options.log, ...(options.breaker ? { breaker: options.breaker } : {}) },
    );
    workers.push(w);
    // Idempotent: the monthly billing Schedule (`temporal schedule list`).
    await ensureBillingSchedule(client);
    await ensureDayCloseSchedule(client);
    await ensureReconcileSchedule(client);
    // Budget use, batch progress and the audit chain's verdict as gauges (workers/ops-metrics.ts).
    opsMetrics = startOpsMetrics({ db, metrics, auditKey: config.auditKey, log: options.log, intervalMs: config.opsMetricsIntervalMs });
  }
  if (options.pools.length > 0) {
    backends = createBackendRegistry(backendRegistryOptions(config));
    for (const p of options.pools) {
      workers.push(...await createInferenceWorkers({
        namespace: config.temporalNamespace, pool: p, slots: config.slots, payloadCodecs,
        ...(tracing?.workerInterceptors.activity ? { activityInterceptors: tracing.workerInterceptors.activity } : {}),
      }, connection, { backends, metrics, streamDb: db }));
    }
  }
  for (const w of workers) {
    running.push(w.run().catch((err: unknown) => options.log.error('worker stopped with an error', { error: err instanceof Error ? err.message : String(err) })));
  }

  let url: string | null = null;
  let streams: StreamHub | null = null;
  if (options.api) {
    streams = createStreamHub(pool, options.log);
    const app = createApp({
      temporal: client, db, metrics, log: options.log, streams,
      config: apiConfigOf(config, { eagerStart: options.control }),
    });
    server = await new Promise<Server>((resolve, reject) => {
      const s = app.listen(config.port, '0.0.0.0', (err?: Error) => (err ? reject(err) : resolve(s)));
    });
    server.keepAliveTimeout = 65_000;
    // Bounds on receiving a request (slow clients); the time to answer is bounded by the app's request timeout.
    server.headersTimeout = config.http.headersTimeoutMs;
    server.requestTimeout = config.http.requestTimeoutMs;
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    url = `http://127.0.0.1:${port}`;
  }

  return {
    db, pool, client, metrics, workers, backends, server, url,
    async stop() {
      options.log.debug('stopping api');
      if (server) {
        const s = server;
        await new Promise<void>((resolve) => {
          s.close(() => resolve());
          s.closeAllConnections();
        });
      }
      await streams?.close();
      options.log.debug('stopping workers');
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await Promise.all(running);
      await opsMetrics?.stop();
      options.log.debug('closing backends and connections');
      await backends?.close();
      await connection.close();
      await db.destroy();
      await ownTracing?.shutdown();
    },
  };
}

export interface InferenceOnly {
  metrics: Metrics;
  workers: Worker[];
  backends: BackendRegistry;
  stop(): Promise<void>;
}

/**
 * A process that runs only inference workers (`npm run worker:inference`): a Temporal connection
 * and the backends, no database pool — inference activities read nothing from PostgreSQL, so the
 * process gets no DATABASE_URL (one secret fewer where models and upstream keys live).
 */
export async function startInferenceOnly(config: SluiceConfig, options: { temporalAddress: string; pools: readonly string[]; log: Logger }): Promise<InferenceOnly> {
  const metrics = createMetrics();
  const tracing = await installTracing(config.tracing, options.log);
  const tls = await temporalTlsOptions(config.temporalTls);
  const connection = await NativeConnection.connect({ address: options.temporalAddress, ...(tls ? { tls } : {}) });
  const payloadCodecs = payloadCodecsFor(config);
  const backends = createBackendRegistry(backendRegistryOptions(config));
  const workers: Worker[] = [];
  // Streamed requests' chunks, through the narrow stream-writer role (SLUICE_STREAM_DATABASE_URL).
  const stream = config.streamDatabaseUrl ? createDb({ connectionString: config.streamDatabaseUrl, max: Math.max(2, config.slots), applicationName: 'sluice-stream-writer' }) : null;
  try {
    for (const p of options.pools) {
      workers.push(...await createInferenceWorkers({
        namespace: config.temporalNamespace, pool: p, slots: config.slots, payloadCodecs,
        ...(tracing?.workerInterceptors.activity ? { activityInterceptors: tracing.workerInterceptors.activity } : {}),
      }, connection, { backends, metrics, streamDb: stream?.db ?? null }));
    }
  } catch (err) {
    await stream?.db.destroy();
    await backends.close();
    await connection.close();
    await tracing?.shutdown();
    throw err;
  }
  const running = workers.map((w) => w.run().catch((err: unknown) => options.log.error('worker stopped with an error', { error: err instanceof Error ? err.message : String(err) })));
  return {
    metrics, workers, backends,
    async stop() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await Promise.all(running);
      await backends.close();
      await connection.close();
      await stream?.db.destroy();
      await tracing?.shutdown();
    },
  };
}
