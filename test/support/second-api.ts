/**
 * Another API replica over a test stack's database and Temporal client, on its own free port:
 * for tests of limits that must hold across replicas, and of the API's own failure paths.
 */
import type { Server } from 'node:http';
import { createApp, type AppConfig } from '../../api/app.js';
import type { Db } from '../../db/database.js';
import { createMetrics } from '../../runtime/metrics.js';
import { createLogger } from '../../runtime/logger.js';
import type { TestStack } from './stack.js';

export interface SecondApi {
  url: string;
  logs: string[];
  close(): Promise<void>;
}

export async function startSecondApi(stack: TestStack, overrides: Partial<AppConfig> = {}, db: Db = stack.db): Promise<SecondApi> {
  const logs: string[] = [];
  const app = createApp({
    temporal: stack.client, db, metrics: createMetrics({ defaults: false }), log: createLogger('info', { process: 'api-2' }, (l) => logs.push(l)),
    config: {
      maxBodyBytes: stack.config.maxBodyBytes, namespace: stack.config.temporalNamespace,
      pools: stack.config.pools, eagerStart: false, requestTimeoutMs: stack.config.requestTimeoutMs, auditKey: stack.config.auditKey,
      enableInstantBackend: stack.config.enableInstantBackend,
      ...overrides,
    },
  });
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(0, '127.0.0.1', (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    logs,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
