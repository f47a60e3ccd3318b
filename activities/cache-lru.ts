/**
 * The response cache's L1: a bounded in-process LRU of one control worker, in entries, in bytes
 * and in bytes per tenant (a tenant over its share evicts its own oldest entries, never another's).
 * A `Map` keeps insertion order, so re-inserting on each hit makes its first key the least recent.
 */

/** One stored value and what it is charged for. */
interface Slot<V> {
  tenantId: string;
  bytes: number;
  value: V;
}

/** The bounds of an {@link Lru}; 0 entries or bytes turns it off. */
export interface LruBounds {
  maxEntries: number;
  maxBytes: number;
  maxTenantBytes: number;
}

export interface Lru<V> {
  /** The value under `key` (now the most recent), or undefined. */
  get(key: string): V | undefined;
  /** Stores `value`, evicting the least recent as needed; false when it cannot fit at all. */
  set(key: string, tenantId: string, bytes: number, value: V): boolean;
  delete(key: string): void;
  /** Drops every entry of the tenant (and of one of its models, when `matches` is given). */
  deleteWhere(tenantId: string, matches?: (value: V) => boolean): number;
  readonly size: number;
  readonly bytes: number;
  /** Bytes held by one tenant. */
  tenantBytes(tenantId: string): number;
}

/** A new, empty LRU with `bounds`. */
export function createLru<V>(bounds: LruBounds): Lru<V> {
  const slots = new Map<string, Slot<V>>();
  const perTenant = new Map<string, number>();
  let total = 0;

  function remove(key: string): void {
    const slot = slots.get(key);
    if (!slot) return;
    slots.delete(key);
    total -= slot.bytes;
    const left = (perTenant.get(slot.tenantId) ?? 0) - slot.bytes;
    if (left > 0) perTenant.set(slot.tenantId, left);
    else perTenant.delete(slot.tenantId);
  }

  /** Evicts the least recent entry for which `which` holds; false when there is none. */
  function evictOldest(which: (slot: Slot<V>) => boolean): boolean {
    for (const [key, slot] of slots) {
      if (which(slot)) {
        remove(key);
        return true;
      }
    }
    return false;
  }

  return {
    get(key) {
      const slot = slots.get(key);
      if (!slot) return undefined;
      slots.delete(key);
      slots.set(key, slot);
      return slot.value;
    },
    set(key, tenantId, bytes, value) {
      remove(key);
      if (bounds.maxEntries < 1 || bytes > bounds.maxBytes || bytes > bounds.maxTenantBytes) return false;
      while ((perTenant.get(tenantId) ?? 0) + bytes > bounds.maxTenantBytes && evictOldest((s) => s.tenantId === tenantId));
      while ((total + bytes > bounds.maxBytes || slots.size >= bounds.maxEntries) && evictOldest(() => true));
      slots.set(key, { tenantId, bytes, value });
      total += bytes;
      perTenant.set(tenantId, (perTenant.get(tenantId) ?? 0) + bytes);
      return true;
    },
    delete: remove,
    deleteWhere(tenantId, matches) {
      let n = 0;
      for (const [key, slot] of [...slots]) {
        if (slot.tenantId === tenantId && (matches === undefined || matches(slot.value))) {
          remove(key);
          n++;
        }
      }
      return n;
    },
    get size() {
      return slots.size;
    },
    get bytes() {
      return total;
    },
    tenantBytes(tenantId) {
      return perTenant.get(tenantId) ?? 0;
    },
  };
}
