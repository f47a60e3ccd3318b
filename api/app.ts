/** `createApp` builds the Express app over its dependencies; `server.ts` listens. */
import express, { type Request, type Response, type NextFunction } from 'express';
import helmet from 'helmet';
import type { Client } from '@temporalio/client';
import { isPoolTimeout, type Db } from '../db/database.js';
import { sql } from 'kysely';
import type { Metrics } from '../runtime/metrics.js';
import { metricsAuthorized } from '../runtime/metrics-server.js';
import type { Logger } from '../runtime/logger.js';
import { activeTraceparent } from '../runtime/tracing.js';
import { authenticate } from './auth.js';
import { HttpError, badRequest, errorMiddleware, requestId } from './errors.js';
import { MAX_JSON_DEPTH, jsonDeeperThan } from '../domain/json-depth.js';
import { chatRoutes } from './routes/chat.js';
import { embeddingsRoutes } from './routes/embeddings.js';
import { completionRoutes } from './routes/completions.js';
import { responseRoutes } from './routes/responses.js';
import { modelRoutes } from './routes/models.js';
import { tenantRoutes } from './routes/tenants.js';
import { cacheRoutes } from './routes/cache.js';
import { usageAuditRoutes } from './routes/usage-audit.js';
import { experimentRoutes } from './routes/experiments.js';
import { feedbackRoutes } from './routes/feedback.js';
import { billingRoutes } from './routes/billing.js';
import { DEFAULT_FILE_LIMITS, fileRoutes, type FileLimits, type UploadProgress } from './routes/files.js';
import type { TenantCaps } from './tenant-caps.js';
import { DEFAULT_BATCH_RUN, batchRoutes, type BatchRunConfig } from './routes/batches.js';
import { webhookRoutes } from './routes/webhooks.js';
import { sloRoutes } from './routes/slos.js';
import type { StreamHub } from './stream-hub.js';
import type { WebhookConfig } from '../activities/webhooks.js';
import { inferenceTaskQueue } from '../contracts/ids.js';

/** `temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY`. */
const TASK_QUEUE_TYPE_ACTIVITY = 2;

export interface AppConfig {
  maxBodyBytes: number;
  namespace: string;
  /** Pools whose inference workers `/readyz` expects to see polling. */
  pools: readonly string[];
  /** Upload limits of the Files API. @default DEFAULT_FILE_LIMITS (200 MB, 50,000 lines) */
  files?: FileLimits;
  /** How batches run. @default DEFAULT_BATCH_RUN (1024 lines in flight in chunks of 256, 2048 per workflow run) */
  batches?: BatchRunConfig;
  /** Ask Temporal for eager workflow start: only useful when a control worker shares the client's connection. */
  eagerStart: boolean;
  /** Answer a sync chat request once its output is durable, before its settlement (`SluiceConfig.earlyAnswer`). @default true */
  earlyAnswer?: boolean;
  /** Longest time spent on one request before a 503 `request_timeout`. @default 600000 */
  requestTimeoutMs?: number;
  /** Key that signs audit checkpoints; null = unsigned. @default null */
  auditKey?: string | null;
  /** Webhook settings (private hosts allowed, retry policy of deliveries). @default DEFAULT_WEBHOOK_CONFIG */
  webhooks?: WebhookConfig;
  /** Upstream hosts allowed on private addresses (`*` = all); see `SLUICE_ALLOW_PRIVATE_UPSTREAMS`. @default [] */
  allowPrivateUpstreams?: readonly string[];
  /** Token `GET /metrics` on the API port requires; null = the API port serves no metrics. @default null */
  metricsToken?: string | null;
  /** Accept `provider: "instant"` deployments (a test double); see `SLUICE_ENABLE_INSTANT_BACKEND`. @default false */
  enableInstantBackend?: boolean;
  /** What one tenant may hold at once (files, batches, webhook endpoints, exports, uploads). @default DEFAULT_TENANT_CAPS */
  tenantCaps?: TenantCaps;
  /** Least progress of an upload body. @default DEFAULT_UPLOAD_PROGRESS (10 KiB per 10 s) */
  uploadProgress?: UploadProgress;
  /** Directory uploads are spooled to before they are stored. @default `<os tmpdir>/sluice-uploads` */
  spoolDir?: string;
}

export interface AppDeps {
  temporal: Client;
  db: Db;
  config: AppConfig;
  metrics: Metrics;
  log: Logger;
  /** Wakes streamed answers when their chunks arrive (`createStreamHub`). @default a hub that polls */
  streams?: StreamHub;
}

/** Records route, method, status and latency of every request (route pattern, never the raw path). */
function httpMetrics(metrics: Metrics) {
  return (req: Request, res: Response, next: NextFunction) => {
    const started = performance.now();
    res.on('finish', () => {
      const route = req.route?.path ? `${req.baseUrl}${req.route.path}` : 'unmatched';
      metrics.httpRequests.inc({ route, method: req.method, status: String(res.statusCode) });
      metrics.httpLatency.observe({ route, method: req.method }, (performance.now() - started) / 1000);
    });
    next();
  };
}

/**
 * Answers 503 `request_timeout` when a request takes longer than `ms` and nothing was sent yet.
 * The work itself is not undone: a sync completion keeps running, and a retry with the same
 * `Idempotency-Key` returns its result.
 */
function requestTimeout(ms: number) {
  return (_req: Request, res: Response, next: NextFunction) => {
    const timer = setTimeout(() => {
      if (res.headersSent) return;
      const error = new HttpError('service_unavailable', `The request took longer than ${Math.round(ms / 1000)} s`, 'request_timeout', null, 1);
      res.setHeader('Retry-After', '1');
      res.status(error.status).json(error.toJSON());
    }, ms);
    timer.unref();
    res.on('close', () => clearTimeout(timer));
    res.on('finish', () => clearTimeout(timer));
    next();
  };
}

export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  // Security headers on every response (404 and 500 included: they are set before any route runs).
  // A JSON API serves no documents: nothing may be framed, loaded or run from its responses.
  // No CORS middleware: browsers get no Access-Control-Allow-Origin, so cross-origin calls are off.
  app.use(helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    crossOriginResourcePolicy: { policy: 'same-origin' },
    xFrameOptions: { action: 'deny' },
  }));
  app.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  app.use(requestId());
  // With tracing on, the response names the request's trace: the W3C `traceparent` of its server span (README "Traces").
  app.use((_req, res, next) => {
    const traceparent = activeTraceparent();
    if (traceparent !== null) res.setHeader('traceparent', traceparent);
    next();
  });
  app.use(requestTimeout(deps.config.requestTimeoutMs ?? 600_000));
  app.use(httpMetrics(deps.metrics));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const checks: Record<string, string> = {};
    await sql`select 1`.execute(deps.db).then(() => (checks.postgres = 'ok'), () => (checks.postgres = 'unreachable'));
    checks.temporal = await deps.temporal.connection.workflowService
      .getSystemInfo({})
      .then(() => 'ok', () => 'unreachable');
    let pools = 0;
    if (checks.temporal === 'ok') {
      for (const pool of deps.config.pools) {
        const pollers = await deps.temporal.connection.workflowService
          .describeTaskQueue({ namespace: deps.config.namespace, taskQueue: { name: inferenceTaskQueue(pool) }, taskQueueType: TASK_QUEUE_TYPE_ACTIVITY })
          .then((r) => r.pollers?.length ?? 0, () => 0);
        checks[`pool:${pool}`] = pollers > 0 ? 'ok' : 'no workers';
        if (pollers > 0) pools += 1;
      }
    }
    const ready = checks.postgres === 'ok' && checks.temporal === 'ok' && pools > 0;
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', checks });
  });
  // The API port is public and the metrics carry tenant IDs: served here only with the metrics
  // token; otherwise on the metrics listener (workers/metrics-server.ts, SLUICE_METRICS_PORT).
  app.get('/metrics', async (req, res, next) => {
    const token = deps.config.metricsToken ?? null;
    if (token === null) return next();
    if (!metricsAuthorized(req.headers.authorization, token)) {
      return next(new HttpError('authentication_error', 'Metrics need the metrics token as a bearer token', 'invalid_metrics_token'));
    }
    res.setHeader('Content-Type', deps.metrics.registry.contentType);
    res.send(await deps.metrics.registry.metrics());
  });

  const v1 = express.Router();
  // The router's mount path, for naming a request's span by its route after an error left the router.
  v1.use((req, res, next) => {
    res.locals.routeBase = req.baseUrl;
    next();
  });
  // Authenticate before reading the body: an anonymous caller's body is never parsed.
  v1.use(authenticate(deps));
  v1.use(express.json({ limit: deps.config.maxBodyBytes, type: ['application/json', 'application/*+json'] }));
  // Every validator and the idempotency hash recurse over the body: refuse a nesting that would
  // overflow their stack (a 500 otherwise) before any of them runs.
  v1.use((req, _res, next) => {
    if (jsonDeeperThan(req.body)) throw badRequest(`The request body nests objects or arrays deeper than ${MAX_JSON_DEPTH} levels`, null, 'nesting_too_deep');
    next();
  });
  v1.use(chatRoutes({ db: deps.db, temporal: deps.temporal, metrics: deps.metrics, eagerStart: deps.config.eagerStart, earlyAnswer: deps.config.earlyAnswer ?? true, log: deps.log, ...(deps.streams ? { streams: deps.streams } : {}) }));
  v1.use(embeddingsRoutes({ db: deps.db, temporal: deps.temporal, eagerStart: deps.config.eagerStart, log: deps.log, metrics: deps.metrics }));
  v1.use(completionRoutes({ db: deps.db, temporal: deps.temporal, metrics: deps.metrics, eagerStart: deps.config.eagerStart, log: deps.log }));
  v1.use(responseRoutes({ db: deps.db, temporal: deps.temporal, metrics: deps.metrics, eagerStart: deps.config.eagerStart, log: deps.log, ...(deps.streams ? { streams: deps.streams } : {}) }));
  v1.use(modelRoutes({ db: deps.db, allowPrivateUpstreams: deps.config.allowPrivateUpstreams ?? [], enableInstantBackend: deps.config.enableInstantBackend ?? false }));
  v1.use(tenantRoutes(deps));
  v1.use(cacheRoutes(deps));
  v1.use(usageAuditRoutes(deps));
  v1.use(experimentRoutes(deps));
  v1.use(feedbackRoutes(deps));
  v1.use(billingRoutes(deps));
  v1.use(sloRoutes({ db: deps.db }));
  v1.use(fileRoutes({
    db: deps.db, limits: deps.config.files ?? DEFAULT_FILE_LIMITS,
    ...(deps.config.tenantCaps ? { caps: deps.config.tenantCaps } : {}),
    ...(deps.config.uploadProgress ? { progress: deps.config.uploadProgress } : {}),
    ...(deps.config.spoolDir ? { spoolDir: deps.config.spoolDir } : {}),
  }));
  const caps = deps.config.tenantCaps ? { caps: deps.config.tenantCaps } : {};
  v1.use(webhookRoutes({ db: deps.db, temporal: deps.temporal, ...(deps.config.webhooks ? { webhooks: deps.config.webhooks } : {}), ...caps }));
  v1.use(batchRoutes({ db: deps.db, temporal: deps.temporal, run: deps.config.batches ?? DEFAULT_BATCH_RUN, log: deps.log, ...caps }));
  app.use('/v1', v1);

  app.use((req, _res, next) => next(new HttpError('not_found_error', `Unknown route ${req.method} ${req.path}`, 'unknown_url')));
  // Every pool connection busy for the pool's acquire timeout: a clear 503 instead of a hang or a 500.
  app.use((err: unknown, _req: Request, _res: Response, next: NextFunction) => {
    next(isPoolTimeout(err) ? new HttpError('service_unavailable', 'The service is busy; try again shortly', 'database_busy', null, 1) : err);
  });
  app.use(errorMiddleware(deps.log));
  return app;
}
