/**
 * The key a response-cache entry is stored under (README "Response cache"); which requests are
 * eligible is `cache-eligibility.ts` (free of Node built-ins, for the workflow).
 */
import { createHash } from 'node:crypto';
import type { ChatMessageInput, GenerateParams } from '../contracts/chat.js';
import { canonicalJson } from './canonical-json.js';

/** Version of the key's layout: a change to what the key covers bumps it, so old entries are never matched. */
const KEY_VERSION = 1;

/** What a cache entry is keyed on: who asks, what runs, on what, with which settings. */
export interface CacheKeyInput {
  tenantId: string;
  /** The effective model (a variant's, else the requested one). */
  model: string;
  /** The experiment variant (null outside any): a variant may change what runs. */
  variant: string | null;
  messages: readonly ChatMessageInput[];
  /** Every generation parameter as resolved for the backend, extras included. */
  params: GenerateParams;
}

/**
 * SHA-256 (hex) of the canonical JSON of the whole input: every field, at every depth, changes
 * it; the order of object keys does not. The tenant is part of it (and of the table's primary
 * key), so an entry never answers another tenant.
 */
export function cacheKey(input: CacheKeyInput): string {
  const { tenantId, model, variant, messages, params } = input;
  const canonical = canonicalJson({ v: KEY_VERSION, tenantId, model, variant, messages, params });
  return createHash('sha256').update(canonical).digest('hex');
}
