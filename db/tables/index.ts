/**
 * The database as Kysely sees it: `Database` composed from one file per domain, each holding its
 * tables and their `Selectable`/`Insertable`/`Updateable` aliases, all re-exported here (importers
 * use `db/tables/index.js`). `bigint` columns are parsed to `number` by the pool created in
 * `db/database.ts` (safe up to 2^53: 9 billion USD in micro-units).
 */
import type { AuditTables } from './audit.js';
import type { BillingTables } from './billing.js';
import type { CacheTables } from './cache.js';
import type { ExperimentTables } from './experiments.js';
import type { FileAndBatchTables } from './files-and-batches.js';
import type { ModelTables } from './models.js';
import type { RequestTables } from './requests.js';
import type { ResponseTables } from './responses.js';
import type { SloTables } from './slos.js';
import type { StreamTables } from './streams.js';
import type { TenancyTables } from './tenancy.js';
import type { WebhookTables } from './webhooks.js';

export type * from './audit.js';
export type * from './billing.js';
export type * from './cache.js';
export type * from './experiments.js';
export type * from './files-and-batches.js';
export type * from './models.js';
export type * from './requests.js';
export type * from './responses.js';
export type * from './slos.js';
export type * from './streams.js';
export type * from './tenancy.js';
export type * from './webhooks.js';

/**
 * Every table, by name. Retention has no table of its own: its columns live on `tenants`
 * (`retention_days`, `erased_at`) and `files` (`content_purged_at`).
 */
export interface Database
  extends TenancyTables,
    ModelTables,
    RequestTables,
    ExperimentTables,
    AuditTables,
    FileAndBatchTables,
    BillingTables,
    WebhookTables,
    StreamTables,
    ResponseTables,
    CacheTables,
    SloTables {}
