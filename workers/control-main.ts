/** `npm run worker:control`: workflows and database activities on `sluice-control`; runs migrations first. */
import { loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { startStack } from '../scripts/lib/system.js';
import { ensureAdminKey, ensureModels } from '../scripts/lib/bootstrap.js';
import { configOrExit, runMain } from '../scripts/lib/run-main.js';
import { startMetricsServer } from './metrics-server.js';
import { installTemporalRuntime } from './temporal-runtime.js';

const config = configOrExit(() => loadConfig());
const log = createLogger(config.logLevel, { process: 'worker-control' });
installTemporalRuntime(log);

runMain(log, async () => {
  if (!config.databaseUrl || !config.temporalAddress) throw new Error('worker:control needs DATABASE_URL and TEMPORAL_ADDRESS');
  const stack = await startStack(config, { databaseUrl: config.databaseUrl, temporalAddress: config.temporalAddress, api: false, control: true, pools: [], log });
  try {
    const admin = await ensureAdminKey(stack.db, config.adminKey);
    if (admin.created && admin.secret && !config.adminKey) process.stdout.write(`Admin key (shown once, store it now): ${admin.secret}\n`);
    await ensureModels(stack.db, { pool: config.pool, contextSize: config.contextSize, ggufModels: config.ggufModels });
    const metrics = await startMetricsServer(stack.metrics, config.metricsPort ?? config.port, { token: config.metricsToken });
    log.info('control worker running', { metrics: metrics.url });
    return { stop: async () => { await metrics.stop(); await stack.stop(); } };
  } catch (err) {
    await stack.stop();
    throw err;
  }
});
