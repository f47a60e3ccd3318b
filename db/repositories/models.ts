/** Models, their deployments (where and how they run) and effective-dated prices. */
import type { Db } from '../database.js';
import type { Deployment, Model, ModelKind, Price, Provider } from '../tables/index.js';
import type { TokenPrice } from '../../domain/cost.js';

export interface DeploymentInput {
  id: string;
  pool: string;
  provider: Provider;
  ggufPath: string | null;
  baseUrl: string | null;
  apiKeyRef: string | null;
  upstreamModel: string | null;
  weight: number;
  priority: number;
  inputMicrosPerMtok: number;
  outputMicrosPerMtok: number;
}

export interface ModelInput {
  id: string;
  ownedBy: string;
  contextLength: number;
  maxOutputTokens: number;
  deployments: DeploymentInput[];
  /** What the model serves. @default 'chat' */
  kind?: ModelKind;
  /** An embeddings model that may return fewer `dimensions`. @default false */
  acceptsDimensions?: boolean;
  /** Price of a response-cache hit, micro-USD per million tokens. @default 0 */
  cacheMicrosPerMtok?: number;
  /** Life of the model's cache entries, seconds; null = the server default. @default null */
  cacheTtlSeconds?: number | null;
}

export type ModelWithDeployments = Model & { deployments: Array<Deployment & { price: Price | null }> };

/**
 * Creates a model with its deployments and their first prices in one transaction.
 * Returns null when the model (or a deployment ID) already exists.
 */
export async function createModel(db: Db, input: ModelInput, at: Date): Promise<ModelWithDeployments | null> {
  return db.transaction().execute(async (trx) => {
    const model = await trx
      .insertInto('models')
      .values({
        id: input.id,
        owned_by: input.ownedBy,
        context_length: input.contextLength,
        max_output_tokens: input.maxOutputTokens,
        kind: input.kind ?? 'chat',
        accepts_dimensions: input.acceptsDimensions ?? false,
        cache_micros_per_mtok: input.cacheMicrosPerMtok ?? 0,
        cache_ttl_seconds: input.cacheTtlSeconds ?? null,
      })
      .onConflict((oc) => oc.column('id').doNothing())
      .returningAll()
      .executeTakeFirst();
    if (!model) return null;
    const deployments: ModelWithDeployments['deployments'] = [];
    for (const d of input.deployments) {
      const dep = await trx
        .insertInto('deployments')
        .values({
          id: d.id,
          model_id: input.id,
          pool: d.pool,
          provider: d.provider,
          gguf_path: d.ggufPath,
          base_url: d.baseUrl,
          api_key_ref: d.apiKeyRef,
          upstream_model: d.upstreamModel,
          weight: d.weight,
          priority: d.priority,
        })
        .onConflict((oc) => oc.column('id').doNothing())
        .returningAll()
        .executeTakeFirst();
      if (!dep) throw new DuplicateDeploymentError(d.id);
      const price = await trx
        .insertInto('prices')
        .values({
          deployment_id: d.id,
          input_micros_per_mtok: d.inputMicrosPerMtok,
          output_micros_per_mtok: d.outputMicrosPerMtok,
          effective_from: at,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      deployments.push({ ...dep, price });
    }
    return { ...model, deployments };
  });
}

export class DuplicateDeploymentError extends Error {
  override readonly name = 'DuplicateDeploymentError';
  constructor(readonly deploymentId: string) {
    super(`deployment ${deploymentId} already exists`);
  }
}

export async function getModel(db: Db, id: string): Promise<Model | null> {
  return (await db.selectFrom('models').selectAll().where('id', '=', id).executeTakeFirst()) ?? null;
}

export async function listModels(db: Db): Promise<Model[]> {
  return db.selectFrom('models').selectAll().orderBy('id').execute();
}

/** Active deployments of a model in fallback order (priority, then ID). */
export async function activeDeployments(db: Db, modelId: string): Promise<Deployment[]> {
  return activeDeploymentsQuery(db, modelId).execute();
}

/** The model's active deployments (select what you need). */
export function activeDeploymentsOf(db: Db, modelId: string) {
  return db.selectFrom('deployments').where('model_id', '=', modelId).where('status', '=', 'active');
}

/** The query of {@link activeDeployments}: every column, in fallback order (priority, then ID). */
export function activeDeploymentsQuery(db: Db, modelId: string) {
  return activeDeploymentsOf(db, modelId).selectAll().orderBy('priority').orderBy('id');
}

/** Every model with its deployments and the price in force at `at`. */
export async function listModelsWithDeployments(db: Db, at: Date): Promise<ModelWithDeployments[]> {
  const [models, deployments] = await Promise.all([
    listModels(db),
    db.selectFrom('deployments').selectAll().orderBy('priority').orderBy('id').execute(),
  ]);
  const prices = await pricesAt(db, deployments.map((d) => d.id), at);
  return models.map((m) => ({
    ...m,
    deployments: deployments.filter((d) => d.model_id === m.id).map((d) => ({ ...d, price: prices.get(d.id) ?? null })),
  }));
}

/** Each deployment's price row in force at `at` (latest `effective_from` ≤ at); callers narrow it. */
function pricesInForce(db: Db, at: Date) {
  return db
    .selectFrom('prices')
    .distinctOn('prices.deployment_id')
    .where('prices.effective_from', '<=', at)
    .orderBy('prices.deployment_id')
    .orderBy('prices.effective_from', 'desc');
}

/** The price row in force for each deployment at `at`. */
export async function pricesAt(db: Db, deploymentIds: string[], at: Date): Promise<Map<string, Price>> {
  if (deploymentIds.length === 0) return new Map();
  const rows = await pricesInForce(db, at).selectAll('prices').where('prices.deployment_id', 'in', deploymentIds).execute();
  return new Map(rows.map((r) => [r.deployment_id, r]));
}

/** The highest price among a model's active deployments at `at` (0 when none): what a reservation assumes. One query. */
export async function maxPriceForModel(db: Db, modelId: string, at: Date): Promise<TokenPrice> {
  return toTokenPrice(await maxPriceQuery(db, modelId, at).executeTakeFirstOrThrow());
}

/** The query of {@link maxPriceForModel}: one row, `input` and `output`. */
export function maxPriceQuery(db: Db, modelId: string, at: Date) {
  const inForce = pricesInForce(db, at)
    .innerJoin('deployments', 'deployments.id', 'prices.deployment_id')
    .select(['prices.input_micros_per_mtok', 'prices.output_micros_per_mtok'])
    .where('deployments.model_id', '=', modelId)
    .where('deployments.status', '=', 'active')
    .as('p');
  return db
    .selectFrom(inForce)
    .select((eb) => [
      eb.fn.coalesce(eb.fn.max('p.input_micros_per_mtok'), eb.lit(0)).as('input'),
      eb.fn.coalesce(eb.fn.max('p.output_micros_per_mtok'), eb.lit(0)).as('output'),
    ]);
}

/** A row of {@link maxPriceQuery} as a price. */
export function toTokenPrice(row: { input: unknown; output: unknown }): TokenPrice {
  return { inputMicrosPerMtok: Number(row.input), outputMicrosPerMtok: Number(row.output) };
}
