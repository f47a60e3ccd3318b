/** Denials are aggregated before they reach the audit chain: one row at once, then one counted row per window. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createDenialAuditor } from '../../api/denial-audit.js';
import type { AuditEntry } from '../../db/repositories/audit.js';

let written: AuditEntry[][];
const write = async (entries: AuditEntry[]) => {
  written.push(entries);
};
const denial = (keyId = 'key_a', target = 'GET /admin/usage') => ({ keyId, tenantId: 'ten_a', role: 'user', permission: 'usage:read', target });
const rows = () => written.flat();
const total = () => rows().reduce((n, r) => n + Number(r.data.count), 0);

beforeEach(() => {
  written = [];
  vi.useFakeTimers({ now: new Date('2026-12-01T12:00:00Z') });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('denial auditor', () => {
  it('writes the first denial at once and the repeats as one counted row when the window ends', async () => {
    const auditor = createDenialAuditor(write, { windowMs: 10_000 });
    for (let i = 0; i < 1000; i++) await auditor.record(denial());
    expect(written).toHaveLength(1);
    expect(rows()[0]).toMatchObject({ action: 'auth.denied', actor: 'key:key_a', tenantId: 'ten_a', target: 'GET /admin/usage', data: { count: 1 } });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(written).toHaveLength(2);
    expect(rows()[1]).toMatchObject({ action: 'auth.denied', data: { aggregated: true, count: 999 } });
    expect(total()).toBe(1000);
    // A quiet window writes nothing.
    await vi.advanceTimersByTimeAsync(30_000);
    expect(written).toHaveLength(2);
    await auditor.close();
  });

  it('keeps kinds apart: another key or route is its own first denial', async () => {
    const auditor = createDenialAuditor(write, { windowMs: 10_000 });
    await auditor.record(denial('key_a'));
    await auditor.record(denial('key_b'));
    await auditor.record(denial('key_a', 'POST /admin/keys'));
    await auditor.record(denial('key_a'));
    expect(rows().map((r) => `${r.actor} ${r.target}`)).toEqual(['key:key_a GET /admin/usage', 'key:key_b GET /admin/usage', 'key:key_a POST /admin/keys']);
    await auditor.close();
    expect(total()).toBe(4);
  });

  it('bounds first-of-a-kind rows with a token bucket, and counts what it holds back', async () => {
    const auditor = createDenialAuditor(write, { windowMs: 10_000, burst: 5, perSecond: 1 });
    for (let i = 0; i < 50; i++) await auditor.record(denial(`key_${i}`));
    expect(written).toHaveLength(5);
    await auditor.flush();
    expect(total()).toBe(50);
    expect(rows().length).toBe(50); // one per kind: no kind is lost, none is written twice
    await auditor.close();
  });

  it('caps the kinds it counts at once and counts the rest per tenant', async () => {
    const auditor = createDenialAuditor(write, { windowMs: 10_000, maxEntries: 3, burst: 1000 });
    for (let i = 0; i < 20; i++) await auditor.record(denial(`key_${i}`));
    expect(written).toHaveLength(3);
    await auditor.close();
    expect(rows().at(-1)).toMatchObject({ actor: 'key:various', target: '*', data: { aggregated: true, count: 17 } });
    expect(total()).toBe(20);
  });

  it('a failed write never fails the request', async () => {
    const auditor = createDenialAuditor(async () => {
      throw new Error('db down');
    });
    await expect(auditor.record(denial())).resolves.toBeUndefined();
    await auditor.close();
  });
});
