/**
 * The availability SLI's classes (activities/audit.ts `outcomeClass`) and the metrics the alerts
 * read: a failure's HTTP status class decides server vs client error; incident counters exist at
 * zero from the start; the audit gauge has no series until a verify ran (it must not read "broken").
 */
import { describe, expect, it } from 'vitest';
import { outcomeClass } from '../../activities/audit.js';
import { FAILURES } from '../../contracts/failures.js';
import { REQUEST_LATENCY_BUCKETS, SCHEDULE_TO_START_BUCKETS, createMetrics } from '../../runtime/metrics.js';

const failed = (type: string) => ({ status: 'failed' as const, error: { type, message: 'x', code: null } });

describe('outcomeClass', () => {
  it('classes every failure type of the failure table by its HTTP status', () => {
    for (const [type, answer] of Object.entries(FAILURES)) {
      expect(outcomeClass(failed(type)), type).toBe(answer.status >= 500 ? 'server_error' : 'client_error');
    }
    expect(outcomeClass(failed('QuotaExceeded'))).toBe('client_error');
    expect(outcomeClass(failed('PermissionDenied'))).toBe('client_error');
    expect(outcomeClass(failed('NoDeploymentAvailable'))).toBe('server_error');
  });

  it('counts an unknown failure type as a server error (it is answered as InternalError)', () => {
    expect(outcomeClass(failed('SomethingNew'))).toBe('server_error');
    expect(outcomeClass({ status: 'failed', error: null })).toBe('server_error');
  });

  it('keeps successes and cancels apart', () => {
    expect(outcomeClass({ status: 'succeeded', error: null })).toBe('succeeded');
    expect(outcomeClass({ status: 'cancelled', error: { type: 'Cancelled', message: 'cancelled', code: null } })).toBe('cancelled');
  });
});

describe('createMetrics', () => {
  it('exports the incident counters at zero before any incident, and no audit verdict before a verify', async () => {
    const text = await createMetrics({ defaults: false }).registry.metrics();
    for (const series of [
      'sluice_webhook_delivery_attempts_total{result="failed"} 0',
      'sluice_webhook_deliveries_abandoned_total 0',
      'sluice_reconciliation_mismatches_total{check="billing_day"} 0',
      'sluice_reconciliation_mismatches_total{check="billing_invoice"} 0',
      'sluice_audit_verifications_total{result="broken"} 0',
    ]) expect(text).toContain(series);
    expect(text).not.toMatch(/^sluice_audit_chain_valid/m);
  });

  it('has the latency SLO and backlog thresholds of deploy/prometheus/rules.yml as bucket bounds', () => {
    expect(REQUEST_LATENCY_BUCKETS).toContain(10);
    expect(SCHEDULE_TO_START_BUCKETS).toContain(30);
  });
});
