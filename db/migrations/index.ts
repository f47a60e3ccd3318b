/** Every migration, by name. Names sort in the order they run; add new ones at the end. */
import type { Migration } from 'kysely';
import * as spine from './2026-11-21-0001-spine.js';
import * as tenancy from './2026-11-21-0002-tenancy.js';
import * as batches from './2026-11-21-0003-batches.js';
import * as finance from './2026-11-21-0004-finance.js';
import * as retention from './2026-11-22-0005-retention.js';
import * as webhooks from './2026-11-22-0006-webhooks.js';
import * as dayClose from './2026-11-22-0007-day-close.js';
import * as quotaFunctions from './2026-11-22-0008-quota-functions.js';
import * as operatorRoles from './2026-12-01-0102-operator-roles.js';
import * as exportKeyset from './2026-12-01-0103-export-keyset.js';
import * as embeddings from './2026-12-01-0201-embeddings.js';
import * as streamChunks from './2026-12-01-0202-stream-chunks.js';
import * as streamChunkModel from './2026-12-01-0203-stream-chunk-model.js';
import * as responses from './2026-12-01-0302-responses.js';
import * as responseCache from './2026-12-01-0402-response-cache.js';
import * as opsMetrics from './2026-12-01-0502-ops-metrics.js';
import * as slos from './2026-12-01-0501-slos.js';
import * as experimentLifecycle from './2026-12-01-0401-experiment-lifecycle.js';
import * as requestStartFailures from './2026-12-01-0651-request-start-failures.js';
import * as experimentRollups from './2026-12-01-0641-experiment-rollups.js';
import * as quotaMany from './2026-12-01-0611-quota-many.js';
import * as settlePart from './2026-12-02-0701-settle-part.js';
import * as auditAppend from './2026-12-02-0711-audit-append.js';
import * as experimentServingPerRequest from './2026-12-02-0801-experiment-serving-per-request.js';
import * as quotaManySums from './2026-12-02-0831-quota-many-sums.js';
import * as settleLockOrder from './2026-12-02-0841-settle-lock-order.js';
import * as requestRollupGuard from './2026-12-02-0851-request-rollup-guard.js';
import * as finishRequestsPlpgsql from './2026-12-02-0852-finish-requests-plpgsql.js';
import * as complete from './2026-12-02-0811-complete.js';

export const migrations: Record<string, Migration> = {
  '2026-11-21-0001-spine': spine,
  '2026-11-21-0002-tenancy': tenancy,
  '2026-11-21-0003-batches': batches,
  '2026-11-21-0004-finance': finance,
  '2026-11-22-0005-retention': retention,
  '2026-11-22-0006-webhooks': webhooks,
  '2026-11-22-0007-day-close': dayClose,
  '2026-11-22-0008-quota-functions': quotaFunctions,
  '2026-12-01-0102-operator-roles': operatorRoles,
  '2026-12-01-0103-export-keyset': exportKeyset,
  '2026-12-01-0201-embeddings': embeddings,
  '2026-12-01-0202-stream-chunks': streamChunks,
  '2026-12-01-0203-stream-chunk-model': streamChunkModel,
  '2026-12-01-0302-responses': responses,
  '2026-12-01-0402-response-cache': responseCache,
  '2026-12-01-0502-ops-metrics': opsMetrics,
  '2026-12-01-0501-slos': slos,
  '2026-12-01-0401-experiment-lifecycle': experimentLifecycle,
  '2026-12-01-0651-request-start-failures': requestStartFailures,
  '2026-12-01-0641-experiment-rollups': experimentRollups,
  '2026-12-01-0611-quota-many': quotaMany,
  '2026-12-02-0701-settle-part': settlePart,
  '2026-12-02-0711-audit-append': auditAppend,
  '2026-12-02-0801-experiment-serving-per-request': experimentServingPerRequest,
  '2026-12-02-0811-complete': complete,
  '2026-12-02-0831-quota-many-sums': quotaManySums,
  '2026-12-02-0841-settle-lock-order': settleLockOrder,
  '2026-12-02-0851-request-rollup-guard': requestRollupGuard,
  '2026-12-02-0852-finish-requests-plpgsql': finishRequestsPlpgsql,
};
