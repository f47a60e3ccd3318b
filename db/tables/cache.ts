/** The response cache's shared level (migration 0402): one tenant's stored completion per cache key. */
import type { Insertable, Selectable } from 'kysely';
import type { CreatedAt, Timestamp } from './columns.js';

/** What an entry stores: the served attempt's output and the deployment that produced it. */
export interface CachedResponseBody {
  content: string;
  finishReason: 'stop' | 'length';
  promptTokens: number;
  completionTokens: number;
  /** Per token, when the request asked for `logprobs` (part of the key, so only such requests get it). */
  logprobs: unknown[] | null;
  /** The deployment that generated it (a hit's usage row names it; no circuit is touched). */
  deploymentId: string;
  pool: string;
}

export interface ResponseCacheTable {
  /** Part of the primary key: a lookup can only ever reach its own tenant's rows. */
  tenant_id: string;
  /** SHA-256 (hex) of the canonical request (`domain/cache-key.ts`), which includes the tenant too. */
  key: string;
  /** The effective model (invalidation by model). */
  model: string;
  /** The tenant's `cache_generation` when the entry was written: older ones are never served. */
  generation: number;
  body: CachedResponseBody;
  /** Size of `body` as stored (UTF-8 JSON), counted against the tenant's cap. */
  bytes: number;
  created_at: CreatedAt;
  expires_at: Timestamp;
}

export interface CacheTables {
  response_cache: ResponseCacheTable;
}

export type ResponseCacheRow = Selectable<ResponseCacheTable>;
export type NewResponseCacheRow = Insertable<ResponseCacheTable>;
