/**
 * Process configuration, read once from the environment into a frozen, typed object.
 * Nothing else in Sluice reads `process.env`: entry points call {@link loadConfig} and pass
 * the result (or the part they need) down.
 */
import os from 'node:os';
import path from 'node:path';
import type { WebhookConfig } from '../contracts/webhooks.js';
import type { DbTimeouts, TenantCaps, UploadProgress } from '../contracts/limits.js';

export interface SluiceConfig {
  /** HTTP port of the API. `PORT` @default 8080 */
  readonly port: number;
  /** External PostgreSQL URL; null = start embedded PostgreSQL. `DATABASE_URL` @default null */
  readonly databaseUrl: string | null;
  /**
   * PostgreSQL URL a standalone inference worker (`npm run worker:inference`, which gets no
   * `DATABASE_URL`) uses to publish streamed requests' chunks: give it a login role granted only
   * `sluice_stream_writer` (insert into `stream_chunks`; migration 0202). Null: that worker streams
   * no chunks, and a streamed request's text reaches its client in one piece at the end. Processes
   * that have `DATABASE_URL` publish through their own pool. `SLUICE_STREAM_DATABASE_URL` @default null
   */
  readonly streamDatabaseUrl: string | null;
  /** Port of the embedded PostgreSQL. `SLUICE_PG_PORT` @default 5433 */
  readonly embeddedPgPort: number;
  /** External Temporal frontend (host:port); null = start the dev server. `TEMPORAL_ADDRESS` @default null */
  readonly temporalAddress: string | null;
  /** gRPC port of the embedded Temporal dev server (UI on port + 1000). `SLUICE_TEMPORAL_PORT` @default 7233 */
  readonly embeddedTemporalPort: number;
  /** Temporal namespace. `TEMPORAL_NAMESPACE` @default "default" */
  readonly temporalNamespace: string;
  /** Where embedded PostgreSQL, the Temporal dev server file and generated models live. `SLUICE_DATA_DIR` @default ".data" */
  readonly dataDir: string;
  /** Admin key stored on first start when no admin key exists. `SLUICE_ADMIN_KEY` @default null (generated and printed once) */
  readonly adminKey: string | null;
  /** The pool an inference worker serves. `SLUICE_POOL` @default "local" */
  readonly pool: string;
  /** Pools the all-in-one process starts inference workers for. `SLUICE_POOLS` (comma-separated) @default [pool] */
  readonly pools: readonly string[];
  /** Parallel sequences per loaded model = concurrent inference activities per worker. `SLUICE_SLOTS` @default 4 */
  readonly slots: number;
  /** llama.cpp threads. `SLUICE_THREADS` @default CPU cores - 1 (at least 1): one core stays with the control plane; measured faster on 2 cores (BENCHMARKS.md) */
  readonly threads: number;
  /** Threads of the control worker that run workflow code. `SLUICE_WORKFLOW_THREADS` @default 2 */
  readonly workflowThreads: number;
  /** Per-sequence context size for llama.cpp models. `SLUICE_CONTEXT_SIZE` @default 2048 */
  readonly contextSize: number;
  /**
   * llama.cpp decode steps wait (boundedly) for every generating sequence
   * (`activities/backends/llama-cpp/full-batches.ts`); off = node-llama-cpp's default batching,
   * ahead through the worker at the default 4 slots on the 2-core VM (BENCHMARKS.md, fifth session).
   * `SLUICE_LLAMA_FULL_STEPS` @default false
   */
  readonly llamaFullSteps: boolean;
  /**
   * Answer a sync, non-streamed chat request as soon as its served attempt's output is durable in
   * its workflow's history, its settlement and audit following a few milliseconds later in the
   * workflow (`api/answer.ts`). Billing stays exactly once (the attempt is settled whatever cancel
   * follows, retried until it succeeds), but right after the 200 the usage row, the job's final
   * status and the response-cache entry may not be written yet. Off: a 200 means billed and
   * recorded. `SLUICE_EARLY_ANSWER` @default true
   */
  readonly earlyAnswer: boolean;
  /** Use a GPU for llama.cpp when one is present. `SLUICE_GPU` ("auto" | "off") @default "off" */
  readonly gpu: 'auto' | false;
  /** GGUF models registered at start-up: `SLUICE_GGUF_MODELS="name=/path/a.gguf,other=/path/b.gguf"` on pool {@link pool}. @default {} */
  readonly ggufModels: Readonly<Record<string, string>>;
  /** Secrets for openai-compatible deployments, by reference: `SLUICE_UPSTREAM_KEY_<REF>=...`. @default {} */
  readonly upstreamKeys: Readonly<Record<string, string>>;
  /** Largest accepted request body. `SLUICE_MAX_BODY_BYTES` @default 1048576 */
  readonly maxBodyBytes: number;
  /** Largest file upload (Files API). `SLUICE_FILE_MAX_BYTES` @default 209715200 (200 MB, OpenAI's) */
  readonly fileMaxBytes: number;
  /** Most lines in an uploaded file. `SLUICE_FILE_MAX_LINES` @default 50000 (OpenAI's) */
  readonly fileMaxLines: number;
  /** Lines of one batch in flight at once (four chunks of 256; at most 2048, eight chunks). `SLUICE_BATCH_CONCURRENCY` @default 1024 */
  readonly batchConcurrency: number;
  /** Lines a batch workflow run starts before it continues as new. `SLUICE_BATCH_LINES_PER_RUN` @default 2048 */
  readonly batchLinesPerRun: number;
  /** Most lines of a batch whose admission, inference or completion share one activity. `SLUICE_BATCH_CHUNK_LINES` @default 256 */
  readonly batchChunkLines: number;
  /**
   * Webhook delivery. `allowPrivateHosts`: hosts (or resolved addresses) an endpoint may have on
   * loopback, private or link-local addresses, `*` for all: `SLUICE_ALLOW_PRIVATE_WEBHOOKS`
   * (comma-separated) @default [] (refused). Retries: `SLUICE_WEBHOOK_RETRY_INITIAL_MS` @default 5000,
   * `SLUICE_WEBHOOK_RETRY_MAX_MS` @default 3600000, `SLUICE_WEBHOOK_MAX_ATTEMPTS` @default 20,
   * `SLUICE_WEBHOOK_HORIZON_MS` (then the endpoint is disabled) @default 86400000,
   * `SLUICE_WEBHOOK_TIMEOUT_MS` (one POST) @default 10000.
   */
  readonly webhooks: WebhookConfig;
  /**
   * Key for signing audit checkpoints (HMAC-SHA256 over sequence and head hash). Keep it outside
   * the database (a secret store, the environment of the control worker and API), so whoever can
   * write the database cannot forge a checkpoint. Null: checkpoints are stored unsigned (they still
   * catch a cut tail, but not one by someone who can also rewrite the checkpoint table); nothing is
   * derived from other secrets. `SLUICE_AUDIT_KEY` (at least 32 characters) @default null
   */
  readonly auditKey: string | null;
  /**
   * A JSON file of SLO definitions seeded at start-up by the control worker (and `npm start`):
   * `{ "slos": [{ "id": "slo_…", name, kind, scope, target, window?, threshold_ms? }] }`, each
   * validated like `POST /v1/admin/slos`; the file's values win for the IDs it names (the admin API
   * manages every other SLO). `SLUICE_SLOS_FILE` @default null (none seeded)
   */
  readonly slosFile: string | null;
  /**
   * Longest time the API spends on one request before answering 503 `request_timeout` (a sync
   * completion keeps running; retry it with the same `Idempotency-Key`). `SLUICE_REQUEST_TIMEOUT_MS`
   * @default 600000
   */
  readonly requestTimeoutMs: number;
  /**
   * Upstream hosts that may be on loopback, private or link-local addresses (openai-compatible
   * `base_url`s are refused there otherwise: SSRF into the network). Entries are host names or IP
   * addresses as written in the URL or as resolved; `*` allows every host. Checked by the API when
   * a deployment is created and by the inference worker before each call.
   * `SLUICE_ALLOW_PRIVATE_UPSTREAMS` (comma-separated) @default [] (none)
   */
  readonly allowPrivateUpstreams: readonly string[];
  /**
   * Largest response body read from an openai-compatible upstream; a larger one fails the attempt
   * without a retry (400 `completion_too_large`). `SLUICE_UPSTREAM_MAX_RESPONSE_BYTES`
   * (65536 to 67108864) @default 4194304 (4 MiB)
   */
  readonly upstreamMaxResponseBytes: number;
  /**
   * Allows the `instant` provider: a test double answering "ok" without a model, for benchmarks
   * and pipeline tests. Off, the admin API refuses `provider: "instant"` (400) and inference
   * workers refuse to serve one. Production never sets it. `SLUICE_ENABLE_INSTANT_BACKEND`
   * @default false
   */
  readonly enableInstantBackend: boolean;
  /**
   * Key that encrypts Temporal payloads (workflow and activity inputs and results: prompts,
   * completions) with AES-256-GCM on the client and every worker, so Temporal stores only
   * ciphertext. Base64 of 32 random bytes (`openssl rand -base64 32`). Every process of a
   * deployment needs the same key. Null: payloads are stored as plain JSON.
   * `SLUICE_PAYLOAD_KEY` @default null (no codec)
   */
  readonly payloadKey: string | null;
  /**
   * The previous payload key, kept for decryption only while histories encrypted with it are
   * still read (key rotation). Base64 of 32 bytes. `SLUICE_PAYLOAD_KEY_PREVIOUS` @default null
   */
  readonly payloadKeyPrevious: string | null;
  /**
   * TLS for the connection to Temporal (the client and every worker), or null for plaintext.
   * Turned on by `TEMPORAL_TLS=true` or by any of the file variables: `TEMPORAL_TLS_CA` (PEM file of
   * the CA that signed the server's certificate; unset = the system's trusted CAs),
   * `TEMPORAL_TLS_CERT` + `TEMPORAL_TLS_KEY` (PEM files of the client certificate and key, for
   * mTLS; both or neither), `TEMPORAL_TLS_SERVER_NAME` (the name the server's certificate must
   * carry, when it differs from the host in `TEMPORAL_ADDRESS`). Needs `TEMPORAL_ADDRESS` (the
   * embedded dev server speaks plaintext on loopback). @default null (plaintext)
   */
  readonly temporalTls: TemporalTlsConfig | null;
  /**
   * Port of a separate listener that serves only `/metrics` (and `/healthz`), for the API process
   * and `npm start`; worker processes serve metrics on it too, or on `PORT` when it is unset.
   * `SLUICE_METRICS_PORT` @default null (API: no metrics listener; `npm start`: 9464 on loopback)
   */
  readonly metricsPort: number | null;
  /**
   * Bearer token that `/metrics` requires, on the API port and on the metrics listener. Without it
   * the API port does not serve `/metrics` at all (the metrics carry tenant IDs), and the metrics
   * listener serves it to anyone who can reach that port. `SLUICE_METRICS_TOKEN` (at least 16
   * characters) @default null
   */
  readonly metricsToken: string | null;
  /**
   * How often the control worker refreshes the gauges it reads from the database (tenants' budget
   * use, batch progress, every objective's error ratio over the burn-rate windows) and verifies the audit chain incrementally (`sluice_audit_chain_valid`).
   * `SLUICE_OPS_METRICS_INTERVAL_MS` (1000 to 3600000) @default 60000
   */
  readonly opsMetricsIntervalMs: number;
  /** Log level. `SLUICE_LOG_LEVEL` ("debug" | "info" | "warn" | "error" | "silent") @default "info" */
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /** Connections in each process's PostgreSQL pool. `SLUICE_DB_POOL_SIZE` @default 20 */
  readonly dbPoolSize: number;
  /**
   * Bounds on the database, so no caller holds a connection forever: `SLUICE_DB_STATEMENT_TIMEOUT_MS`
   * (one statement) @default 120000, `SLUICE_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS` (a transaction
   * waiting on its client) @default 30000, `SLUICE_DB_ACQUIRE_TIMEOUT_MS` (waiting for a pool
   * connection; the API answers 503 `database_busy`) @default 10000.
   */
  readonly dbTimeouts: DbTimeouts;
  /**
   * Bounds on receiving a request: `SLUICE_HTTP_HEADERS_TIMEOUT_MS` (all headers) @default 20000,
   * `SLUICE_HTTP_REQUEST_TIMEOUT_MS` (the whole request, body included) @default 60000.
   */
  readonly http: { readonly headersTimeoutMs: number; readonly requestTimeoutMs: number };
  /**
   * Least progress of an upload body: every `SLUICE_UPLOAD_PROGRESS_WINDOW_MS` @default 10000 it
   * must bring `SLUICE_UPLOAD_MIN_BYTES_PER_WINDOW` @default 10240 bytes, or it is cut off (408).
   */
  readonly uploadProgress: UploadProgress;
  /** Longest line of an uploaded file, in bytes. `SLUICE_FILE_MAX_LINE_BYTES` @default 1048576 */
  readonly fileMaxLineBytes: number;
  /**
   * What one tenant may hold at once: `SLUICE_TENANT_MAX_FILES` @default 1000,
   * `SLUICE_TENANT_MAX_FILE_BYTES` @default 10737418240 (10 GiB), `SLUICE_TENANT_MAX_ACTIVE_BATCHES`
   * @default 10, `SLUICE_TENANT_MAX_WEBHOOK_ENDPOINTS` @default 10, `SLUICE_TENANT_MAX_CONCURRENT_EXPORTS`
   * (per API process) @default 2, `SLUICE_TENANT_MAX_CONCURRENT_UPLOADS` (per API process) @default 4.
   */
  readonly tenantCaps: TenantCaps;
  /** The response cache (README "Response cache"); see {@link ResponseCacheConfig}. */
  readonly responseCache: ResponseCacheConfig;
  /**
   * OpenTelemetry traces, from the standard `OTEL_*` variables ({@link TracingConfig}, README
   * "Traces"); null = off: no tracer provider, no instrumentation, no span on the hot path.
   * On when `OTEL_TRACES_EXPORTER=otlp` or an OTLP endpoint is set, unless `OTEL_SDK_DISABLED=true`
   * or `OTEL_TRACES_EXPORTER=none`. @default null
   */
  readonly tracing: TracingConfig | null;
}

/** Bounds of the response cache: the in-process L1 of each control worker and the shared L2 table. */
export interface ResponseCacheConfig {
  /** Entries the in-process L1 holds at most (LRU). `SLUICE_CACHE_L1_MAX_ENTRIES` @default 10000 */
  readonly l1MaxEntries: number;
  /** Bytes of stored responses the L1 holds at most. `SLUICE_CACHE_L1_MAX_BYTES` @default 67108864 (64 MiB) */
  readonly l1MaxBytes: number;
  /** Bytes one tenant's entries take in the L1 at most (its own oldest go first). `SLUICE_CACHE_L1_TENANT_MAX_BYTES` @default 16777216 (16 MiB) */
  readonly l1TenantMaxBytes: number;
  /** Largest response stored (UTF-8 JSON bytes); a larger one is not cached. `SLUICE_CACHE_MAX_ENTRY_BYTES` @default 262144 (256 KiB) */
  readonly maxEntryBytes: number;
  /** Bytes one tenant's entries take in the L2 table at most (its oldest are evicted). `SLUICE_CACHE_TENANT_MAX_BYTES` @default 268435456 (256 MiB) */
  readonly tenantMaxBytes: number;
  /**
   * Entries one tenant keeps in the L2 table at most (its oldest are evicted); it also bounds the
   * rows each store's eviction reads. `SLUICE_CACHE_TENANT_MAX_ENTRIES` @default 10000
   */
  readonly tenantMaxEntries: number;
  /** Life of an entry when neither the tenant nor the model sets one, seconds. `SLUICE_CACHE_TTL_SECONDS` (1 to 2592000) @default 86400 */
  readonly defaultTtlSeconds: number;
}

/** The response cache's defaults (the values {@link loadConfig} uses when nothing is set). */
export const DEFAULT_RESPONSE_CACHE_CONFIG: ResponseCacheConfig = Object.freeze({
  l1MaxEntries: 10_000,
  l1MaxBytes: 64 * 1024 * 1024,
  l1TenantMaxBytes: 16 * 1024 * 1024,
  maxEntryBytes: 256 * 1024,
  tenantMaxBytes: 256 * 1024 * 1024,
  tenantMaxEntries: 10_000,
  defaultTtlSeconds: 86_400,
});

/** Files (paths) and names for TLS to Temporal; see {@link SluiceConfig.temporalTls}. */
export interface TemporalTlsConfig {
  /** PEM file of the server's CA. `TEMPORAL_TLS_CA` @default null (system CAs) */
  readonly caFile: string | null;
  /** PEM file of the client certificate (mTLS). `TEMPORAL_TLS_CERT` @default null */
  readonly certFile: string | null;
  /** PEM file of the client key (mTLS). `TEMPORAL_TLS_KEY` @default null */
  readonly keyFile: string | null;
  /** Name checked against the server's certificate. `TEMPORAL_TLS_SERVER_NAME` @default null (the address's host) */
  readonly serverName: string | null;
}

/** OTLP/HTTP trace export, from the standard OpenTelemetry variables; see {@link SluiceConfig.tracing}. */
export interface TracingConfig {
  /** `service.name` of every span. `OTEL_SERVICE_NAME` @default "sluice" */
  readonly serviceName: string;
  /**
   * Where spans are POSTed (OTLP over HTTP, JSON encoding). `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
   * as given, else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`. @default "http://localhost:4318/v1/traces"
   */
  readonly endpoint: string;
  /**
   * Headers of every export (e.g. a collector's token; a secret, never logged).
   * `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k2=v2`, values URL-encoded). @default {}
   */
  readonly headers: Readonly<Record<string, string>>;
  /** Time one export may take. `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT` (ms) @default 10000 */
  readonly timeoutMs: number;
  /**
   * Which traces are kept. `OTEL_TRACES_SAMPLER`: `always_on`, `always_off`, `traceidratio`,
   * `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio`, with the ratio
   * in `OTEL_TRACES_SAMPLER_ARG` (0 to 1) @default "parentbased_always_on", ratio 1
   */
  readonly sampler: { readonly name: TraceSamplerName; readonly ratio: number };
  /**
   * A span per PostgreSQL query inside a trace (SQL text with placeholders, never values): about
   * two thirds of a sync request's ~29 spans (BENCHMARKS.md, "Tracing").
   * `SLUICE_TRACE_DB_QUERIES` @default true
   */
  readonly dbQueries: boolean;
}

/** The samplers of the OpenTelemetry specification's `OTEL_TRACES_SAMPLER`. */
export type TraceSamplerName = 'always_on' | 'always_off' | 'traceidratio' | 'parentbased_always_on' | 'parentbased_always_off' | 'parentbased_traceidratio';

const TRACE_SAMPLERS: readonly TraceSamplerName[] = ['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'];

/** Thrown for an environment value that cannot be used. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type Env = Readonly<Record<string, string | undefined>>;

function int(env: Env, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isInteger(value) || value < min || value > max) {
    // An unbounded setting (at most the largest safe integer) names the bound it broke.
    const range = max !== Number.MAX_SAFE_INTEGER ? `from ${min} to ${max}` : value < min || !Number.isInteger(value) ? `>= ${min}` : `<= ${max}`;
    throw new ConfigError(`${name} must be an integer ${range}, got "${raw}"`);
  }
  return value;
}

/** An environment variable's text, trimmed; null when unset or blank. */
function envText(env: Env, name: string): string | null {
  const raw = env[name];
  return raw === undefined || raw.trim() === '' ? null : raw.trim();
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = envText(env, name);
  if (raw === null) return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw.toLowerCase())) return true;
  if (['0', 'false', 'no', 'off'].includes(raw.toLowerCase())) return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
}

function poolName(name: string, value: string): string {
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(value)) throw new ConfigError(`${name}: pool "${value}" must match [a-z0-9][a-z0-9-]*`);
  return value;
}

function ggufModels(env: Env): Record<string, string> {
  const raw = envText(env, 'SLUICE_GGUF_MODELS');
  const models: Record<string, string> = {};
  if (raw === null) return models;
  for (const entry of raw.split(',')) {
    const eq = entry.indexOf('=');
    const name = eq < 0 ? '' : entry.slice(0, eq).trim();
    const file = eq < 0 ? '' : entry.slice(eq + 1).trim();
    if (!name || !file || !/^[A-Za-z0-9._:-]{1,128}$/.test(name)) {
      throw new ConfigError(`SLUICE_GGUF_MODELS entry "${entry}" must be name=/path/to/model.gguf`);
    }
    models[name] = file;
  }
  return models;
}

function upstreamKeys(env: Env): Record<string, string> {
  const keys: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (name.startsWith('SLUICE_UPSTREAM_KEY_') && value) keys[name.slice('SLUICE_UPSTREAM_KEY_'.length)] = value;
  }
  return keys;
}

function hostList(env: Env, name: string): string[] {
  const raw = envText(env, name);
  if (raw === null) return [];
  return raw.split(',').map((h) => h.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1')).filter((h) => {
    if (h === '') return false;
    if (h !== '*' && !/^[a-z0-9.:_-]{1,253}$/.test(h)) throw new ConfigError(`${name}: "${h}" is not a host name, IP address or *`);
    return true;
  });
}

function aesKey(env: Env, name: string): string | null {
  const raw = envText(env, name);
  if (raw === null) return null;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(raw) || Buffer.from(raw, 'base64').length !== 32) {
    throw new ConfigError(`${name} must be base64 of exactly 32 bytes (openssl rand -base64 32)`);
  }
  return raw;
}

function temporalTls(env: Env): TemporalTlsConfig | null {
  const files = {
    caFile: envText(env, 'TEMPORAL_TLS_CA'),
    certFile: envText(env, 'TEMPORAL_TLS_CERT'),
    keyFile: envText(env, 'TEMPORAL_TLS_KEY'),
    serverName: envText(env, 'TEMPORAL_TLS_SERVER_NAME'),
  };
  const anySet = Object.values(files).some((v) => v !== null);
  const enabled = envText(env, 'TEMPORAL_TLS') === null ? anySet : bool(env, 'TEMPORAL_TLS', false);
  if (!enabled) {
    if (anySet) throw new ConfigError('TEMPORAL_TLS=false contradicts TEMPORAL_TLS_CA / _CERT / _KEY / _SERVER_NAME: unset one or the other');
    return null;
  }
  if ((files.certFile === null) !== (files.keyFile === null)) {
    throw new ConfigError('TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together (a client certificate and its key): set both or neither');
  }
  if (files.serverName !== null && !/^[A-Za-z0-9.-]{1,253}$/.test(files.serverName)) {
    throw new ConfigError(`TEMPORAL_TLS_SERVER_NAME "${files.serverName}" is not a host name`);
  }
  if (envText(env, 'TEMPORAL_ADDRESS') === null) {
    throw new ConfigError('TLS to Temporal (TEMPORAL_TLS*) needs TEMPORAL_ADDRESS: the embedded dev server speaks plaintext on loopback');
  }
  return Object.freeze(files);
}

/** Reads and validates the configuration; throws {@link ConfigError} on a bad value. */
export function loadConfig(env: Env = process.env): SluiceConfig {
  const pool = poolName('SLUICE_POOL', envText(env, 'SLUICE_POOL') ?? 'local');
  const pools = (envText(env, 'SLUICE_POOLS') ?? pool).split(',').map((p) => poolName('SLUICE_POOLS', p.trim()));
  const gpu = envText(env, 'SLUICE_GPU') ?? 'off';
  if (gpu !== 'auto' && gpu !== 'off') throw new ConfigError(`SLUICE_GPU must be "auto" or "off", got "${gpu}"`);
  const logLevel = envText(env, 'SLUICE_LOG_LEVEL') ?? 'info';
  if (env.SLUICE_BATCH_LOCAL_ACTIVITIES !== undefined) {
    // Removed 2026-12: batch lines' database steps run in chunks of lines (regular activities).
    throw new ConfigError('SLUICE_BATCH_LOCAL_ACTIVITIES was removed: batch lines share their activities in chunks now (BENCHMARKS.md); unset it');
  }
  if (env.SLUICE_LOCAL_ACTIVITIES !== undefined) {
    // Removed 2026-12: a request's database steps are local activities, decided by the workflow
    // code (a process setting would replay running workflows differently; docs/versioning.md).
    throw new ConfigError('SLUICE_LOCAL_ACTIVITIES was removed: request workflows run their database steps as local activities (BENCHMARKS.md); unset it');
  }
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(logLevel)) throw new ConfigError(`SLUICE_LOG_LEVEL "${logLevel}" is not a level`);
  const adminKey = envText(env, 'SLUICE_ADMIN_KEY');
  if (adminKey !== null && !/^sk-[A-Za-z0-9_-]{20,200}$/.test(adminKey)) {
    throw new ConfigError('SLUICE_ADMIN_KEY must look like sk- followed by at least 20 of [A-Za-z0-9_-]');
  }
  const auditKey = envText(env, 'SLUICE_AUDIT_KEY');
  if (auditKey !== null && auditKey.length < 32) throw new ConfigError('SLUICE_AUDIT_KEY must be at least 32 characters');
  const payloadKey = aesKey(env, 'SLUICE_PAYLOAD_KEY');
  const payloadKeyPrevious = aesKey(env, 'SLUICE_PAYLOAD_KEY_PREVIOUS');
  if (payloadKey === null && payloadKeyPrevious !== null) throw new ConfigError('SLUICE_PAYLOAD_KEY_PREVIOUS needs SLUICE_PAYLOAD_KEY');
  const metricsToken = envText(env, 'SLUICE_METRICS_TOKEN');
  if (metricsToken !== null && !/^[\x21-\x7e]{16,200}$/.test(metricsToken)) {
    throw new ConfigError('SLUICE_METRICS_TOKEN must be 16 to 200 printable characters without spaces');
  }
  const metricsPort = envText(env, 'SLUICE_METRICS_PORT') === null ? null : int(env, 'SLUICE_METRICS_PORT', 0, 0, 65535);
  return Object.freeze({
    port: int(env, 'PORT', 8080, 0, 65535),
    databaseUrl: envText(env, 'DATABASE_URL'),
    streamDatabaseUrl: envText(env, 'SLUICE_STREAM_DATABASE_URL'),
    embeddedPgPort: int(env, 'SLUICE_PG_PORT', 5433, 1, 65535),
    temporalAddress: envText(env, 'TEMPORAL_ADDRESS'),
    embeddedTemporalPort: int(env, 'SLUICE_TEMPORAL_PORT', 7233, 1, 64535),
    temporalNamespace: envText(env, 'TEMPORAL_NAMESPACE') ?? 'default',
    dataDir: path.resolve(envText(env, 'SLUICE_DATA_DIR') ?? '.data'),
    adminKey,
    pool,
    pools: Object.freeze(pools),
    slots: int(env, 'SLUICE_SLOTS', 4, 1),
    threads: int(env, 'SLUICE_THREADS', Math.max(1, os.availableParallelism() - 1), 1),
    workflowThreads: int(env, 'SLUICE_WORKFLOW_THREADS', 2, 1, 64),
    contextSize: int(env, 'SLUICE_CONTEXT_SIZE', 2048, 64),
    llamaFullSteps: bool(env, 'SLUICE_LLAMA_FULL_STEPS', false),
    earlyAnswer: bool(env, 'SLUICE_EARLY_ANSWER', true),
    gpu: gpu === 'auto' ? 'auto' : false,
    ggufModels: Object.freeze(ggufModels(env)),
    upstreamKeys: Object.freeze(upstreamKeys(env)),
    maxBodyBytes: int(env, 'SLUICE_MAX_BODY_BYTES', 1024 * 1024, 1024),
    fileMaxBytes: int(env, 'SLUICE_FILE_MAX_BYTES', 200 * 1024 * 1024, 1),
    fileMaxLines: int(env, 'SLUICE_FILE_MAX_LINES', 50_000, 1),
    batchConcurrency: int(env, 'SLUICE_BATCH_CONCURRENCY', 1024, 1, 2048),
    batchLinesPerRun: int(env, 'SLUICE_BATCH_LINES_PER_RUN', 2048, 1),
    batchChunkLines: int(env, 'SLUICE_BATCH_CHUNK_LINES', 256, 1, 1000),
    webhooks: Object.freeze({
      allowPrivateHosts: Object.freeze(hostList(env, 'SLUICE_ALLOW_PRIVATE_WEBHOOKS')),
      retry: Object.freeze({
        initialIntervalMs: int(env, 'SLUICE_WEBHOOK_RETRY_INITIAL_MS', 5_000, 1),
        maxIntervalMs: int(env, 'SLUICE_WEBHOOK_RETRY_MAX_MS', 3_600_000, 1),
        maxAttempts: int(env, 'SLUICE_WEBHOOK_MAX_ATTEMPTS', 20, 1, 1000),
        horizonMs: int(env, 'SLUICE_WEBHOOK_HORIZON_MS', 86_400_000, 1000),
        timeoutMs: int(env, 'SLUICE_WEBHOOK_TIMEOUT_MS', 10_000, 100),
      }),
    }),
    logLevel: logLevel as SluiceConfig['logLevel'],
    auditKey,
    slosFile: envText(env, 'SLUICE_SLOS_FILE'),
    requestTimeoutMs: int(env, 'SLUICE_REQUEST_TIMEOUT_MS', 600_000, 1000),
    allowPrivateUpstreams: Object.freeze(hostList(env, 'SLUICE_ALLOW_PRIVATE_UPSTREAMS')),
    upstreamMaxResponseBytes: int(env, 'SLUICE_UPSTREAM_MAX_RESPONSE_BYTES', 4 * 1024 * 1024, 64 * 1024, 64 * 1024 * 1024),
    enableInstantBackend: bool(env, 'SLUICE_ENABLE_INSTANT_BACKEND', false),
    payloadKey,
    payloadKeyPrevious,
    temporalTls: temporalTls(env),
    metricsPort,
    metricsToken,
    opsMetricsIntervalMs: int(env, 'SLUICE_OPS_METRICS_INTERVAL_MS', 60_000, 1_000, 3_600_000),
    dbPoolSize: int(env, 'SLUICE_DB_POOL_SIZE', 20, 1, 1000),
    dbTimeouts: Object.freeze({
      statementTimeoutMs: int(env, 'SLUICE_DB_STATEMENT_TIMEOUT_MS', 120_000, 100),
      idleInTransactionTimeoutMs: int(env, 'SLUICE_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS', 30_000, 100),
      acquireTimeoutMs: int(env, 'SLUICE_DB_ACQUIRE_TIMEOUT_MS', 10_000, 10),
    }),
    http: Object.freeze({
      headersTimeoutMs: int(env, 'SLUICE_HTTP_HEADERS_TIMEOUT_MS', 20_000, 100),
      requestTimeoutMs: int(env, 'SLUICE_HTTP_REQUEST_TIMEOUT_MS', 60_000, 100),
    }),
    uploadProgress: Object.freeze({
      windowMs: int(env, 'SLUICE_UPLOAD_PROGRESS_WINDOW_MS', 10_000, 100),
      minBytes: int(env, 'SLUICE_UPLOAD_MIN_BYTES_PER_WINDOW', 10_240, 0),
    }),
    fileMaxLineBytes: int(env, 'SLUICE_FILE_MAX_LINE_BYTES', 1024 * 1024, 16),
    tenantCaps: Object.freeze({
      maxFiles: int(env, 'SLUICE_TENANT_MAX_FILES', 1000, 1),
      maxFileBytes: int(env, 'SLUICE_TENANT_MAX_FILE_BYTES', 10 * 1024 * 1024 * 1024, 1),
      maxActiveBatches: int(env, 'SLUICE_TENANT_MAX_ACTIVE_BATCHES', 10, 1),
      maxWebhookEndpoints: int(env, 'SLUICE_TENANT_MAX_WEBHOOK_ENDPOINTS', 10, 1),
      maxConcurrentExports: int(env, 'SLUICE_TENANT_MAX_CONCURRENT_EXPORTS', 2, 1),
      maxConcurrentUploads: int(env, 'SLUICE_TENANT_MAX_CONCURRENT_UPLOADS', 4, 1),
    }),
    responseCache: Object.freeze({
      l1MaxEntries: int(env, 'SLUICE_CACHE_L1_MAX_ENTRIES', DEFAULT_RESPONSE_CACHE_CONFIG.l1MaxEntries, 0),
      l1MaxBytes: int(env, 'SLUICE_CACHE_L1_MAX_BYTES', DEFAULT_RESPONSE_CACHE_CONFIG.l1MaxBytes, 0),
      l1TenantMaxBytes: int(env, 'SLUICE_CACHE_L1_TENANT_MAX_BYTES', DEFAULT_RESPONSE_CACHE_CONFIG.l1TenantMaxBytes, 0),
      maxEntryBytes: int(env, 'SLUICE_CACHE_MAX_ENTRY_BYTES', DEFAULT_RESPONSE_CACHE_CONFIG.maxEntryBytes, 1024, 16 * 1024 * 1024),
      tenantMaxBytes: int(env, 'SLUICE_CACHE_TENANT_MAX_BYTES', DEFAULT_RESPONSE_CACHE_CONFIG.tenantMaxBytes, 0),
      tenantMaxEntries: int(env, 'SLUICE_CACHE_TENANT_MAX_ENTRIES', DEFAULT_RESPONSE_CACHE_CONFIG.tenantMaxEntries, 1, 10_000_000),
      defaultTtlSeconds: int(env, 'SLUICE_CACHE_TTL_SECONDS', DEFAULT_RESPONSE_CACHE_CONFIG.defaultTtlSeconds, 1, 2_592_000),
    }),
    tracing: tracingConfig(env),
  });
}

/** `k=v,k2=v2` (values URL-encoded), the OpenTelemetry header list format. */
function otlpHeaders(name: string, raw: string | null): Record<string, string> {
  const headers: Record<string, string> = {};
  if (raw === null) return headers;
  for (const pair of raw.split(',')) {
    if (pair.trim() === '') continue;
    const eq = pair.indexOf('=');
    const key = eq > 0 ? pair.slice(0, eq).trim() : '';
    if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(key)) throw new ConfigError(`${name}: each entry must be key=value with a header name as key`);
    try {
      headers[key] = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      throw new ConfigError(`${name}: the value of ${key} is not URL-encoded text`);
    }
  }
  return headers;
}

/** The OTLP traces URL: the signal endpoint as given, or the base endpoint + `/v1/traces`. */
function otlpTracesUrl(env: Env): string {
  const signal = envText(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const base = envText(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  const [name, url] = signal !== null
    ? ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', signal]
    : ['OTEL_EXPORTER_OTLP_ENDPOINT', base === null ? 'http://localhost:4318/v1/traces' : `${base.replace(/\/+$/, '')}/v1/traces`];
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(`${name} must be an http(s) URL, got "${url}"`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new ConfigError(`${name} must be an http(s) URL, got "${url}"`);
  return parsed.toString();
}

/** {@link SluiceConfig.tracing}: null (off) unless an OTLP exporter is asked for. */
function tracingConfig(env: Env): TracingConfig | null {
  if (bool(env, 'OTEL_SDK_DISABLED', false)) return null;
  const exporter = envText(env, 'OTEL_TRACES_EXPORTER');
  if (exporter !== null && exporter !== 'otlp' && exporter !== 'none') {
    throw new ConfigError(`OTEL_TRACES_EXPORTER "${exporter}" is not supported: use otlp or none`);
  }
  const endpointSet = envText(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') !== null || envText(env, 'OTEL_EXPORTER_OTLP_ENDPOINT') !== null;
  if (exporter === 'none' || (exporter === null && !endpointSet)) return null;
  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL']) {
    const protocol = envText(env, name);
    if (protocol !== null && protocol !== 'http/json') throw new ConfigError(`${name} "${protocol}" is not supported: Sluice exports OTLP over HTTP as JSON (http/json)`);
  }
  const samplerName = envText(env, 'OTEL_TRACES_SAMPLER') ?? 'parentbased_always_on';
  if (!(TRACE_SAMPLERS as readonly string[]).includes(samplerName)) throw new ConfigError(`OTEL_TRACES_SAMPLER "${samplerName}" is not one of ${TRACE_SAMPLERS.join(', ')}`);
  const ratioText = envText(env, 'OTEL_TRACES_SAMPLER_ARG');
  const ratio = ratioText === null ? 1 : Number(ratioText);
  if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) throw new ConfigError(`OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1, got "${ratioText ?? ''}"`);
  const headersVar = envText(env, 'OTEL_EXPORTER_OTLP_TRACES_HEADERS') !== null ? 'OTEL_EXPORTER_OTLP_TRACES_HEADERS' : 'OTEL_EXPORTER_OTLP_HEADERS';
  const timeoutVar = envText(env, 'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT') !== null ? 'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT' : 'OTEL_EXPORTER_OTLP_TIMEOUT';
  return Object.freeze({
    serviceName: envText(env, 'OTEL_SERVICE_NAME') ?? 'sluice',
    endpoint: otlpTracesUrl(env),
    headers: Object.freeze(otlpHeaders(headersVar, envText(env, headersVar))),
    timeoutMs: int(env, timeoutVar, 10_000, 1, 600_000),
    sampler: Object.freeze({ name: samplerName as TraceSamplerName, ratio }),
    dbQueries: bool(env, 'SLUICE_TRACE_DB_QUERIES', true),
  });
}
