/**
 * Limits that hold under concurrency, through two API replicas over one database: a monthly budget
 * that admits exactly K requests admits exactly K of 10×K concurrent ones, a requests-per-minute
 * limit R admits at most R of a 3R burst in a window, and no reservation is left behind — the
 * reconciler releases those whose request workflow closed without compensating.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { addModel, settled, startJob, startTestStack, type TestStack } from '../support/stack.js';
import { startSecondApi, type SecondApi } from '../support/second-api.js';
import { CONTROL_TASK_QUEUE, chatWorkflowId } from '../../contracts/ids.js';
import { RECONCILE_SCHEDULE_ID, type reconcileReservations } from '../../workflows/reconcile.js';
import { periodOf } from '../../domain/billing-calendar.js';

let stack: TestStack;
let second: SecondApi;

/** 1 micro-USD per input token, output free: a request's cost is its prompt tokens. */
const PRICE = { input_micros_per_mtok: 1_000_000, output_micros_per_mtok: 0 };
const CONTENT = 'x'.repeat(40);
/** The reservation's estimate: prompt bytes + role + 4 (domain/chat-validation.ts) at 1 micro each. */
const EST_COST = CONTENT.length + 'user'.length + 4;

beforeAll(async () => {
  stack = await startTestStack();
  second = await startSecondApi(stack);
  await addModel(stack, { id: 'instant', context_length: 1024, max_output_tokens: 16, deployments: [{ id: 'instant-local', provider: 'instant', pool: 'local', price: PRICE }] });
  await addModel(stack, { id: 'stranded', context_length: 1024, max_output_tokens: 8, deployments: [{ id: 'stranded-x', provider: 'instant', pool: 'nowhere', price: PRICE }] });
});
afterAll(async () => {
  await second?.close();
  await stack?.stop();
});

/** One sync request through one of the replicas. */
async function ask(base: string, key: string) {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'instant', messages: [{ role: 'user', content: CONTENT }], max_tokens: 1 }),
  });
  const body: any = await res.json();
  return { status: res.status, body, retryAfter: res.headers.get('retry-after') };
}

const replicas = () => [stack.url, second.url];

describe('budget race', () => {
  // Pipeline only (docs/testing.md): reservation under concurrency; the instant backend adds no
  // model time.
  it('a budget for exactly K requests admits exactly K of 10×K concurrent ones', async () => {
    const K = 5;
    const { tenantId, key } = await stack.createTenantKey({ limits: { monthly_budget_micros: K * EST_COST } });
    // Settled cost is a little under the estimate (2 tokens less each); the slack of K requests
    // stays under one estimate, so a (K+1)th can never fit, however the race interleaves.
    expect(2 * K).toBeLessThan(EST_COST);
    const results = await Promise.all(Array.from({ length: 10 * K }, (_, i) => ask(replicas()[i % 2] as string, key)));
    const ok = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status !== 200);
    expect(ok).toHaveLength(K);
    // The settlements follow the answers (README "When a sync answer leaves").
    await Promise.all(ok.map((r) => settled(stack, r.body)));
    for (const r of refused) {
      expect(r.status).toBe(429);
      expect(r.body.error.code).toBe('insufficient_quota');
      expect(Number(r.retryAfter)).toBeGreaterThan(0);
    }
    const spend = await stack.db.selectFrom('tenant_spend').selectAll().where('tenant_id', '=', tenantId).where('period', '=', periodOf(new Date())).executeTakeFirstOrThrow();
    expect(spend.spent_micros).toBeLessThanOrEqual(K * EST_COST);
    expect(spend.spent_micros).toBeGreaterThan(0);
    expect(spend.reserved_micros).toBe(0);
    const reservations = await stack.db.selectFrom('reservations').select(['status']).where('tenant_id', '=', tenantId).execute();
    expect(reservations.map((r) => r.status)).toEqual(Array(K).fill('settled'));
    const usage = await stack.db.selectFrom('usage').select(['cost_micros']).where('tenant_id', '=', tenantId).execute();
    expect(usage).toHaveLength(K);
  });
});

describe('rate limit', () => {
  // Pipeline only (docs/testing.md): the per-minute limit across two API replicas.
  it('requests_per_minute = R admits at most R of a 3R burst through two replicas, per window', async () => {
    const R = 4;
    const { tenantId, key } = await stack.createTenantKey({ limits: { requests_per_minute: R } });
    // Keep the burst inside one fixed minute window, so "at most R" is also "exactly R".
    while (new Date().getUTCSeconds() > 45) await new Promise((r) => setTimeout(r, 500));
    const results = await Promise.all(Array.from({ length: 3 * R }, (_, i) => ask(replicas()[i % 2] as string, key)));
    const windows = await stack.db
      .selectFrom('reservations')
      .select((eb) => ['window_start', eb.fn.countAll<string>().as('n')])
      .where('tenant_id', '=', tenantId)
      .groupBy('window_start')
      .execute();
    for (const w of windows) expect(Number(w.n)).toBeLessThanOrEqual(R);
    const ok = results.filter((r) => r.status === 200);
    expect(ok.length).toBeLessThanOrEqual(R * windows.length);
    if (windows.length === 1) expect(ok).toHaveLength(R);
    for (const r of results.filter((x) => x.status !== 200)) {
      expect(r.status).toBe(429);
      expect(r.body.error.code).toBe('rate_limit_exceeded');
      expect(Number(r.retryAfter)).toBeGreaterThan(0);
      expect(Number(r.retryAfter)).toBeLessThanOrEqual(60);
    }
  });
});

describe('reconciler', () => {
  // Pipeline only (docs/testing.md): reservations left by closed workflows; `stranded` is served by
  // no worker.
  it('is scheduled when the control worker starts', async () => {
    const d = await stack.client.schedule.getHandle(RECONCILE_SCHEDULE_ID).describe();
    expect(d.action).toMatchObject({ type: 'startWorkflow', workflowType: 'reconcileReservations', taskQueue: CONTROL_TASK_QUEUE });
  });

  it('releases reservations whose workflow is closed or gone, and keeps those of running ones', async () => {
    const { tenantId, key } = await stack.createTenantKey();
    // Two requests that hold a reservation and wait for a pool with no worker.
    const live = await startJob(stack, key, { model: 'stranded', messages: [{ role: 'user', content: CONTENT }], max_tokens: 1 });
    const killed = await startJob(stack, key, { model: 'stranded', messages: [{ role: 'user', content: CONTENT }], max_tokens: 1 });
    const heldFor = async (id: string) => {
      for (let i = 0; i < 100; i++) {
        const r = await stack.db.selectFrom('reservations').select('status').where('request_id', '=', id).executeTakeFirst();
        if (r?.status === 'held') return;
        await new Promise((res) => setTimeout(res, 100));
      }
      throw new Error(`no held reservation for ${id}`);
    };
    await heldFor(live.id);
    await heldFor(killed.id);
    // Terminated: the workflow closes without running its compensation.
    await stack.client.workflow.getHandle(chatWorkflowId(killed.id)).terminate('test: operator terminated');
    // And one whose workflow never existed here (lost, or its history was already deleted).
    await stack.db.insertInto('requests').values({ id: 'req_orphan', tenant_id: tenantId, key_id: (await stack.db.selectFrom('api_keys').select('id').where('tenant_id', '=', tenantId).executeTakeFirstOrThrow()).id, kind: 'async', model: 'instant', idempotency_key: null, body_hash: 'x' }).execute();
    await stack.db.insertInto('reservations').values({ request_id: 'req_orphan', tenant_id: tenantId, window_start: new Date(), period: periodOf(new Date()), est_tokens: 10, est_cost_micros: 7, status: 'held' }).execute();
    await stack.db.updateTable('tenant_spend').set((eb) => ({ reserved_micros: eb('reserved_micros', '+', 7) })).where('tenant_id', '=', tenantId).execute();
    // All three look old enough to the reconciler.
    await sql`update reservations set created_at = now() - interval '10 minutes' where tenant_id = ${tenantId}`.execute(stack.db);

    const run = () => stack.client.workflow.execute<typeof reconcileReservations>('reconcileReservations', {
      taskQueue: CONTROL_TASK_QUEUE, workflowId: `reconcile-test-${Date.now()}`, args: [{ minAgeSeconds: 60 }],
    });
    const first = await run();
    expect(first.released.sort()).toEqual([killed.id, 'req_orphan'].sort());
    expect(first.checkpoint?.seq).toBeGreaterThan(0);
    const statuses = await stack.db.selectFrom('reservations').select(['request_id', 'status']).where('tenant_id', '=', tenantId).execute();
    expect(Object.fromEntries(statuses.map((s) => [s.request_id, s.status]))).toEqual({ [live.id]: 'held', [killed.id]: 'released', req_orphan: 'released' });
    const spend = await stack.db.selectFrom('tenant_spend').selectAll().where('tenant_id', '=', tenantId).executeTakeFirstOrThrow();
    expect(spend.reserved_micros).toBe(EST_COST);
    const audited = await stack.db.selectFrom('audit_log').select('target').where('action', '=', 'reservation.reclaimed').where('tenant_id', '=', tenantId).execute();
    expect(audited.map((a) => a.target).sort()).toEqual([`request:${killed.id}`, 'request:req_orphan'].sort());

    // Idempotent: a second run finds nothing more to do.
    expect((await run()).released).toEqual([]);
    await stack.client.workflow.getHandle(chatWorkflowId(live.id)).cancel();
  });
});
