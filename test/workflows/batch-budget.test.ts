/**
 * The batch budget check of `validateBatch`, on real PostgreSQL: a batch that may cost more than the
 * tenant's remaining monthly budget fails validation, and a database error while reading the
 * model's price fails the activity (Temporal retries it) instead of passing as "no price".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KyselyPlugin } from 'kysely';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createDatabase } from '../support/stack.js';
import { createDb, type Db } from '../../db/database.js';
import { migrateToLatest } from '../../db/migrate.js';
import { createTenant } from '../../db/repositories/tenants.js';
import { createKey } from '../../db/repositories/keys.js';
import { finishFile, insertFile, insertFileLines } from '../../db/repositories/files.js';
import { getBatch, insertBatch } from '../../db/repositories/batches.js';
import { createBatchActivities } from '../../activities/batch.js';
import { createInstantTestModel } from '../support/db-models.js';

let db: Db;
let tenantId: string;
let keyId: string;
let seq = 0;

/** Fails every query that reads `prices`, as a lost connection would; the rest pass through. */
const pricesDown: KyselyPlugin = {
  transformQuery(args) {
    if (JSON.stringify(args.node).includes('"name":"prices"')) throw new Error('connection lost');
    return args.node;
  },
  async transformResult(args) {
    return args.result;
  },
};

beforeAll(async () => {
  db = createDb({ connectionString: await createDatabase(), max: 4 }).db;
  await migrateToLatest(db);
  // 10 micro-USD of budget; 1 micro-USD a token each way, so one line at max_tokens 16 exceeds it.
  tenantId = (await createTenant(db, {
    name: 'budget', plan: 'default',
    limits: { requests_per_minute: null, tokens_per_minute: null, max_concurrent: null, monthly_budget_micros: 10, allowed_models: null },
  })).id;
  keyId = (await createKey(db, { tenantId, role: 'developer', name: null, scopes: null, expiresAt: null })).key.id;
  await createInstantTestModel(db, 16);
});
afterAll(async () => {
  await db.destroy();
});

/** A batch in `validating` over a one-line input file. */
async function batchOfOneLine(): Promise<string> {
  const n = ++seq;
  const fileId = `file_budget_${n}`;
  await insertFile(db, { id: fileId, tenantId, purpose: 'batch', filename: 'in.jsonl' });
  const line = JSON.stringify({
    custom_id: 'a', method: 'POST', url: '/v1/chat/completions',
    body: { model: 'm', messages: [{ role: 'user', content: 'x'.repeat(40) }], max_tokens: 16 },
  });
  await insertFileLines(db, fileId, 1, [line]);
  await finishFile(db, fileId, { bytes: line.length + 1, lineCount: 1, trailingNewline: true });
  const row = await insertBatch(db, {
    id: `batch_budget_${n}`, tenantId, keyId, endpoint: '/v1/chat/completions', inputFileId: fileId,
    completionWindow: '24h', metadata: null, expiresAt: new Date(Date.now() + 3_600_000),
  });
  return row.id;
}

describe('validateBatch budget check', () => {
  // Pipeline only (docs/testing.md): the budget check reads prices, nothing is generated; the
  // deployment's `instant` provider is only a value in the models table.
  it('fails a batch whose worst-case cost exceeds the remaining budget', async () => {
    const batchId = await batchOfOneLine();
    const result = await new MockActivityEnvironment().run(createBatchActivities({ db, now: () => new Date() }).validateBatch, { batchId });
    expect(result).toEqual({ ok: false, total: 1 });
    const batch = await getBatch(db, batchId, null);
    expect(batch?.status).toBe('failed');
    expect(batch?.errors?.map((e) => e.code)).toEqual(['insufficient_quota']);
  });

  it('fails the activity on a database error reading the price, leaving the batch validating for the retry', async () => {
    const batchId = await batchOfOneLine();
    const broken = db.withPlugin(pricesDown);
    await expect(new MockActivityEnvironment().run(createBatchActivities({ db: broken, now: () => new Date() }).validateBatch, { batchId }))
      .rejects.toThrow('connection lost');
    expect((await getBatch(db, batchId, null))?.status).toBe('validating');
  });
});
