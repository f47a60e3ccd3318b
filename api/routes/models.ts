/** `GET /v1/models` (OpenAI shape), `POST/GET /v1/admin/models` (deployments and prices). */
import { Router } from 'express';
import type { Db } from '../../db/database.js';
import { createModel, listModels, listModelsWithDeployments, DuplicateDeploymentError, type DeploymentInput, type ModelWithDeployments } from '../../db/repositories/models.js';
import { getTenant } from '../../db/repositories/tenants.js';
import { appendAudit } from '../../db/repositories/audit.js';
import type { Provider } from '../../db/tables/index.js';
import { authOf, requirePermission } from '../auth.js';
import { HttpError, badRequest } from '../errors.js';
import { allowsModel } from '../../domain/policy.js';
import { intParam } from '../../domain/int-param.js';
import { UpstreamAddressError, checkUpstreamUrl, type LookupAll } from '../../activities/backends/upstream-address.js';

const ID = /^[A-Za-z0-9._:-]{1,128}$/;
const POOL = /^[a-z0-9][a-z0-9-]{0,62}$/;
const PROVIDERS: readonly Provider[] = ['llama-cpp', 'openai-compatible', 'instant'];

/** An integer field of at least `min`; `fallback` when absent. */
function intOr(v: unknown, name: string, min: number, fallback: number): number {
  return v === undefined ? fallback : intParam(v, name, min);
}

function optString(v: unknown, name: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || v === '' || v.length > 2048) throw badRequest(`'${name}' must be a non-empty string`, name, 'invalid_value');
  return v;
}

/** Parses one deployment of a create-model body. */
function deploymentInput(raw: unknown, i: number, modelId: string, enableInstant: boolean): DeploymentInput {
  if (typeof raw !== 'object' || raw === null) throw badRequest(`deployments[${i}] must be an object`, `deployments[${i}]`);
  const d = raw as Record<string, unknown>;
  const provider = d.provider as Provider;
  if (!PROVIDERS.includes(provider)) throw badRequest(`deployments[${i}].provider must be one of ${PROVIDERS.join(', ')}`, `deployments[${i}].provider`);
  // A test double that answers "ok": registrable (and billable) only where the operator enabled it.
  if (provider === 'instant' && !enableInstant) {
    throw badRequest(`deployments[${i}].provider 'instant' is a test backend, disabled on this server (SLUICE_ENABLE_INSTANT_BACKEND)`, `deployments[${i}].provider`, 'provider_disabled');
  }
  const pool = d.pool ?? 'local';
  if (typeof pool !== 'string' || !POOL.test(pool)) throw badRequest(`deployments[${i}].pool must match [a-z0-9][a-z0-9-]*`, `deployments[${i}].pool`);
  const id = d.id ?? `${modelId}-${pool}-${i}`;
  if (typeof id !== 'string' || !ID.test(id)) throw badRequest(`deployments[${i}].id is not a valid ID`, `deployments[${i}].id`);
  const ggufPath = optString(d.gguf_path, `deployments[${i}].gguf_path`);
  const baseUrl = optString(d.base_url, `deployments[${i}].base_url`);
  if (provider === 'llama-cpp' && (ggufPath === null || !ggufPath.endsWith('.gguf'))) {
    throw badRequest(`deployments[${i}].gguf_path (a .gguf file, absolute or relative to <data dir>/models) is required for llama-cpp`, `deployments[${i}].gguf_path`);
  }
  if (provider === 'openai-compatible') {
    if (baseUrl === null || !/^https?:\/\//.test(baseUrl)) throw badRequest(`deployments[${i}].base_url (http or https) is required for openai-compatible`, `deployments[${i}].base_url`);
    if (d.upstream_model === undefined) throw badRequest(`deployments[${i}].upstream_model is required for openai-compatible`, `deployments[${i}].upstream_model`);
  }
  const apiKeyRef = optString(d.api_key_ref, `deployments[${i}].api_key_ref`);
  if (apiKeyRef !== null && !/^[A-Z0-9_]{1,64}$/.test(apiKeyRef)) {
    throw badRequest(`deployments[${i}].api_key_ref names SLUICE_UPSTREAM_KEY_<REF> on the workers: [A-Z0-9_]`, `deployments[${i}].api_key_ref`);
  }
  const price = (d.price ?? {}) as Record<string, unknown>;
  return {
    id, pool, provider, ggufPath, baseUrl, apiKeyRef,
    upstreamModel: optString(d.upstream_model, `deployments[${i}].upstream_model`),
    weight: intOr(d.weight, `deployments[${i}].weight`, 1, 1),
    priority: intOr(d.priority, `deployments[${i}].priority`, 0, 0),
    inputMicrosPerMtok: intOr(price.input_micros_per_mtok, `deployments[${i}].price.input_micros_per_mtok`, 0, 0),
    outputMicrosPerMtok: intOr(price.output_micros_per_mtok, `deployments[${i}].price.output_micros_per_mtok`, 0, 0),
  };
}

export function adminModelJson(m: ModelWithDeployments) {
  return {
    id: m.id,
    object: 'model',
    owned_by: m.owned_by,
    created: Math.floor(m.created_at.getTime() / 1000),
    context_length: m.context_length,
    max_output_tokens: m.max_output_tokens,
    kind: m.kind,
    accepts_dimensions: m.accepts_dimensions,
    cache_micros_per_mtok: m.cache_micros_per_mtok,
    cache_ttl_seconds: m.cache_ttl_seconds,
    deployments: m.deployments.map((d) => ({
      id: d.id, pool: d.pool, provider: d.provider, gguf_path: d.gguf_path, base_url: d.base_url, api_key_ref: d.api_key_ref,
      upstream_model: d.upstream_model, weight: d.weight, priority: d.priority, status: d.status,
      price: d.price
        ? { input_micros_per_mtok: d.price.input_micros_per_mtok, output_micros_per_mtok: d.price.output_micros_per_mtok, effective_from: d.price.effective_from.toISOString() }
        : null,
    })),
  };
}

/**
 * Refuses base URLs on loopback, private or link-local addresses (after resolving the host)
 * unless allowed by `SLUICE_ALLOW_PRIVATE_UPSTREAMS`. The inference worker checks again per call.
 */
async function checkBaseUrls(deployments: readonly DeploymentInput[], allow: readonly string[], lookup?: LookupAll): Promise<void> {
  for (const [i, d] of deployments.entries()) {
    if (d.baseUrl === null) continue;
    try {
      await checkUpstreamUrl(d.baseUrl, allow, lookup);
    } catch (err) {
      if (!(err instanceof UpstreamAddressError)) throw err;
      throw badRequest(`deployments[${i}].base_url: ${err.message}`, `deployments[${i}].base_url`, err.reason === 'refused' ? 'upstream_not_allowed' : 'invalid_value');
    }
  }
}

export interface ModelRoutesDeps {
  db: Db;
  /** Upstream hosts allowed on private addresses (`*` = all). @default [] */
  allowPrivateUpstreams?: readonly string[];
  /** Resolves upstream host names. @default dns.lookup with all: true */
  lookup?: LookupAll;
  /** Accept `provider: "instant"` (a test double). @default false (`SLUICE_ENABLE_INSTANT_BACKEND`) */
  enableInstantBackend?: boolean;
}

export function modelRoutes(deps: ModelRoutesDeps): Router {
  const router = Router();

  router.get('/models', requirePermission(deps, 'models:read'), async (req, res) => {
    const auth = authOf(req);
    const tenant = auth.tenantId === null ? null : await getTenant(deps.db, auth.tenantId);
    const models = (await listModels(deps.db)).filter(
      (m) => allowsModel(auth.scopes, m.id) && (tenant?.allowed_models == null || tenant.allowed_models.includes(m.id)),
    );
    res.json({
      object: 'list',
      data: models.map((m) => ({ id: m.id, object: 'model', created: Math.floor(m.created_at.getTime() / 1000), owned_by: m.owned_by })),
    });
  });

  // Deployments (pools, upstream base URLs, key references, prices) are the operator's
  // configuration: only who may change them may read them. Everyone else lists `GET /v1/models`.
  router.get('/admin/models', requirePermission(deps, 'models:write'), async (_req, res) => {
    const models = await listModelsWithDeployments(deps.db, new Date());
    res.json({ object: 'list', data: models.map(adminModelJson), has_more: false });
  });

  router.post('/admin/models', requirePermission(deps, 'models:write'), async (req, res) => {
    const auth = authOf(req);
    const b = (req.body ?? {}) as Record<string, unknown>;
    if (typeof b.id !== 'string' || !ID.test(b.id)) throw badRequest("'id' must match [A-Za-z0-9._:-]{1,128}", 'id');
    const modelId = b.id;
    if (!Array.isArray(b.deployments) || b.deployments.length === 0) throw badRequest("'deployments' must be a non-empty array", 'deployments');
    const contextLength = intOr(b.context_length, 'context_length', 16, 2048);
    const maxOutput = intOr(b.max_output_tokens, 'max_output_tokens', 1, Math.min(512, contextLength));
    if (maxOutput > contextLength) throw badRequest("'max_output_tokens' cannot exceed 'context_length'", 'max_output_tokens');
    const deployments = b.deployments.map((d, i) => deploymentInput(d, i, modelId, deps.enableInstantBackend ?? false));
    const kind = b.kind ?? 'chat';
    if (kind !== 'chat' && kind !== 'embeddings') throw badRequest("'kind' must be 'chat' or 'embeddings'", 'kind', 'invalid_value');
    const acceptsDimensions = b.accepts_dimensions ?? false;
    if (typeof acceptsDimensions !== 'boolean') throw badRequest("'accepts_dimensions' must be a boolean", 'accepts_dimensions', 'invalid_value');
    if (acceptsDimensions && kind !== 'embeddings') throw badRequest("'accepts_dimensions' applies to embeddings models only", 'accepts_dimensions', 'invalid_value');
    // The price of a response-cache hit (micro-USD per million tokens of the stored response) and
    // the life of the model's entries (README "Response cache").
    const cacheMicrosPerMtok = intOr(b.cache_micros_per_mtok, 'cache_micros_per_mtok', 0, 0);
    const cacheTtl = b.cache_ttl_seconds ?? null;
    if (cacheTtl !== null && (typeof cacheTtl !== 'number' || !Number.isSafeInteger(cacheTtl) || cacheTtl < 1 || cacheTtl > 2_592_000)) {
      throw badRequest("'cache_ttl_seconds' must be an integer from 1 to 2592000, or null for the server's", 'cache_ttl_seconds', 'invalid_value');
    }
    await checkBaseUrls(deployments, deps.allowPrivateUpstreams ?? [], deps.lookup);
    let created: ModelWithDeployments | null;
    try {
      created = await createModel(deps.db, {
        id: modelId, ownedBy: optString(b.owned_by, 'owned_by') ?? 'sluice', contextLength, maxOutputTokens: maxOutput, deployments,
        kind, acceptsDimensions, cacheMicrosPerMtok, cacheTtlSeconds: cacheTtl,
      }, new Date());
    } catch (err) {
      if (err instanceof DuplicateDeploymentError) throw new HttpError('conflict_error', err.message, 'deployment_exists');
      throw err;
    }
    if (!created) throw new HttpError('conflict_error', `model ${modelId} already exists`, 'model_exists', 'id');
    await appendAudit(deps.db, {
      actor: `key:${auth.keyId}`, tenantId: null, action: 'model.created', target: `model:${modelId}`,
      data: { after: adminModelJson(created) }, idempotencyKey: null, at: new Date(),
    });
    res.status(201).json(adminModelJson(created));
  });

  return router;
}
