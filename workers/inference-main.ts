/** `npm run worker:inference` (SLUICE_POOL=<name>): inference activities for one pool. */
import path from 'node:path';
import { loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { ensureTinyGguf } from './llama/tiny-gguf.js';
import { startStack } from '../scripts/lib/system.js';
import { runMain } from '../scripts/lib/run-main.js';
import { startMetricsServer } from './metrics-server.js';

const config = loadConfig();
const log = createLogger(config.logLevel, { process: 'worker-inference', pool: config.pool });

runMain(log, async () => {
  if (!config.databaseUrl || !config.temporalAddress) throw new Error('worker:inference needs DATABASE_URL and TEMPORAL_ADDRESS');
  await ensureTinyGguf(path.join(config.dataDir, 'models'));
  const stack = await startStack(config, {
    databaseUrl: config.databaseUrl, temporalAddress: config.temporalAddress, api: false, control: false, pools: [config.pool], migrate: false, log,
  });
  const metrics = await startMetricsServer(stack.metrics, config.port);
  log.info('inference worker running', { pool: config.pool, slots: config.slots, threads: config.threads, metrics: metrics.url });
  return { stop: async () => { await metrics.stop(); await stack.stop(); } };
});
