/** `npm run api`: the HTTP API alone, against DATABASE_URL and TEMPORAL_ADDRESS. */
import { loadConfig } from '../workers/config.js';
import { createLogger } from '../workers/logger.js';
import { startStack } from '../scripts/lib/system.js';
import { runMain } from '../scripts/lib/run-main.js';

const config = loadConfig();
const log = createLogger(config.logLevel, { process: 'api' });

runMain(log, async () => {
  if (!config.databaseUrl || !config.temporalAddress) throw new Error('npm run api needs DATABASE_URL and TEMPORAL_ADDRESS (npm start runs everything embedded)');
  const stack = await startStack(config, {
    databaseUrl: config.databaseUrl, temporalAddress: config.temporalAddress, api: true, control: false, pools: [], migrate: false, log,
  });
  log.info('api listening', { url: stack.url });
  return stack;
});
