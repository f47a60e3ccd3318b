/**
 * `admit` and `complete` run the request's steps in the workflow's order and stop at the first
 * refusal; a failure after the reservation gives it back; the circuit of the first deployment that
 * lets the request in is the one acquired. The steps themselves run against PostgreSQL in the
 * integration tests; here they are recorded calls.
 */
import { describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { createAdmissionActivities, type RequestSteps } from '../../activities/admission.js';
import type { DeploymentTarget } from '../../contracts/chat.js';

/** A deployment as data: nothing is generated here, so the provider is only a value. */
function deployment(id: string, priority: number): DeploymentTarget {
  return { id, model: 'm', pool: 'p', provider: 'instant', ggufPath: null, baseUrl: null, apiKeyRef: null, upstreamModel: null, weight: 1, priority };
}

function recordingSteps(overrides: Partial<RequestSteps> = {}, open: readonly string[] = []) {
  const calls: string[] = [];
  const steps: RequestSteps = {
    // The variant's model m2 has a smaller output limit than the requested m.
    authorize: async (i) => (calls.push(`authorize:${i.model}`), { model: i.model, contextLength: 100, maxOutputTokens: i.model === 'm2' ? 12 : 16 }),
    reserveQuota: async (i) => (calls.push(`reserveQuota:${i.model}:${i.maxTokens}`), { estCostMicros: 42 }),
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
  it('authorizes the requested model, assigns, authorizes the variant\'s model, reserves on it at its limit, routes it by priority', async () => {
    const { steps, calls } = recordingSteps();
    const admission = await createAdmissionActivities(steps).admit(INPUT);
    expect(calls).toEqual(['authorize:m', 'assignExperiment', 'authorize:m2', 'reserveQuota:m2:12', 'planRoute:m2', 'acquireCircuit:first']);
    expect(admission).toMatchObject({ maxTokens: 12, estCostMicros: 42, assignment: { variant: 'b', overrides: { model: 'm2' } }, acquired: 0, authorized: { model: 'm2' } });
    expect(admission.deployments.map((d) => d.id)).toEqual(['first', 'second', 'third']);
  });

  it('authorizes once and reserves the requested model when no variant changes it', async () => {
    const { steps, calls } = recordingSteps({ assignExperiment: async () => (calls.push('assignExperiment'), { experimentId: null, variant: null, overrides: {} }) });
    expect((await createAdmissionActivities(steps).admit({ ...INPUT, maxTokens: 5 })).maxTokens).toBe(5);
    expect(calls).toEqual(['authorize:m', 'assignExperiment', 'reserveQuota:m:5', 'planRoute:m', 'acquireCircuit:first']);
  });

  it('reserves the variant\'s max_tokens, clamped to the effective model\'s limit, and hands the clamped value on', async () => {
    const variant = (overrides: Record<string, unknown>) => recordingSteps({ assignExperiment: async () => ({ experimentId: 'e', variant: 'b', overrides }) });
    const small = variant({ max_tokens: 3 });
    const a = await createAdmissionActivities(small.steps).admit({ ...INPUT, maxTokens: 10 });
    expect(small.calls).toContain('reserveQuota:m:3');
    expect(a).toMatchObject({ maxTokens: 3, assignment: { overrides: { max_tokens: 3 } } });
    const big = variant({ model: 'm2', max_tokens: 1000 });
    const b = await createAdmissionActivities(big.steps).admit(INPUT);
    expect(big.calls).toContain('reserveQuota:m2:12');
    expect(b).toMatchObject({ maxTokens: 12, assignment: { overrides: { model: 'm2', max_tokens: 12 } } });
    // The caller's max_tokens (checked against the requested model) is clamped to the variant model's limit too.
    const callers = recordingSteps();
    expect((await createAdmissionActivities(callers.steps).admit({ ...INPUT, maxTokens: 16 })).maxTokens).toBe(12);
  });

  it('refuses a variant whose model the key or tenant may not use, before reserving anything', async () => {
    const denied = ApplicationFailure.create({ type: 'PermissionDenied', message: 'tenant may not use model m2', nonRetryable: true, details: [{ code: 'model_not_allowed', param: 'model', retryAfterSeconds: null }] });
    const { steps, calls } = recordingSteps({
      authorize: async (i) => {
        calls.push(`authorize:${i.model}`);
        if (i.model === 'm2') throw denied;
        return { model: i.model, contextLength: 100, maxOutputTokens: 16 };
      },
    });
    const err = await createAdmissionActivities(steps).admit(INPUT).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect(err).toMatchObject({ type: 'PermissionDenied', nonRetryable: true, message: expect.stringContaining('experiment variant b') });
    expect((err as ApplicationFailure).details?.[0]).toMatchObject({ code: 'model_not_allowed' });
    expect(calls).toEqual(['authorize:m', 'assignExperiment', 'authorize:m2']);
  });

  it('refuses a stored variant with a malformed model or max_tokens as a bad request, before reserving', async () => {
    for (const overrides of [{ model: 42 }, { max_tokens: 'lots' }, { max_tokens: 0 }, { max_tokens: 1.5 }, null, 'hot', [1]]) {
      const { steps, calls } = recordingSteps({ assignExperiment: async () => ({ experimentId: 'e', variant: 'b', overrides: overrides as never }) });
      await expect(createAdmissionActivities(steps).admit(INPUT)).rejects.toMatchObject({ type: 'BadRequest', nonRetryable: true });
      expect(calls.filter((c) => c.startsWith('reserveQuota'))).toEqual([]);
    }
  });

  it('acquires the first circuit that is not open, and says -1 when all are', async () => {
    const some = recordingSteps({}, ['first']);
    expect((await createAdmissionActivities(some.steps).admit({ ...INPUT, maxTokens: 3 })).acquired).toBe(1);
    expect(some.calls).toContain('reserveQuota:m2:3');
    const all = recordingSteps({}, ['first', 'second', 'third']);
    expect((await createAdmissionActivities(all.steps).admit(INPUT)).acquired).toBe(-1);
    expect(all.calls.filter((c) => c.startsWith('acquireCircuit'))).toHaveLength(3);
  });

  it('stops at a refusal without releasing anything', async () => {
    const refused = ApplicationFailure.create({ type: 'QuotaExceeded', message: 'limit', nonRetryable: true });
    const { steps, calls } = recordingSteps({ reserveQuota: async () => { throw refused; } });
    await expect(createAdmissionActivities(steps).admit(INPUT)).rejects.toBe(refused);
    expect(calls).toEqual(['authorize:m', 'assignExperiment', 'authorize:m2']);
  });

  it('gives the reservation back when a later step fails', async () => {
    const lost = new Error('connection lost');
    const { steps, calls } = recordingSteps({ planRoute: async () => { throw lost; } });
    await expect(createAdmissionActivities(steps).admit(INPUT)).rejects.toBe(lost);
    expect(calls).toEqual(['authorize:m', 'assignExperiment', 'authorize:m2', 'reserveQuota:m2:12', 'releaseQuota']);
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
        calls.push(`reserveQuota:${i.requestId}:${i.model}`);
        if (i.requestId === 'r2') throw refused;
        return { estCostMicros: 42 };
      },
    });
    const results = await createAdmissionActivities(steps).admitLines({ items: ['r1', 'r2', 'r3'].map((requestId) => ({ ...INPUT, requestId })) });
    expect(results.map((r) => r.ok)).toEqual([true, false, true]);
    expect(results[1]).toEqual({ ok: false, failure: { type: 'QuotaExceeded', message: 'limit', details: [{ code: 'rate_limit_exceeded' }] } });
    expect(results[0]).toMatchObject({ ok: true, value: { estCostMicros: 42, acquired: 0 } });
    // One authorization per model the lines use: the requested one and the variant's.
    expect(calls.filter((c) => c.startsWith('authorize')).sort()).toEqual(['authorize:m', 'authorize:m2']);
    expect(calls.filter((c) => c.startsWith('planRoute'))).toHaveLength(1);
    expect(calls.filter((c) => c.startsWith('reserveQuota')).sort()).toEqual(['reserveQuota:r1:m2', 'reserveQuota:r2:m2', 'reserveQuota:r3:m2']);
    expect(calls.filter((c) => c === 'assignExperiment')).toHaveLength(3);
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
