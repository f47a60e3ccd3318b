/** The `storeResponse` step of `responseRequest`: keeps a `store: true` response for its tenant. */
import type { Db } from '../db/database.js';
import { insertStoredResponse } from '../db/repositories/responses.js';
import type { StoreResponseInput } from '../contracts/responses.js';

export function createResponseActivities(deps: { db: Db }) {
  return {
    /**
     * Stores the response, its input items and its conversation. Idempotent (keyed by the
     * response's ID); nothing is written for a tenant erased meanwhile (`insertStoredResponse`).
     */
    async storeResponse(input: StoreResponseInput): Promise<{ stored: boolean }> {
      const stored = await insertStoredResponse(deps.db, {
        id: input.response.id, tenantId: input.tenantId, model: input.response.model,
        previousResponseId: input.response.previous_response_id, response: input.response,
        inputItems: input.inputItems, conversation: input.conversation,
      });
      return { stored };
    },
  };
}

export type ResponseActivities = ReturnType<typeof createResponseActivities>;
