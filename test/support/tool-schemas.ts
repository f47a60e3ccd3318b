import { addModel, type TestStack } from './stack.js';
import { CALLS_GGUF } from './calls-gguf.js';

/**
 * The function schemas the tool tests give the demo model (chat tools and Responses function
 * tools alike). Bounded strings, enums and booleans: the random model cannot run an argument past
 * the output token limit.
 */
export const weatherSchema = {
  type: 'object',
  properties: { city: { type: 'string', maxLength: 10 }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
  required: ['city', 'unit'],
  additionalProperties: false,
};

export const lookupSchema = {
  type: 'object',
  properties: { query: { type: 'string', maxLength: 8 }, exact: { type: 'boolean' } },
  required: ['query', 'exact'],
  additionalProperties: false,
};

/** Each test function's schema, by name. */
export const schemaOf: Record<string, object> = { get_weather: weatherSchema, lookup: lookupSchema };

/**
 * The tool tests' models: `local` on the llama.cpp demo model, `local-calls` on the demo model with
 * the general wrapper's call prefix as one token (test/support/calls-gguf.ts) and `remote` on an
 * OpenAI-compatible upstream at `upstreamUrl` (the fake).
 */
export async function addToolTestModels(stack: TestStack, upstreamUrl: string): Promise<void> {
  await addModel(stack, { id: 'local', context_length: 1024, max_output_tokens: 128, deployments: [{ id: 'local-llama', provider: 'llama-cpp', pool: 'local', gguf_path: 'sluice-tiny.gguf' }] });
  await addModel(stack, { id: 'local-calls', context_length: 1024, max_output_tokens: 128, deployments: [{ id: 'local-calls-llama', provider: 'llama-cpp', pool: 'local', gguf_path: CALLS_GGUF }] });
  await addModel(stack, { id: 'remote', context_length: 4096, max_output_tokens: 64, deployments: [{ id: 'remote-up', provider: 'openai-compatible', pool: 'local', base_url: upstreamUrl, upstream_model: 'gpt-fake' }] });
}
