/**
 * The arithmetic of objectives and SLAs, pure and exact: attainment, the error budget, and the
 * SLA credit of a period. Counts are integers; comparisons against a target or a tier threshold
 * are integer comparisons (`good × 1e6` against `threshold_ppm × eligible`, in BigInt), so an
 * attainment exactly at a threshold is never on the wrong side by a float's rounding.
 */
import { PPM, type PlanSla, type SlaTier } from './slo.js';

/** Good and eligible events of a window (requests or batches). */
export interface SliCounts {
  /** Events that count (for availability: succeeded + failed against us; client 4xx and cancels excluded). */
  eligible: number;
  /** Events that met the objective. */
  good: number;
}

/** `good × 1e6 < ppm × eligible`: attainment strictly below `ppm`. False with no events. */
export function isBelow(c: SliCounts, ppm: number): boolean {
  if (c.eligible === 0) return false;
  return BigInt(c.good) * BigInt(PPM) < BigInt(ppm) * BigInt(c.eligible);
}

/** Attainment as a share (for display), null with no events. */
export function attainment(c: SliCounts): number | null {
  return c.eligible === 0 ? null : c.good / c.eligible;
}

/** The error budget of a window. */
export interface ErrorBudget {
  /** Bad events the target allows over the events seen so far: `(1 - target) × eligible`. */
  allowedBad: number;
  /** Bad events seen. */
  bad: number;
  /**
   * Share of the budget left: `1 - bad / allowedBad`. 1 with no events; 0 when spent exactly;
   * negative when overspent (the objective is missed). With a budget of less than one event
   * (`allowedBad < 1`), the first bad event already spends it.
   */
  remaining: number;
}

/** The error budget of `c` against a target in ppm. */
export function errorBudget(c: SliCounts, targetPpm: number): ErrorBudget {
  const bad = c.eligible - c.good;
  const allowedBad = ((PPM - targetPpm) * c.eligible) / PPM;
  if (c.eligible === 0) return { allowedBad: 0, bad: 0, remaining: 1 };
  return { allowedBad, bad, remaining: 1 - bad / allowedBad };
}

/** Whether the objective is met: attainment at or above the target. Met with no events. */
export function isMet(c: SliCounts, targetPpm: number): boolean {
  return !isBelow(c, targetPpm);
}

/**
 * The tier an attainment earns: the lowest threshold it is strictly below ("below 99.9%" means
 * strictly below, so attainment exactly at 99.9% does not earn that tier). Null when it is below
 * none, or with no eligible requests (nothing was promised about an empty month).
 */
export function creditTier(c: SliCounts, sla: PlanSla): SlaTier | null {
  let earned: SlaTier | null = null;
  for (const t of sla.tiers) if (isBelow(c, t.belowPpm)) earned = t;
  return earned;
}

/**
 * The credit in integer micro-USD: `creditBps` of the period's charges, rounded half up to a
 * whole micro-USD (the tenant gets the half). Charges below zero earn no credit.
 */
export function creditMicros(chargesMicros: number, creditBps: number): number {
  if (chargesMicros <= 0 || creditBps <= 0) return 0;
  return Number((BigInt(chargesMicros) * BigInt(creditBps) + 5_000n) / 10_000n);
}
