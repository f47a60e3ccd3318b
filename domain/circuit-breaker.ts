/**
 * The circuit breaker's state machine, pure: closed → open after `failureThreshold` failures
 * within `windowMs` → half-open after `cooldownMs` (one probe request at a time) → closed on the
 * probe's success, open again on its failure. State lives in PostgreSQL (db/repositories/circuit.ts)
 * so every worker shares it; these functions decide transitions.
 */

export interface BreakerConfig {
  /** Failures within the window that open the circuit. @default 5 */
  failureThreshold: number;
  /** Window over which failures are counted. @default 60000 */
  windowMs: number;
  /** How long an open circuit refuses traffic before letting a probe through. @default 30000 */
  cooldownMs: number;
  /** A probe that has not reported within this time no longer blocks the next probe. @default 120000 */
  probeTimeoutMs: number;
}

export const DEFAULT_BREAKER_CONFIG: Readonly<BreakerConfig> = Object.freeze({
  failureThreshold: 5,
  windowMs: 60_000,
  cooldownMs: 30_000,
  probeTimeoutMs: 120_000,
});

export interface BreakerState {
  state: 'closed' | 'open' | 'half_open';
  failures: number;
  windowStartedAt: number;
  openedAt: number | null;
  probeStartedAt: number | null;
}

export function initialBreakerState(now: number): BreakerState {
  return { state: 'closed', failures: 0, windowStartedAt: now, openedAt: null, probeStartedAt: null };
}

/** Decides whether a request may use the deployment now, and the state after that decision. */
export function breakerOnAcquire(s: BreakerState, now: number, cfg: BreakerConfig): { allowed: boolean; next: BreakerState } {
  switch (s.state) {
    case 'closed':
      return { allowed: true, next: s };
    case 'open':
      if (s.openedAt !== null && now - s.openedAt < cfg.cooldownMs) return { allowed: false, next: s };
      return { allowed: true, next: { ...s, state: 'half_open', probeStartedAt: now } };
    case 'half_open':
      if (s.probeStartedAt !== null && now - s.probeStartedAt < cfg.probeTimeoutMs) return { allowed: false, next: s };
      return { allowed: true, next: { ...s, probeStartedAt: now } };
  }
}

/** The state after a request on the deployment succeeded or failed. */
export function breakerOnResult(s: BreakerState, ok: boolean, now: number, cfg: BreakerConfig): BreakerState {
  if (ok) return s.state === 'closed' && s.failures === 0 ? s : initialBreakerState(now);
  if (s.state === 'half_open' || s.state === 'open') {
    return { ...s, state: 'open', openedAt: now, probeStartedAt: null };
  }
  const inWindow = now - s.windowStartedAt < cfg.windowMs;
  const failures = inWindow ? s.failures + 1 : 1;
  const windowStartedAt = inWindow ? s.windowStartedAt : now;
  if (failures >= cfg.failureThreshold) {
    return { state: 'open', failures, windowStartedAt, openedAt: now, probeStartedAt: null };
  }
  return { ...s, failures, windowStartedAt };
}
