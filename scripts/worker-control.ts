/** `npm run worker:control`: workflows and database activities on `sluice-control`; runs migrations first. */
import { loadConfig } from '../runtime/config.js';
import { createLogger } from '../runtime/logger.js';
import { startStack } from './lib/system.js';
import { ensureAdminKey, ensureModels } from './lib/bootstrap.js';
import { ensureSlos } from './lib/slo-seed.js';
import { configOrExit, runMain } from './lib/run-main.js';
import { startMetricsServer } from '../runtime/metrics-server.js';
import { installTemporalRuntime } from '../runtime/temporal-runtime.js';

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
    await ensureSlos(stack.db, config.slosFile);
    const metrics = await startMetricsServer(stack.metrics, config.metricsPort ?? config.port, { token: config.metricsToken });
    log.info('control worker running', { metrics: metrics.url });
    return { stop: async () => { await metrics.stop(); await stack.stop(); } };
  } catch (err) {
    await stack.stop();
    throw err;
  }
});
