/**
 * The control activities publish their events through the `EventPublisher` they are given (here a
 * recording one), on real PostgreSQL: a reservation that crosses a budget threshold publishes
 * `budget.threshold` (and audits it), an async job's outcome publishes `job.succeeded`; nothing
 * goes to the webhook tables when the publisher is not the webhook one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from '../support/stack.js';
import { createDb, type Db } from '../../db/database.js';
import { migrateToLatest } from '../../db/migrate.js';
import { createTenant } from '../../db/repositories/tenants.js';
import { createControlActivities } from '../../activities/index.js';
import type { DomainEvent } from '../../activities/events.js';
import { createInstantTestModel } from '../support/db-models.js';

let db: Db;
let tenantId: string;

beforeAll(async () => {
  db = createDb({ connectionString: await createDatabase(), max: 4 }).db;
  await migrateToLatest(db);
  tenantId = (await createTenant(db, {
    name: 'events', plan: 'default',
    limits: { requests_per_minute: null, tokens_per_minute: null, max_concurrent: null, monthly_budget_micros: 100, allowed_models: null },
  })).id;
  await createInstantTestModel(db, 64);
});
afterAll(async () => {
  await db.destroy();
});

describe('events through the injected publisher', () => {
  // Pipeline only (docs/testing.md): control activities called directly; nothing is generated, the
  // deployment's `instant` provider is only a value in the models table.
  it('publishes budget.threshold from reserveQuota and job.succeeded from recordOutcome, to the publisher only', async () => {
    const published: DomainEvent[] = [];
    const acts = createControlActivities({ db, events: { publish: async (e) => void published.push(e) } });

    // 50 + 40 tokens at 1 micro-USD = 90 of a 100 budget: the 80% threshold.
    await acts.reserveQuota({ requestId: 'req_events_1', tenantId, model: 'm', promptTokensEstimate: 50, maxTokens: 40 });
    expect(published).toEqual([expect.objectContaining({ type: 'budget.threshold', tenantId, data: expect.objectContaining({ threshold_pct: 80 }) })]);
    const audited = await db.selectFrom('audit_log').select(['action']).where('tenant_id', '=', tenantId).execute();
    expect(audited.map((a) => a.action)).toEqual(['budget.threshold']);

    await acts.recordOutcome({
      requestId: 'req_events_1', tenantId, keyId: 'key_x', kind: 'async', model: 'm', status: 'succeeded',
      result: {}, error: null, summary: {},
    });
    expect(published.map((e) => e.type)).toEqual(['budget.threshold', 'job.succeeded']);
    expect(published[1]).toMatchObject({ key: 'job.succeeded:req_events_1', tenantId, data: { id: 'req_events_1', status: 'succeeded' } });

    const stored = await db.selectFrom('webhook_events').select('id').execute();
    expect(stored).toEqual([]);
  });
});
