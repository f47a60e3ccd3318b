/** Every workflow, for the worker's `workflowsPath`. */
export { chatRequest, statusQuery } from './chat-request.js';
