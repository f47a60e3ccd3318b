/**
 * `npm run cluster`: the production shape on one machine, without Docker, as separate processes —
 * PostgreSQL (embedded, or DATABASE_URL), the real Temporal server on it, two API processes behind
 * nginx, two control workers and two inference workers of SLUICE_POOL. The load balancer listens on
 * PORT. Ctrl-C stops the children first, then Temporal, then PostgreSQL.
 */
import { loadConfig } from '../runtime/config.js';
import { createLogger } from '../runtime/logger.js';
import { configOrExit, runMain } from './lib/run-main.js';
import { startCluster } from './lib/cluster/cluster.js';
import { DEMO_MODEL } from './lib/bootstrap.js';

const config = configOrExit(() => loadConfig());
const log = createLogger(config.logLevel, { process: 'cluster' });

runMain(log, async (signal) => {
  if (config.temporalAddress) throw new Error('npm run cluster starts its own Temporal server: unset TEMPORAL_ADDRESS');
  process.stdout.write('Starting the cluster (first start: Temporal schemas, workflow bundles; a minute or two)...\n');
  // A process that exits on its own is logged and started again, as a supervisor would.
  const cluster = await startCluster({ config, log, signal, restartCrashed: true });
  const lines = [
    '',
    'Sluice cluster is running (each line is its own process):',
    ...cluster.summary(),
    '',
    cluster.adminKey && !config.adminKey
      ? `  Admin key (shown once, store it now): ${cluster.adminKey}`
      : '  Admin key: the one you set or were shown on first start.',
    '',
    `  Try it: curl -s ${cluster.url}/v1/models -H "Authorization: Bearer $KEY"   (model ${DEMO_MODEL}; README "Use it" makes a tenant key)`,
    '',
    'Press Ctrl-C to stop.',
    '',
  ];
  process.stdout.write(lines.join('\n') + '\n');
  return { stop: () => cluster.stop() };
});
