/**
 * `npm start`: the whole system in one process on embedded defaults — PostgreSQL, the Temporal
 * dev server (UI on 8233), migrations, the control worker, one inference worker per pool, the API.
 * DATABASE_URL / TEMPORAL_ADDRESS switch to external servers. Ctrl-C stops everything.
 */
import path from 'node:path';
import { loadConfig } from '../runtime/config.js';
import { createLogger } from '../runtime/logger.js';
import { ensureTinyGguf } from '../workers/llama/tiny-gguf.js';
import { startMetricsServer } from '../runtime/metrics-server.js';
import { installTemporalRuntime } from '../runtime/temporal-runtime.js';
import { startInfra, startStack, type Stack } from './lib/system.js';
import { DEMO_MODEL, ensureAdminKey, ensureModels } from './lib/bootstrap.js';
import { ensureSlos } from './lib/slo-seed.js';
import { configOrExit, runMain } from './lib/run-main.js';

/** Metrics listener of `npm start` when SLUICE_METRICS_PORT is unset (Prometheus' exporter port), on loopback. */
const DEFAULT_METRICS_PORT = 9464;

const config = configOrExit(() => loadConfig());
const log = createLogger(config.logLevel, { process: 'sluice' });
// The SDK's bundler report and worker state lines at debug level: the output is the summary below.
installTemporalRuntime(log);

runMain(log, async (signal) => {
  const infra = await startInfra(config, log, signal);
  let stack: Stack | null = null;
  let metrics: Awaited<ReturnType<typeof startMetricsServer>> | null = null;
  try {
    signal.throwIfAborted();
    await ensureTinyGguf(path.join(config.dataDir, 'models'));
    signal.throwIfAborted();
    stack = await startStack(config, {
      databaseUrl: infra.databaseUrl, temporalAddress: infra.temporalAddress, api: true, control: true, pools: config.pools, log,
    });
    signal.throwIfAborted();
    const admin = await ensureAdminKey(stack.db, config.adminKey);
    await ensureModels(stack.db, { pool: config.pool, contextSize: config.contextSize, ggufModels: config.ggufModels });
    await ensureSlos(stack.db, config.slosFile);
    metrics = await startMetricsServer(stack.metrics, config.metricsPort ?? DEFAULT_METRICS_PORT, {
      token: config.metricsToken, host: config.metricsPort === null ? '127.0.0.1' : '0.0.0.0',
    });
    signal.throwIfAborted();
    const apiUrl = `http://localhost:${config.port}`;
    const lines = [
      '',
      'Sluice is running.',
      `  API:          ${apiUrl}/v1`,
      `  Temporal UI:  ${infra.temporalUiUrl ?? `(external Temporal at ${infra.temporalAddress})`}`,
      `  Metrics:      ${metrics.url}${config.metricsToken ? ' (bearer SLUICE_METRICS_TOKEN)' : ''}`,
      `  Data dir:     ${config.dataDir}`,
    ];
    if (admin.created && admin.secret && !config.adminKey) {
      lines.push('', `  Admin key (shown once, store it now): ${admin.secret}`);
    } else {
      lines.push('', '  Admin key: the one you set or were shown on first start.');
    }
    lines.push(
      '',
      '  Try it (replace $ADMIN with the admin key):',
      `    TENANT=$(curl -s ${apiUrl}/v1/admin/tenants -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"name":"demo"}' | node -pe 'JSON.parse(require("fs").readFileSync(0)).id')`,
      `    KEY=$(curl -s ${apiUrl}/v1/admin/tenants/$TENANT/keys -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"role":"developer"}' | node -pe 'JSON.parse(require("fs").readFileSync(0)).key')`,
      `    curl -s ${apiUrl}/v1/chat/completions -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d '{"model":"${DEMO_MODEL}","messages":[{"role":"user","content":"Hello"}],"max_tokens":16}'`,
      '',
      'Press Ctrl-C to stop.',
      '',
    );
    process.stdout.write(lines.join('\n') + '\n');
    const started = { stack, metrics };
    return {
      async stop() {
        await started.metrics.stop();
        await started.stack.stop();
        await infra.stop();
      },
    };
  } catch (err) {
    // Whatever of the start-up happened is undone, also when it was interrupted half-way.
    await metrics?.stop().catch(() => undefined);
    await stack?.stop().catch((e: unknown) => log.debug('stopping a half-started stack failed', { error: e instanceof Error ? e.message : String(e) }));
    await infra.stop();
    throw err;
  }
});
