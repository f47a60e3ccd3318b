/** Models written straight to the database, for tests that run activities without the API. */
import type { Db } from '../../db/database.js';
import { createModel } from '../../db/repositories/models.js';

/**
 * Model `m` on the instant backend (pool `local`), at 1 micro-USD a token each way, created a
 * minute ago (its prices apply to anything the test does now).
 */
export async function createInstantTestModel(db: Db, maxOutputTokens: number): Promise<void> {
  await createModel(db, {
    id: 'm', ownedBy: 'test', contextLength: 1024, maxOutputTokens,
    deployments: [{
      id: 'm-local', pool: 'local', provider: 'instant', ggufPath: null, baseUrl: null, apiKeyRef: null, upstreamModel: null,
      weight: 1, priority: 0, inputMicrosPerMtok: 1_000_000, outputMicrosPerMtok: 1_000_000,
    }],
  }, new Date(Date.now() - 60_000));
}
