/** The authorize step: is this key, of this tenant, still allowed to call this model now? */
import type { Db } from '../db/database.js';
import { authorizationFacts } from '../db/repositories/keys.js';
import { allows, allowsModel } from '../domain/policy.js';
import { requestFailure } from './failures.js';
import type { ModelKind } from '../db/tables/index.js';
import { wrongModelKind } from '../domain/embeddings-validation.js';

export interface AuthorizeInput {
  requestId: string;
  tenantId: string;
  keyId: string;
  model: string;
  /**
   * What the request asks the model for: a model serves only its own kind (migration
   * 2026-12-01-0201-embeddings). @default 'chat' (chat requests and their recorded histories)
   */
  endpoint?: ModelKind;
}

export interface AuthorizedModel {
  model: string;
  contextLength: number;
  maxOutputTokens: number;
  /** Whether an embeddings request may ask this model for fewer `dimensions`. */
  acceptsDimensions?: boolean;
}

/** The lookup the authorize step makes; one request's admission passes its prefetched one (`admit-steps.ts`). */
export interface AuthRepo {
  authorizationFacts: typeof authorizationFacts;
}

export function createAuthActivities(deps: { db: Db; now: () => Date; repo?: AuthRepo }) {
  const repo = deps.repo ?? { authorizationFacts };
  return {
    /**
     * Checked in the workflow, not only at the API: a queued or batched request whose key was
     * revoked, expired or lost its tenant before it ran is refused here, before anything is reserved.
     */
    async authorize(input: AuthorizeInput): Promise<AuthorizedModel> {
      const facts = await repo.authorizationFacts(deps.db, input.keyId, input.model);
      const key = facts?.key;
      if (!key || key.tenant_id !== input.tenantId) throw requestFailure('Unauthorized', 'API key not found', { code: 'invalid_api_key' });
      if (key.revoked_at !== null) throw requestFailure('Unauthorized', 'API key has been revoked', { code: 'invalid_api_key' });
      if (key.expires_at !== null && key.expires_at <= deps.now()) throw requestFailure('Unauthorized', 'API key has expired', { code: 'invalid_api_key' });
      if (!allows(key.role, key.scopes, 'chat')) throw requestFailure('PermissionDenied', `role ${key.role} may not run inference`, { code: 'permission_denied' });
      if (!allowsModel(key.scopes, input.model)) throw requestFailure('PermissionDenied', `this key may not use model ${input.model}`, { code: 'model_not_allowed', param: 'model' });
      const tenant = facts?.tenant;
      if (!tenant || tenant.status !== 'active') throw requestFailure('PermissionDenied', 'tenant is suspended', { code: 'tenant_suspended' });
      if (tenant.allowed_models !== null && !tenant.allowed_models.includes(input.model)) {
        throw requestFailure('PermissionDenied', `tenant may not use model ${input.model}`, { code: 'model_not_allowed', param: 'model' });
      }
      const model = facts?.model;
      if (!model) throw requestFailure('NotFound', `The model ${input.model} does not exist`, { code: 'model_not_found', param: 'model' });
      const endpoint = input.endpoint ?? 'chat';
      if (model.kind !== endpoint) throw requestFailure('BadRequest', wrongModelKind(model.id, model.kind), { code: 'model_not_supported', param: 'model' });
      return { model: model.id, contextLength: model.context_length, maxOutputTokens: model.max_output_tokens, acceptsDimensions: model.accepts_dimensions };
    },
  };
}
