/**
 * `admit` and `complete` run the request's steps in the workflow's order and stop at the first
 * refusal; a failure after the reservation gives it back; the circuit of the first deployment that
 * lets the request in is the one acquired. The steps themselves run against PostgreSQL in the
 * integration tests; here they are recorded calls.
 */
import { describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { createAdmissionActivities, type RequestSteps } from '../../activities/admission.js';
import type { DeploymentTarget } from '../../workflows/contracts.js';

function deployment(id: string, priority: number): DeploymentTarget {
  return { id, model: 'm', pool: 'p', provider: 'instant', ggufPath: null, baseUrl: null, apiKeyRef: null, upstreamModel: null, weight: 1, priority };
}

function recordingSteps(overrides: Partial<RequestSteps> = {}, open: readonly string[] = []) {
  const calls: string[] = [];
  const steps: RequestSteps = {
    authorize: async () => (calls.push('authorize'), { model: 'm', contextLength: 100, maxOutputTokens: 16 }),
    reserveQuota: async (i) => (calls.push(`reserveQuota:${i.maxTokens}`), { estCostMicros: 42 }),
    releaseQuota: async () => void calls.push('releaseQuota'),
    assignExperiment: async () => (calls.push('assignExperiment'), { experimentId: 'e', variant: 'b', overrides: { model: 'm2' } }),
    planRoute: async (i) => (calls.push(`planRoute:${i.model}`), [deployment('second', 1), deployment('first', 0), deployment('third', 2)]),
    acquireCircuit: async (i) => (calls.push(`acquireCircuit:${i.deploymentId}`), !open.includes(i.deploymentId)),
    settle: async () => (calls.push('settle'), { costMicros: 7 }),
    recordCircuit: async (i) => void calls.push(`recordCircuit:${i.deploymentId}:${i.ok}`),
    recordOutcome: async (i) => void calls.push(`recordOutcome:${JSON.stringify(i.summary)}`),
    recordOutcomes: async (inputs) => void calls.push(`recordOutcomes:${inputs.map((i) => `${i.requestId}=${JSON.stringify(i.summary)}`).join(',')}`),
    ...overrides,
  };
  return { steps, calls };
}

const INPUT = { requestId: 'r', tenantId: 't', keyId: 'k', model: 'm', subject: 's', promptTokensEstimate: 5, maxTokens: null };

describe('admit', () => {
  it('runs the steps in order, reserves the model limit when max_tokens is absent, routes the variant\'s model by priority', async () => {
    const { steps, calls } = recordingSteps();
    const admission = await createAdmissionActivities(steps).admit(INPUT);
    expect(calls).toEqual(['authorize', 'reserveQuota:16', 'assignExperiment', 'planRoute:m2', 'acquireCircuit:first']);
    expect(admission).toMatchObject({ maxTokens: 16, estCostMicros: 42, assignment: { variant: 'b' }, acquired: 0 });
    expect(admission.deployments.map((d) => d.id)).toEqual(['first', 'second', 'third']);
  });

  it('acquires the first circuit that is not open, and says -1 when all are', async () => {
    const some = recordingSteps({}, ['first']);
    expect((await createAdmissionActivities(some.steps).admit({ ...INPUT, maxTokens: 3 })).acquired).toBe(1);
    expect(some.calls).toContain('reserveQuota:3');
    const all = recordingSteps({}, ['first', 'second', 'third']);
    expect((await createAdmissionActivities(all.steps).admit(INPUT)).acquired).toBe(-1);
    expect(all.calls.filter((c) => c.startsWith('acquireCircuit'))).toHaveLength(3);
  });

  it('stops at a refusal without reserving or releasing anything', async () => {
    const refused = ApplicationFailure.create({ type: 'QuotaExceeded', message: 'limit', nonRetryable: true });
    const { steps, calls } = recordingSteps({ reserveQuota: async () => { throw refused; } });
    await expect(createAdmissionActivities(steps).admit(INPUT)).rejects.toBe(refused);
    expect(calls).toEqual(['authorize']);
  });

  it('gives the reservation back when a later step fails', async () => {
    const lost = new Error('connection lost');
    const { steps, calls } = recordingSteps({ planRoute: async () => { throw lost; } });
    await expect(createAdmissionActivities(steps).admit(INPUT)).rejects.toBe(lost);
    expect(calls).toEqual(['authorize', 'reserveQuota:16', 'assignExperiment', 'releaseQuota']);
  });
});

describe('complete', () => {
  it('settles, records the deployment\'s success on its circuit, then records the outcome with the settled cost', async () => {
    const { steps, calls } = recordingSteps();
    const settle = {
      requestId: 'r', step: 'infer', tenantId: 't', keyId: 'k', kind: 'sync' as const, model: 'm', deploymentId: 'd', pool: 'p',
      variant: null, promptTokens: 1, completionTokens: 2, latencyMs: 3,
    };
    const outcome = { requestId: 'r', tenantId: 't', keyId: 'k', kind: 'sync' as const, model: 'm', status: 'succeeded' as const, result: {}, error: null, summary: { pool: 'p' } };
    expect(await createAdmissionActivities(steps).complete({ settle, outcome })).toEqual({ costMicros: 7 });
    expect(calls).toEqual(['settle', 'recordCircuit:d:true', 'recordOutcome:{"pool":"p","cost_micros":7}']);
  });

  it('records no outcome and no circuit success when settling fails', async () => {
    const { steps, calls } = recordingSteps({ settle: async () => { throw new Error('down'); } });
    await expect(createAdmissionActivities(steps).complete({
      settle: { requestId: 'r', step: 'infer', tenantId: 't', keyId: 'k', kind: 'sync', model: 'm', deploymentId: 'd', pool: 'p', variant: null, promptTokens: 1, completionTokens: 1, latencyMs: 1 },
      outcome: { requestId: 'r', tenantId: 't', keyId: 'k', kind: 'sync', model: 'm', status: 'succeeded', result: {}, error: null, summary: {} },
    })).rejects.toThrow('down');
    expect(calls).toEqual([]);
  });
});

function settleFor(requestId: string) {
  return {
    settle: { requestId, step: 'infer', tenantId: 't', keyId: 'k', kind: 'batch' as const, model: 'm', deploymentId: 'd', pool: 'p', variant: null, promptTokens: 1, completionTokens: 2, latencyMs: 3 },
    outcome: { requestId, tenantId: 't', keyId: 'k', kind: 'batch' as const, model: 'm', status: 'succeeded' as const, result: {}, error: null, summary: {} },
  };
}

describe('admitLines and completeLines (a chunk of batch lines)', () => {
  it('admits each line, sharing the key\'s authorization and the model\'s route, and returns each line\'s own refusal', async () => {
    const refused = ApplicationFailure.create({ type: 'QuotaExceeded', message: 'limit', nonRetryable: true, details: [{ code: 'rate_limit_exceeded' }] });
    const { steps, calls } = recordingSteps({
      reserveQuota: async (i) => {
        calls.push(`reserveQuota:${i.requestId}`);
        if (i.requestId === 'r2') throw refused;
        return { estCostMicros: 42 };
      },
    });
    const results = await createAdmissionActivities(steps).admitLines({ items: ['r1', 'r2', 'r3'].map((requestId) => ({ ...INPUT, requestId })) });
    expect(results.map((r) => r.ok)).toEqual([true, false, true]);
    expect(results[1]).toEqual({ ok: false, failure: { type: 'QuotaExceeded', message: 'limit', details: [{ code: 'rate_limit_exceeded' }] } });
    expect(results[0]).toMatchObject({ ok: true, value: { estCostMicros: 42, acquired: 0 } });
    expect(calls.filter((c) => c === 'authorize')).toHaveLength(1);
    expect(calls.filter((c) => c.startsWith('planRoute'))).toHaveLength(1);
    expect(calls.filter((c) => c.startsWith('reserveQuota')).sort()).toEqual(['reserveQuota:r1', 'reserveQuota:r2', 'reserveQuota:r3']);
    expect(calls.filter((c) => c === 'assignExperiment')).toHaveLength(2);
    expect(calls.filter((c) => c.startsWith('acquireCircuit'))).toHaveLength(2);
  });

  it('fails the whole chunk on an error that is not a decision (Temporal retries it; every step is idempotent)', async () => {
    const { steps } = recordingSteps({ reserveQuota: async () => { throw new Error('connection lost'); } });
    await expect(createAdmissionActivities(steps).admitLines({ items: [INPUT, { ...INPUT, requestId: 'r2' }] })).rejects.toThrow('connection lost');
  });

  it('settles each line and records its circuit success, then records the settled lines\' outcomes together with their costs', async () => {
    const { steps, calls } = recordingSteps({
      settle: async (i) => {
        calls.push(`settle:${i.requestId}`);
        if (i.requestId === 'b') throw ApplicationFailure.create({ type: 'NotFound', message: 'gone', nonRetryable: true });
        return { costMicros: i.requestId === 'a' ? 5 : 9 };
      },
    });
    const results = await createAdmissionActivities(steps).completeLines({ items: [settleFor('a'), settleFor('b'), settleFor('c')] });
    expect(results).toEqual([
      { ok: true, value: { costMicros: 5 } },
      { ok: false, failure: { type: 'NotFound', message: 'gone', details: [] } },
      { ok: true, value: { costMicros: 9 } },
    ]);
    expect(calls.at(-1)).toBe('recordOutcomes:a={"cost_micros":5},c={"cost_micros":9}');
    expect(calls.filter((c) => c.startsWith('recordOutcome'))).toHaveLength(1);
    expect(calls.filter((c) => c === 'recordCircuit:d:true')).toHaveLength(2);
  });
});
