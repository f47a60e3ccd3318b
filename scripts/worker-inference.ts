/** `npm run worker:inference` (SLUICE_POOL=<name>): inference activities for one pool; needs TEMPORAL_ADDRESS, no database. */
import path from 'node:path';
import { loadConfig } from '../runtime/config.js';
import { createLogger } from '../runtime/logger.js';
import { ensureTinyGguf } from '../workers/llama/tiny-gguf.js';
import { startInferenceOnly } from './lib/system.js';
import { configOrExit, runMain } from './lib/run-main.js';
import { startMetricsServer } from '../runtime/metrics-server.js';
import { installTemporalRuntime } from '../runtime/temporal-runtime.js';

const config = configOrExit(() => loadConfig());
const log = createLogger(config.logLevel, { process: 'worker-inference', pool: config.pool });
installTemporalRuntime(log);

runMain(log, async () => {
  if (!config.temporalAddress) throw new Error('worker:inference needs TEMPORAL_ADDRESS (npm start runs everything embedded)');
  await ensureTinyGguf(path.join(config.dataDir, 'models'));
  const stack = await startInferenceOnly(config, { temporalAddress: config.temporalAddress, pools: [config.pool], log });
  try {
    const metrics = await startMetricsServer(stack.metrics, config.metricsPort ?? config.port, { token: config.metricsToken });
    log.info('inference worker running', { pool: config.pool, slots: config.slots, threads: config.threads, metrics: metrics.url });
    return { stop: async () => { await metrics.stop(); await stack.stop(); } };
  } catch (err) {
    await stack.stop();
    throw err;
  }
});
