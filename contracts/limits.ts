/**
 * The shapes of the limits every process is configured with (`runtime/config.ts` reads them; the
 * database pool, the files route and the per-tenant caps apply them). Pure types.
 */

/** Bounds that keep one caller from holding (or waiting for) a connection forever. */
export interface DbTimeouts {
  /** PostgreSQL `statement_timeout` of every connection. @default 120000 */
  statementTimeoutMs: number;
  /** PostgreSQL `idle_in_transaction_session_timeout`: a transaction whose client went quiet is ended. @default 30000 */
  idleInTransactionTimeoutMs: number;
  /** Longest wait for a pool connection before the pool errors (`isPoolTimeout` in db/database.ts). @default 10000 */
  acquireTimeoutMs: number;
}

/** Per-tenant caps (the same for every tenant). */
export interface TenantCaps {
  /** Files a tenant may store. @default 1000 */
  maxFiles: number;
  /** Bytes of files a tenant may store. @default 10737418240 (10 GiB) */
  maxFileBytes: number;
  /** Batches of a tenant not yet finished (validating, in progress, finalizing, cancelling). @default 10 */
  maxActiveBatches: number;
  /** Webhook endpoints of a tenant; it also bounds the workflows one event fans out to. @default 10 */
  maxWebhookEndpoints: number;
  /** Usage/invoice exports of a tenant streaming at once, per API process. @default 2 */
  maxConcurrentExports: number;
  /** Uploads of a tenant being received at once, per API process. @default 4 */
  maxConcurrentUploads: number;
}

/** Least progress of an upload body: `minBytes` in every `windowMs`, or it is cut off with 408 `upload_too_slow`. */
export interface UploadProgress {
  /** @default 10000 */
  windowMs: number;
  /** @default 10240 */
  minBytes: number;
}
