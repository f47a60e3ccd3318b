/**
 * The circuit breaker's pure state machine: closed → open at the failure threshold within the
 * window → one probe after the cooldown (half-open) → closed on success, open again on failure.
 */
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_BREAKER_CONFIG,
  breakerOnAcquire,
  breakerOnResult,
  initialBreakerState,
  type BreakerConfig,
  type BreakerState,
} from '../../domain/circuit-breaker.js';

const cfg: BreakerConfig = { failureThreshold: 3, windowMs: 10_000, cooldownMs: 5_000, probeTimeoutMs: 20_000 };
const T0 = 1_800_000_000_000;

/** Fails `n` times, `stepMs` apart, starting at `from`. Returns the state and the time of the last failure. */
function failTimes(s: BreakerState, n: number, from: number, stepMs: number): { s: BreakerState; at: number } {
  let at = from;
  for (let i = 0; i < n; i++) {
    at = from + i * stepMs;
    s = breakerOnResult(s, false, at, cfg);
  }
  return { s, at };
}

/** A breaker that opened at `openedAt`. */
function opened(openedAt: number): BreakerState {
  const { s, at } = failTimes(initialBreakerState(openedAt - 100), cfg.failureThreshold, openedAt, 0);
  expect(s.state).toBe('open');
  expect(s.openedAt).toBe(at);
  return s;
}

describe('circuit breaker: closed', () => {
  it('starts closed and allows requests without changing state', () => {
    const s = initialBreakerState(T0);
    expect(s).toEqual({ state: 'closed', failures: 0, windowStartedAt: T0, openedAt: null, probeStartedAt: null });
    const r = breakerOnAcquire(s, T0 + 1, cfg);
    expect(r.allowed).toBe(true);
    expect(r.next).toEqual(s);
  });

  it('stays closed below the threshold and counts failures', () => {
    const { s } = failTimes(initialBreakerState(T0), cfg.failureThreshold - 1, T0 + 1, 100);
    expect(s.state).toBe('closed');
    expect(s.failures).toBe(cfg.failureThreshold - 1);
    expect(breakerOnAcquire(s, T0 + 1_000, cfg).allowed).toBe(true);
  });

  it('opens when the threshold is reached within the window', () => {
    const { s, at } = failTimes(initialBreakerState(T0), cfg.failureThreshold, T0 + 1, 1_000);
    expect(s.state).toBe('open');
    expect(s.openedAt).toBe(at);
    expect(s.probeStartedAt).toBeNull();
  });

  it('resets the count when a failure falls outside the window', () => {
    const start = initialBreakerState(T0);
    const { s: almost } = failTimes(start, cfg.failureThreshold - 1, T0 + 1, 100);
    const late = T0 + cfg.windowMs + 1;
    const s = breakerOnResult(almost, false, late, cfg);
    expect(s.state).toBe('closed');
    expect(s.failures).toBe(1);
    expect(s.windowStartedAt).toBe(late);
    // The new window counts from the late failure: threshold - 1 more within it opens the circuit.
    const { s: again } = failTimes(s, cfg.failureThreshold - 1, late + 1, 100);
    expect(again.state).toBe('open');
  });

  it('a success after failures clears the count', () => {
    const { s: some } = failTimes(initialBreakerState(T0), cfg.failureThreshold - 1, T0 + 1, 100);
    const ok = breakerOnResult(some, true, T0 + 500, cfg);
    expect(ok.state).toBe('closed');
    expect(ok.failures).toBe(0);
    const { s: after } = failTimes(ok, cfg.failureThreshold - 1, T0 + 600, 100);
    expect(after.state).toBe('closed');
  });

  it('uses the documented defaults and they are frozen', () => {
    expect(DEFAULT_BREAKER_CONFIG).toEqual({ failureThreshold: 5, windowMs: 60_000, cooldownMs: 30_000, probeTimeoutMs: 120_000 });
    expect(Object.isFrozen(DEFAULT_BREAKER_CONFIG)).toBe(true);
  });
});

describe('circuit breaker: open and half-open', () => {
  const openedAt = T0 + 1_000;

  it('refuses every request during the cooldown', () => {
    const s = opened(openedAt);
    for (const dt of [0, 1, cfg.cooldownMs / 2, cfg.cooldownMs - 1]) {
      const r = breakerOnAcquire(s, openedAt + dt, cfg);
      expect(r.allowed, `at +${dt}ms`).toBe(false);
      expect(r.next).toEqual(s);
    }
  });

  it('lets exactly one probe through after the cooldown', () => {
    const s = opened(openedAt);
    const probeAt = openedAt + cfg.cooldownMs;
    const probe = breakerOnAcquire(s, probeAt, cfg);
    expect(probe.allowed).toBe(true);
    expect(probe.next.state).toBe('half_open');
    expect(probe.next.probeStartedAt).toBe(probeAt);

    for (const dt of [0, 1, cfg.probeTimeoutMs - 1]) {
      const second = breakerOnAcquire(probe.next, probeAt + dt, cfg);
      expect(second.allowed, `second acquire at +${dt}ms`).toBe(false);
      expect(second.next).toEqual(probe.next);
    }
  });

  it('lets a new probe through once the previous one has timed out', () => {
    const s = opened(openedAt);
    const probeAt = openedAt + cfg.cooldownMs;
    const probe = breakerOnAcquire(s, probeAt, cfg).next;
    const retryAt = probeAt + cfg.probeTimeoutMs;
    const again = breakerOnAcquire(probe, retryAt, cfg);
    expect(again.allowed).toBe(true);
    expect(again.next.state).toBe('half_open');
    expect(again.next.probeStartedAt).toBe(retryAt);
    expect(breakerOnAcquire(again.next, retryAt + 1, cfg).allowed).toBe(false);
  });

  it('closes on the probe’s success', () => {
    const probeAt = openedAt + cfg.cooldownMs;
    const probe = breakerOnAcquire(opened(openedAt), probeAt, cfg).next;
    const closed = breakerOnResult(probe, true, probeAt + 50, cfg);
    expect(closed).toEqual({ state: 'closed', failures: 0, windowStartedAt: probeAt + 50, openedAt: null, probeStartedAt: null });
    expect(breakerOnAcquire(closed, probeAt + 51, cfg).allowed).toBe(true);
    // A fresh count: one failure does not re-open it.
    expect(breakerOnResult(closed, false, probeAt + 60, cfg).state).toBe('closed');
  });

  it('re-opens on the probe’s failure with a new openedAt and a full cooldown', () => {
    const probeAt = openedAt + cfg.cooldownMs;
    const probe = breakerOnAcquire(opened(openedAt), probeAt, cfg).next;
    const failedAt = probeAt + 70;
    const reopened = breakerOnResult(probe, false, failedAt, cfg);
    expect(reopened.state).toBe('open');
    expect(reopened.openedAt).toBe(failedAt);
    expect(reopened.probeStartedAt).toBeNull();
    expect(breakerOnAcquire(reopened, failedAt + cfg.cooldownMs - 1, cfg).allowed).toBe(false);
    const next = breakerOnAcquire(reopened, failedAt + cfg.cooldownMs, cfg);
    expect(next.allowed).toBe(true);
    expect(next.next.state).toBe('half_open');
  });
});
