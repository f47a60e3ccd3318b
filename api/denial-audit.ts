/**
 * Permission denials (403) for the audit log, aggregated: every append takes the chain's one
 * lock, so a flood of denials must not be a flood of appends. The first denial of a (key, route,
 * permission) in a window is written at once (an operator sees it, with the route); repeats in
 * that window are counted in memory and written as one `auth.denied` row with `count` when the
 * window ends. A token bucket bounds the first-of-a-kind rows too (many keys, many routes): past
 * it they are counted like repeats. Per API process; state lives in the closure, not the module.
 */
import type { AuditEntry } from '../db/repositories/audit.js';

/** Appends entries to the audit chain, in order, under one lock (`appendAuditMany`). */
export type AuditWriter = (entries: AuditEntry[]) => Promise<unknown>;

/** How denials are aggregated. */
export interface DenialAuditOptions {
  /** Length of an aggregation window, ms. @default 10000 */
  windowMs?: number;
  /** First-of-a-kind rows written at once before the bucket runs dry. @default 200 */
  burst?: number;
  /** First-of-a-kind rows a second once the burst is spent. @default 10 */
  perSecond?: number;
  /** Most distinct (key, route, permission) counted at once; past it, counted per tenant. @default 10000 */
  maxEntries?: number;
}

/** One denial, as the guard saw it. */
export interface Denial {
  keyId: string;
  tenantId: string | null;
  role: string;
  permission: string;
  /** `METHOD /route/pattern`. */
  target: string;
}

interface Pending {
  denial: Denial;
  windowStart: number;
  /** Denials in this window not written yet. */
  count: number;
}

export interface DenialAuditor {
  /** Records a denial: resolves once whatever must be written at once is written. */
  record(denial: Denial): Promise<void>;
  /** Writes every counted denial now (one row per kind), as at the end of a window. */
  flush(): Promise<void>;
  /** Stops the window timer (after a last flush). */
  close(): Promise<void>;
}

function entry(d: Denial, at: Date, extra: Record<string, unknown>): AuditEntry {
  return {
    actor: `key:${d.keyId}`, tenantId: d.tenantId, action: 'auth.denied', target: d.target,
    data: { permission: d.permission, role: d.role, ...extra }, idempotencyKey: null, at,
  };
}

/**
 * Creates the per-process denial auditor over `write`; its timer is unref'd, so it never keeps a
 * process alive. A failed write is dropped (the denial is answered regardless).
 */
export function createDenialAuditor(write: AuditWriter, options: DenialAuditOptions = {}): DenialAuditor {
  const windowMs = options.windowMs ?? 10_000;
  const burst = options.burst ?? 200;
  const perSecond = options.perSecond ?? 10;
  const maxEntries = options.maxEntries ?? 10_000;
  const pending = new Map<string, Pending>();
  let tokens = burst;
  let refilledAt = Date.now();

  const take = (now: number): boolean => {
    tokens = Math.min(burst, tokens + ((now - refilledAt) / 1000) * perSecond);
    refilledAt = now;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  };

  /** Writes (and forgets) the windows that ended before `until`; all of them when `until` is null. */
  const flushDue = async (until: number | null): Promise<void> => {
    const now = Date.now();
    const rows: AuditEntry[] = [];
    for (const [k, p] of pending) {
      if (until !== null && p.windowStart + windowMs > until) continue;
      pending.delete(k);
      if (p.count > 0) {
        rows.push(entry(p.denial, new Date(now), {
          aggregated: true, count: p.count, window_start: new Date(p.windowStart).toISOString(), window_end: new Date(now).toISOString(),
        }));
      }
    }
    if (rows.length > 0) await write(rows).catch(() => undefined);
  };

  const timer = setInterval(() => void flushDue(Date.now()), windowMs);
  timer.unref();

  return {
    async record(d) {
      const now = Date.now();
      let k = `${d.keyId}\n${d.target}\n${d.permission}`;
      let current = pending.get(k);
      if (current && current.windowStart + windowMs <= now) {
        await flushDue(now);
        current = undefined;
      }
      if (current) {
        current.count += 1;
        return;
      }
      if (pending.size >= maxEntries) {
        // Too many kinds at once: count them per tenant, without the route.
        k = `overflow\n${d.tenantId ?? ''}`;
        const o = pending.get(k) ?? { denial: { ...d, keyId: 'various', target: '*', permission: '*' }, windowStart: now, count: 0 };
        o.count += 1;
        pending.set(k, o);
        return;
      }
      const written = take(now);
      pending.set(k, { denial: d, windowStart: now, count: written ? 0 : 1 });
      if (written) await write([entry(d, new Date(now), { count: 1 })]).catch(() => undefined);
    },
    flush: () => flushDue(null),
    async close() {
      clearInterval(timer);
      await flushDue(null);
    },
  };
}
