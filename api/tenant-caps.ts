/**
 * What one tenant may hold at once (files, active batches, webhook endpoints, exports and uploads
 * in progress), so that no tenant can take the database, the disk or the API from the others.
 * Counts of stored things are checked against the database; work in progress per API process
 * with a {@link ConcurrencyGate}.
 */
import { HttpError } from './errors.js';
import type { TenantCaps } from '../contracts/limits.js';

export type { TenantCaps } from '../contracts/limits.js';

export const DEFAULT_TENANT_CAPS: TenantCaps = Object.freeze({
  maxFiles: 1000,
  maxFileBytes: 10 * 1024 * 1024 * 1024,
  maxActiveBatches: 10,
  maxWebhookEndpoints: 10,
  maxConcurrentExports: 2,
  maxConcurrentUploads: 4,
});

/** Counts work in progress per key (a tenant) and refuses more than `max` at once. */
export interface ConcurrencyGate {
  /** Takes a slot for `key`, or throws 429 `code`; call the returned function once to give it back. */
  enter(key: string): () => void;
  /** Slots of `key` in use. */
  inUse(key: string): number;
}

/** A {@link ConcurrencyGate} of `max` slots per key, refusing with 429 and the given code and message. */
export function createConcurrencyGate(max: number, code: string, what: string): ConcurrencyGate {
  const counts = new Map<string, number>();
  return {
    enter(key) {
      const n = counts.get(key) ?? 0;
      if (n >= max) throw new HttpError('rate_limit_error', `At most ${max} ${what} of a tenant may run at once; try again when one has finished`, code, null, 1);
      counts.set(key, n + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (counts.get(key) ?? 1) - 1;
        if (left <= 0) counts.delete(key);
        else counts.set(key, left);
      };
    },
    inUse: (key) => counts.get(key) ?? 0,
  };
}
