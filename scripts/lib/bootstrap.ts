/**
 * First-start state, idempotent: the admin key (from SLUICE_ADMIN_KEY, else generated and shown
 * once) and the models configured by default (the generated tiny demo model, and any
 * SLUICE_GGUF_MODELS).
 */
import type { Db } from '../../db/database.js';
import { createKey, hasSuperAdminKey } from '../../db/repositories/keys.js';
import { createModel, getModel } from '../../db/repositories/models.js';
import { appendAudit } from '../../db/repositories/audit.js';

export const DEMO_MODEL = 'sluice-tiny';
export const DEMO_GGUF = 'sluice-tiny.gguf';

/** Stores the admin key on first start. Returns the secret only when this call created it. */
export async function ensureAdminKey(db: Db, configured: string | null): Promise<{ created: boolean; secret: string | null }> {
  if (await hasSuperAdminKey(db)) return { created: false, secret: null };
  const { key, secret } = await createKey(db, {
    tenantId: null, role: 'super_admin', name: 'bootstrap admin', scopes: null, expiresAt: null, ...(configured ? { secret: configured } : {}),
  });
  await appendAudit(db, { actor: 'system', tenantId: null, action: 'key.bootstrap', target: `key:${key.id}`, data: { prefix: key.prefix, from_env: configured !== null }, idempotencyKey: null, at: new Date() });
  return { created: true, secret };
}

export interface ModelBootstrapOptions {
  pool: string;
  contextSize: number;
  ggufModels: Readonly<Record<string, string>>;
}

/**
 * Registers the demo model on `pool` (price: 0.10 USD / 1M input tokens, 0.20 USD / 1M output tokens,
 * so billing has real numbers to show) and every configured GGUF, if not registered yet.
 */
export async function ensureModels(db: Db, options: ModelBootstrapOptions): Promise<string[]> {
  const wanted: Array<[string, string]> = [[DEMO_MODEL, DEMO_GGUF], ...Object.entries(options.ggufModels)];
  const created: string[] = [];
  for (const [id, ggufPath] of wanted) {
    if (await getModel(db, id)) continue;
    const model = await createModel(db, {
      id,
      ownedBy: 'sluice',
      contextLength: options.contextSize,
      maxOutputTokens: Math.min(512, Math.floor(options.contextSize / 2)),
      deployments: [{
        id: `${id}-${options.pool}`, pool: options.pool, provider: 'llama-cpp', ggufPath, baseUrl: null, apiKeyRef: null,
        upstreamModel: null, weight: 1, priority: 0, inputMicrosPerMtok: 100_000, outputMicrosPerMtok: 200_000,
      }],
    }, new Date());
    if (model) created.push(id);
  }
  return created;
}
