/** `npm run api`: the HTTP API alone, against DATABASE_URL and TEMPORAL_ADDRESS; metrics on SLUICE_METRICS_PORT. */
import { loadConfig } from '../runtime/config.js';
import { createLogger } from '../runtime/logger.js';
import { startStack } from './lib/system.js';
import { configOrExit, runMain } from './lib/run-main.js';
import { startMetricsServer } from '../runtime/metrics-server.js';
import { installTemporalRuntime } from '../runtime/temporal-runtime.js';

const config = configOrExit(() => loadConfig());
const log = createLogger(config.logLevel, { process: 'api' });
installTemporalRuntime(log);

runMain(log, async () => {
  if (!config.databaseUrl || !config.temporalAddress) throw new Error('npm run api needs DATABASE_URL and TEMPORAL_ADDRESS (npm start runs everything embedded)');
  const stack = await startStack(config, {
    databaseUrl: config.databaseUrl, temporalAddress: config.temporalAddress, api: true, control: false, pools: [], migrate: false, log,
  });
  try {
    // The API port is public: metrics (they carry tenant IDs) get their own listener.
    const metrics = config.metricsPort === null ? null : await startMetricsServer(stack.metrics, config.metricsPort, { token: config.metricsToken });
    log.info('api listening', { url: stack.url, metrics: metrics?.url ?? null });
    return { stop: async () => { await metrics?.stop(); await stack.stop(); } };
  } catch (err) {
    await stack.stop();
    throw err;
  }
});
