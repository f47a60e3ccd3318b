/** The response cache's in-process L1 (activities/cache-lru.ts): bounded in entries, bytes and bytes per tenant. */
import { describe, expect, it } from 'vitest';
import { createLru } from '../../activities/cache-lru.js';

describe('L1 LRU', () => {
  it('evicts the least recently used entry beyond its entry bound', () => {
    const lru = createLru<string>({ maxEntries: 2, maxBytes: 1000, maxTenantBytes: 1000 });
    lru.set('a', 't', 1, 'A');
    lru.set('b', 't', 1, 'B');
    expect(lru.get('a')).toBe('A'); // a is now the most recent
    lru.set('c', 't', 1, 'C');
    expect(lru.get('b')).toBeUndefined();
    expect(lru.get('a')).toBe('A');
    expect(lru.get('c')).toBe('C');
    expect(lru.size).toBe(2);
  });

  it('keeps its bytes under the bound, and refuses an entry larger than it', () => {
    const lru = createLru<string>({ maxEntries: 100, maxBytes: 10, maxTenantBytes: 10 });
    lru.set('a', 't1', 4, 'A');
    lru.set('b', 't2', 4, 'B');
    lru.set('c', 't3', 4, 'C');
    expect(lru.bytes).toBe(8);
    expect(lru.get('a')).toBeUndefined();
    expect(lru.set('huge', 't1', 11, 'H')).toBe(false);
    expect(lru.get('huge')).toBeUndefined();
    expect(lru.bytes).toBeLessThanOrEqual(10);
  });

  it("bounds each tenant's bytes: a tenant over its share evicts its own entries, never another's", () => {
    const lru = createLru<string>({ maxEntries: 100, maxBytes: 100, maxTenantBytes: 10 });
    lru.set('victim', 'good', 5, 'V');
    for (let i = 0; i < 50; i++) lru.set(`spam${i}`, 'hostile', 3, 'S');
    expect(lru.tenantBytes('hostile')).toBeLessThanOrEqual(10);
    expect(lru.get('victim')).toBe('V');
    expect(lru.tenantBytes('good')).toBe(5);
  });

  it('replacing a key re-counts its bytes; deleteWhere drops one tenant (optionally one model)', () => {
    const lru = createLru<{ model: string }>({ maxEntries: 100, maxBytes: 100, maxTenantBytes: 100 });
    lru.set('k', 't', 5, { model: 'm1' });
    lru.set('k', 't', 7, { model: 'm1' });
    expect(lru.bytes).toBe(7);
    lru.set('k2', 't', 3, { model: 'm2' });
    lru.set('k3', 'u', 3, { model: 'm1' });
    expect(lru.deleteWhere('t', (v) => v.model === 'm1')).toBe(1);
    expect(lru.get('k2')).toEqual({ model: 'm2' });
    expect(lru.deleteWhere('t')).toBe(1);
    expect(lru.get('k3')).toEqual({ model: 'm1' });
    expect(lru.size).toBe(1);
    expect(lru.bytes).toBe(3);
  });

  it('holds nothing with a bound of 0 entries', () => {
    const lru = createLru<string>({ maxEntries: 0, maxBytes: 100, maxTenantBytes: 100 });
    expect(lru.set('a', 't', 1, 'A')).toBe(false);
    expect(lru.size).toBe(0);
  });
});
