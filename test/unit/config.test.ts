/** `loadConfig(env)`: documented defaults, a ConfigError for every unusable value, a frozen result. */
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../runtime/config.js';

const VALID_ADMIN_KEY = `sk-${'A1b2_-'.repeat(4)}`;

describe('loadConfig defaults', () => {
  it('uses the documented defaults for an empty environment', () => {
    const c = loadConfig({});
    expect(c).toEqual({
      port: 8080,
      databaseUrl: null,
      streamDatabaseUrl: null,
      embeddedPgPort: 5433,
      temporalAddress: null,
      embeddedTemporalPort: 7233,
      temporalNamespace: 'default',
      dataDir: path.resolve('.data'),
      adminKey: null,
      pool: 'local',
      pools: ['local'],
      slots: 4,
      threads: Math.max(1, os.availableParallelism() - 1),
      workflowThreads: 2,
      contextSize: 2048,
      llamaFullSteps: false,
      earlyAnswer: true,
      gpu: false,
      ggufModels: {},
      upstreamKeys: {},
      maxBodyBytes: 1024 * 1024,
      fileMaxBytes: 200 * 1024 * 1024,
      fileMaxLines: 50_000,
      batchConcurrency: 1024,
      batchLinesPerRun: 2048,
      batchChunkLines: 256,
      webhooks: {
        allowPrivateHosts: [],
        retry: { initialIntervalMs: 5_000, maxIntervalMs: 3_600_000, maxAttempts: 20, horizonMs: 86_400_000, timeoutMs: 10_000 },
      },
      logLevel: 'info',
      auditKey: null,
      slosFile: null,
      requestTimeoutMs: 600_000,
      allowPrivateUpstreams: [],
      upstreamMaxResponseBytes: 4 * 1024 * 1024,
      enableInstantBackend: false,
      payloadKey: null,
      payloadKeyPrevious: null,
      temporalTls: null,
      metricsPort: null,
      metricsToken: null,
      opsMetricsIntervalMs: 60_000,
      dbPoolSize: 20,
      dbTimeouts: { statementTimeoutMs: 120_000, idleInTransactionTimeoutMs: 30_000, acquireTimeoutMs: 10_000 },
      http: { headersTimeoutMs: 20_000, requestTimeoutMs: 60_000 },
      uploadProgress: { windowMs: 10_000, minBytes: 10_240 },
      fileMaxLineBytes: 1024 * 1024,
      tenantCaps: {
        maxFiles: 1000, maxFileBytes: 10 * 1024 * 1024 * 1024, maxActiveBatches: 10, maxWebhookEndpoints: 10, maxConcurrentExports: 2, maxConcurrentUploads: 4,
      },
      responseCache: {
        l1MaxEntries: 10_000, l1MaxBytes: 64 * 1024 * 1024, l1TenantMaxBytes: 16 * 1024 * 1024, maxEntryBytes: 256 * 1024,
        tenantMaxBytes: 256 * 1024 * 1024, tenantMaxEntries: 10_000, defaultTtlSeconds: 86_400,
      },
      tracing: null,
    });
  });

  it('reads the response cache bounds and refuses values out of range', () => {
    const c = loadConfig({
      SLUICE_CACHE_L1_MAX_ENTRIES: '5', SLUICE_CACHE_L1_MAX_BYTES: '6', SLUICE_CACHE_L1_TENANT_MAX_BYTES: '7', SLUICE_CACHE_MAX_ENTRY_BYTES: '2048',
      SLUICE_CACHE_TENANT_MAX_BYTES: '9', SLUICE_CACHE_TENANT_MAX_ENTRIES: '10', SLUICE_CACHE_TTL_SECONDS: '11',
    });
    expect(c.responseCache).toEqual({ l1MaxEntries: 5, l1MaxBytes: 6, l1TenantMaxBytes: 7, maxEntryBytes: 2048, tenantMaxBytes: 9, tenantMaxEntries: 10, defaultTtlSeconds: 11 });
    expect(() => loadConfig({ SLUICE_CACHE_TTL_SECONDS: '0' })).toThrow(/SLUICE_CACHE_TTL_SECONDS/);
    expect(() => loadConfig({ SLUICE_CACHE_MAX_ENTRY_BYTES: '10' })).toThrow(/SLUICE_CACHE_MAX_ENTRY_BYTES/);
    expect(() => loadConfig({ SLUICE_CACHE_TENANT_MAX_ENTRIES: '0' })).toThrow(/SLUICE_CACHE_TENANT_MAX_ENTRIES/);
  });

  it('reads the hardening bounds (database, HTTP, uploads, tenant caps)', () => {
    const c = loadConfig({
      SLUICE_DB_POOL_SIZE: '5', SLUICE_DB_STATEMENT_TIMEOUT_MS: '1000', SLUICE_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: '2000', SLUICE_DB_ACQUIRE_TIMEOUT_MS: '300',
      SLUICE_HTTP_HEADERS_TIMEOUT_MS: '4000', SLUICE_HTTP_REQUEST_TIMEOUT_MS: '5000',
      SLUICE_UPLOAD_PROGRESS_WINDOW_MS: '600', SLUICE_UPLOAD_MIN_BYTES_PER_WINDOW: '7', SLUICE_FILE_MAX_LINE_BYTES: '4096',
      SLUICE_TENANT_MAX_FILES: '3', SLUICE_TENANT_MAX_FILE_BYTES: '9', SLUICE_TENANT_MAX_ACTIVE_BATCHES: '1',
      SLUICE_TENANT_MAX_WEBHOOK_ENDPOINTS: '2', SLUICE_TENANT_MAX_CONCURRENT_EXPORTS: '1', SLUICE_TENANT_MAX_CONCURRENT_UPLOADS: '6',
    });
    expect(c.dbPoolSize).toBe(5);
    expect(c.dbTimeouts).toEqual({ statementTimeoutMs: 1000, idleInTransactionTimeoutMs: 2000, acquireTimeoutMs: 300 });
    expect(c.http).toEqual({ headersTimeoutMs: 4000, requestTimeoutMs: 5000 });
    expect(c.uploadProgress).toEqual({ windowMs: 600, minBytes: 7 });
    expect(c.fileMaxLineBytes).toBe(4096);
    expect(c.tenantCaps).toEqual({ maxFiles: 3, maxFileBytes: 9, maxActiveBatches: 1, maxWebhookEndpoints: 2, maxConcurrentExports: 1, maxConcurrentUploads: 6 });
    expect(() => loadConfig({ SLUICE_DB_ACQUIRE_TIMEOUT_MS: '0' })).toThrow(ConfigError);
    expect(() => loadConfig({ SLUICE_TENANT_MAX_FILES: '0' })).toThrow(ConfigError);
  });

  it('treats empty and blank values as unset', () => {
    const c = loadConfig({ PORT: '', DATABASE_URL: '   ', SLUICE_POOL: '', TEMPORAL_NAMESPACE: ' ', SLUICE_GPU: '' });
    expect(c.port).toBe(8080);
    expect(c.databaseUrl).toBeNull();
    expect(c.pool).toBe('local');
    expect(c.temporalNamespace).toBe('default');
    expect(c.gpu).toBe(false);
  });

  it('does not read process.env when given an explicit environment', () => {
    const before = process.env.PORT;
    process.env.PORT = '1234';
    try {
      expect(loadConfig({}).port).toBe(8080);
    } finally {
      if (before === undefined) delete process.env.PORT;
      else process.env.PORT = before;
    }
  });
});

describe('loadConfig values', () => {
  it('reads every setting', () => {
    const c = loadConfig({
      PORT: '9000',
      DATABASE_URL: ' postgres://u@h/db ',
      SLUICE_PG_PORT: '6543',
      TEMPORAL_ADDRESS: 'temporal:7233',
      SLUICE_TEMPORAL_PORT: '7300',
      TEMPORAL_NAMESPACE: 'sluice',
      SLUICE_DATA_DIR: '/var/lib/sluice',
      SLUICE_ADMIN_KEY: VALID_ADMIN_KEY,
      SLUICE_POOL: 'gpu-a',
      SLUICE_POOLS: 'gpu-a, cpu',
      SLUICE_SLOTS: '8',
      SLUICE_THREADS: '3',
      SLUICE_CONTEXT_SIZE: '4096',
      SLUICE_GPU: 'auto',
      SLUICE_GGUF_MODELS: 'tiny=/models/tiny.gguf, qwen-0.5b:q4=rel/qwen.gguf',
      SLUICE_MAX_BODY_BYTES: '2048',
      SLUICE_LOG_LEVEL: 'warn',
    });
    expect(c).toMatchObject({
      port: 9000,
      databaseUrl: 'postgres://u@h/db',
      embeddedPgPort: 6543,
      temporalAddress: 'temporal:7233',
      embeddedTemporalPort: 7300,
      temporalNamespace: 'sluice',
      dataDir: '/var/lib/sluice',
      adminKey: VALID_ADMIN_KEY,
      pool: 'gpu-a',
      pools: ['gpu-a', 'cpu'],
      slots: 8,
      threads: 3,
      contextSize: 4096,
      gpu: 'auto',
      ggufModels: { tiny: '/models/tiny.gguf', 'qwen-0.5b:q4': 'rel/qwen.gguf' },
      maxBodyBytes: 2048,
      logLevel: 'warn',
    });
  });

  it('names the bound an unbounded setting broke, not a range to the largest safe integer', () => {
    expect(loadConfig({ SLUICE_SLOTS: '8' }).slots).toBe(8);
    for (const bad of ['0', '-1', '2.5', 'four']) {
      expect(() => loadConfig({ SLUICE_SLOTS: bad })).toThrow(new RegExp(`^SLUICE_SLOTS must be an integer >= 1, got "${bad.replace('.', '\\.')}"$`));
    }
    expect(() => loadConfig({ SLUICE_SLOTS: '1e300' })).toThrow(/^SLUICE_SLOTS must be an integer <= 9007199254740991, got "1e300"$/);
  });

  it('takes the control worker\'s workflow threads, 1 to 64', () => {
    expect(loadConfig({ SLUICE_WORKFLOW_THREADS: '4' }).workflowThreads).toBe(4);
    expect(() => loadConfig({ SLUICE_WORKFLOW_THREADS: '0' })).toThrow(/SLUICE_WORKFLOW_THREADS must be an integer from 1 to 64/);
  });

  it('turns the llama.cpp full decode steps on, and refuses a value that is not a boolean', () => {
    expect(loadConfig({ SLUICE_LLAMA_FULL_STEPS: 'true' }).llamaFullSteps).toBe(true);
    expect(() => loadConfig({ SLUICE_LLAMA_FULL_STEPS: 'garbage' })).toThrow(/SLUICE_LLAMA_FULL_STEPS must be true or false/);
    expect(loadConfig({ SLUICE_EARLY_ANSWER: 'false' }).earlyAnswer).toBe(false);
    expect(() => loadConfig({ SLUICE_EARLY_ANSWER: 'yes please' })).toThrow(/SLUICE_EARLY_ANSWER must be true or false/);
  });

  it('takes the lines a batch has in flight, and refuses the removed local-activities switch by name', () => {
    expect(loadConfig({ SLUICE_BATCH_CONCURRENCY: '200' }).batchConcurrency).toBe(200);
    expect(loadConfig({}).batchChunkLines).toBe(256);
    expect(loadConfig({ SLUICE_BATCH_CHUNK_LINES: '64' }).batchChunkLines).toBe(64);
    expect(() => loadConfig({ SLUICE_BATCH_CHUNK_LINES: '0' })).toThrow(/SLUICE_BATCH_CHUNK_LINES must be an integer from 1 to 1000/);
    expect(loadConfig({ SLUICE_BATCH_CONCURRENCY: '1024' }).batchConcurrency).toBe(1024);
    expect(() => loadConfig({ SLUICE_BATCH_CONCURRENCY: '2049' })).toThrow(/SLUICE_BATCH_CONCURRENCY must be an integer from 1 to 2048/);
    expect(() => loadConfig({ SLUICE_BATCH_LOCAL_ACTIVITIES: 'false' })).toThrow(/SLUICE_BATCH_LOCAL_ACTIVITIES was removed/);
  });

  it('resolves a relative data directory against the working directory', () => {
    expect(loadConfig({ SLUICE_DATA_DIR: 'some/dir' }).dataDir).toBe(path.resolve('some/dir'));
  });

  it('defaults the pool list to the pool', () => {
    expect(loadConfig({ SLUICE_POOL: 'edge-1' }).pools).toEqual(['edge-1']);
  });

  it('refuses the removed SLUICE_LOCAL_ACTIVITIES switch by name', () => {
    expect(() => loadConfig({ SLUICE_LOCAL_ACTIVITIES: 'false' })).toThrow(/SLUICE_LOCAL_ACTIVITIES was removed/);
  });

  it('collects SLUICE_UPSTREAM_KEY_* by reference, skipping empty values and other variables', () => {
    const c = loadConfig({
      SLUICE_UPSTREAM_KEY_OPENAI: 'sk-openai-secret',
      SLUICE_UPSTREAM_KEY_local_vllm: 'token-2',
      SLUICE_UPSTREAM_KEY_EMPTY: '',
      SLUICE_UPSTREAM_KEYS: 'not-a-key',
      OPENAI_API_KEY: 'ignored',
    });
    expect(c.upstreamKeys).toEqual({ OPENAI: 'sk-openai-secret', local_vllm: 'token-2' });
  });
});

describe('loadConfig rejections', () => {
  it.each<[string, Record<string, string>]>([
    ['PORT=abc', { PORT: 'abc' }],
    ['PORT=-1', { PORT: '-1' }],
    ['PORT=80.5', { PORT: '80.5' }],
    ['SLUICE_PG_PORT=0', { SLUICE_PG_PORT: '0' }],
    ['SLUICE_SLOTS=0', { SLUICE_SLOTS: '0' }],
    ['SLUICE_SLOTS=many', { SLUICE_SLOTS: 'many' }],
    ['SLUICE_THREADS=0', { SLUICE_THREADS: '0' }],
    ['SLUICE_CONTEXT_SIZE=32', { SLUICE_CONTEXT_SIZE: '32' }],
    ['SLUICE_MAX_BODY_BYTES=100', { SLUICE_MAX_BODY_BYTES: '100' }],
    ["SLUICE_POOL='Bad Pool'", { SLUICE_POOL: 'Bad Pool' }],
    ['SLUICE_POOL=-leading-dash', { SLUICE_POOL: '-leading-dash' }],
    ['SLUICE_POOLS with a bad entry', { SLUICE_POOLS: 'local,GPU' }],
    ['SLUICE_POOLS with an empty entry', { SLUICE_POOLS: 'a,,b' }],
    ['SLUICE_GPU=x', { SLUICE_GPU: 'x' }],
    ['SLUICE_GPU=on', { SLUICE_GPU: 'on' }],
    ['SLUICE_LOG_LEVEL=verbose', { SLUICE_LOG_LEVEL: 'verbose' }],
    ['SLUICE_ADMIN_KEY=short', { SLUICE_ADMIN_KEY: 'short' }],
    ['SLUICE_ADMIN_KEY without sk-', { SLUICE_ADMIN_KEY: 'a'.repeat(30) }],
    ['SLUICE_ADMIN_KEY with 19 characters after sk-', { SLUICE_ADMIN_KEY: `sk-${'a'.repeat(19)}` }],
    ['SLUICE_ADMIN_KEY with a bad character', { SLUICE_ADMIN_KEY: `sk-${'a'.repeat(20)}!` }],
    ['SLUICE_GGUF_MODELS without =', { SLUICE_GGUF_MODELS: 'tiny' }],
    ['SLUICE_GGUF_MODELS without a path', { SLUICE_GGUF_MODELS: 'tiny=' }],
    ['SLUICE_GGUF_MODELS without a name', { SLUICE_GGUF_MODELS: '=/m/tiny.gguf' }],
    ['SLUICE_GGUF_MODELS with a bad name', { SLUICE_GGUF_MODELS: 'bad name=/m/tiny.gguf' }],
    ['SLUICE_GGUF_MODELS with an empty entry', { SLUICE_GGUF_MODELS: 'a=/m/a.gguf,,b=/m/b.gguf' }],
  ])('throws ConfigError for %s', (_name, env) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
  });

  it('names the variable in the message', () => {
    expect(() => loadConfig({ SLUICE_SLOTS: '0' })).toThrow(/SLUICE_SLOTS/);
    expect(() => loadConfig({ PORT: 'abc' })).toThrow(/PORT/);
  });

  it('does not echo an invalid admin key in the error', () => {
    const secretish = 'sk-short!secret';
    try {
      loadConfig({ SLUICE_ADMIN_KEY: secretish });
      expect.unreachable('should have thrown');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).not.toContain(secretish);
    }
  });

  // Fails until fixed: `int()` in runtime/config.ts bounds ports only from below, so a port that
  // cannot be listened on is accepted here and fails later, away from the configuration.
  it.each([
    ['PORT', '65536'],
    ['SLUICE_PG_PORT', '70000'],
    ['SLUICE_TEMPORAL_PORT', '65536'],
  ])('throws ConfigError for %s=%s (out of the TCP port range)', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
  });
});

describe('loadConfig GGUF paths', () => {
  // Fails until fixed: ggufModels() in runtime/config.ts splits an entry on every '=' and keeps
  // only the first two pieces, so a path containing '=' is silently truncated.
  it('keeps a GGUF path that contains "=" whole, or refuses it; never truncates it', () => {
    const env = { SLUICE_GGUF_MODELS: 'tiny=/models/quant=q4/tiny.gguf' };
    let models: Readonly<Record<string, string>> | null = null;
    try {
      models = loadConfig(env).ggufModels;
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
    }
    if (models !== null) expect(models).toEqual({ tiny: '/models/quant=q4/tiny.gguf' });
  });
});

describe('loadConfig result', () => {
  it('is frozen, and so are its lists and maps', () => {
    const c = loadConfig({ SLUICE_POOLS: 'a,b', SLUICE_GGUF_MODELS: 'm=/m.gguf', SLUICE_UPSTREAM_KEY_X: 'k' });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.pools)).toBe(true);
    expect(Object.isFrozen(c.ggufModels)).toBe(true);
    expect(Object.isFrozen(c.upstreamKeys)).toBe(true);
    expect(() => {
      (c as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => (c.pools as string[]).push('c')).toThrow(TypeError);
    expect(() => {
      (c.upstreamKeys as Record<string, string>).Y = 'k2';
    }).toThrow(TypeError);
    expect(c.port).toBe(8080);
    expect(c.pools).toEqual(['a', 'b']);
  });

  it('returns a new object per call', () => {
    expect(loadConfig({})).not.toBe(loadConfig({}));
  });
});

describe('loadConfig Temporal TLS', () => {
  const address = { TEMPORAL_ADDRESS: 'temporal.example:7233' };

  it('is off by default, on with TEMPORAL_TLS alone (system CAs), and on with any TLS file', () => {
    expect(loadConfig(address).temporalTls).toBeNull();
    expect(loadConfig({ ...address, TEMPORAL_TLS: 'true' }).temporalTls).toEqual({ caFile: null, certFile: null, keyFile: null, serverName: null });
    expect(loadConfig({ ...address, TEMPORAL_TLS_CA: '/etc/sluice/ca.pem' }).temporalTls).toEqual({ caFile: '/etc/sluice/ca.pem', certFile: null, keyFile: null, serverName: null });
  });

  it('reads the CA, the client certificate and key for mTLS, and the server name', () => {
    const tls = loadConfig({
      ...address,
      TEMPORAL_TLS_CA: '/tls/ca.pem', TEMPORAL_TLS_CERT: '/tls/client.pem', TEMPORAL_TLS_KEY: '/tls/client.key', TEMPORAL_TLS_SERVER_NAME: 'temporal.internal',
    }).temporalTls;
    expect(tls).toEqual({ caFile: '/tls/ca.pem', certFile: '/tls/client.pem', keyFile: '/tls/client.key', serverName: 'temporal.internal' });
    expect(Object.isFrozen(tls)).toBe(true);
  });

  it('refuses a certificate without its key (and the reverse), a contradiction, a bad name, and TLS to the embedded server', () => {
    expect(() => loadConfig({ ...address, TEMPORAL_TLS_CERT: '/tls/client.pem' })).toThrow(/TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY/);
    expect(() => loadConfig({ ...address, TEMPORAL_TLS_KEY: '/tls/client.key' })).toThrow(/TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY/);
    expect(() => loadConfig({ ...address, TEMPORAL_TLS: 'false', TEMPORAL_TLS_CA: '/tls/ca.pem' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...address, TEMPORAL_TLS: 'maybe' })).toThrow(/TEMPORAL_TLS/);
    expect(() => loadConfig({ ...address, TEMPORAL_TLS_SERVER_NAME: 'bad name/' })).toThrow(/TEMPORAL_TLS_SERVER_NAME/);
    expect(() => loadConfig({ TEMPORAL_TLS: 'true' })).toThrow(/needs TEMPORAL_ADDRESS/);
  });
});

describe('loadConfig metrics', () => {
  it('reads the metrics listener port and token', () => {
    const c = loadConfig({ SLUICE_METRICS_PORT: '9464', SLUICE_METRICS_TOKEN: 'm'.repeat(32) });
    expect(c.metricsPort).toBe(9464);
    expect(c.metricsToken).toBe('m'.repeat(32));
  });

  it('refuses a short token and a bad port', () => {
    expect(() => loadConfig({ SLUICE_METRICS_TOKEN: 'short' })).toThrow(/SLUICE_METRICS_TOKEN/);
    expect(() => loadConfig({ SLUICE_METRICS_PORT: '70000' })).toThrow(/SLUICE_METRICS_PORT/);
  });

  it('reads the ops gauges interval within 1 s to 1 h', () => {
    expect(loadConfig({ SLUICE_OPS_METRICS_INTERVAL_MS: '5000' }).opsMetricsIntervalMs).toBe(5000);
    expect(() => loadConfig({ SLUICE_OPS_METRICS_INTERVAL_MS: '999' })).toThrow(/SLUICE_OPS_METRICS_INTERVAL_MS/);
    expect(() => loadConfig({ SLUICE_OPS_METRICS_INTERVAL_MS: '3600001' })).toThrow(/SLUICE_OPS_METRICS_INTERVAL_MS/);
  });
});
