/** Every workflow, for the worker's `workflowsPath`. */
export { chatRequest, statusQuery } from './chat-request.js';
export { completionRequest } from './completion-request.js';
export { reconcileReservations } from './reconcile.js';
export { batch, cancelBatchSignal, batchProgressQuery } from './batch.js';
export { billing, billingRun, billingStateQuery, dayClose } from './billing.js';
export { webhookDelivery } from './webhook-delivery.js';
export { embeddingsRequest } from './embeddings-request.js';
export { responseRequest } from './response-request.js';
