/**
 * The OpenAI response object of a `/v1/responses` request, from its echo (what the request asked
 * for) and the chat pipeline's completion: built by the `responseRequest` workflow (so the stored
 * and the returned object are the same) and, in progress, by the streaming route. Pure (safe in
 * the workflow sandbox).
 */
import type { ChatCompletion, ChatMessageInput } from '../contracts/chat.js';
import type { ResponseEcho, ResponseFunctionCall, ResponseObject, ResponseOutputItem, ResponseOutputMessage } from '../contracts/responses.js';

/** ID of the assistant message of a response. */
export function outputMessageId(responseId: string): string {
  return `msg_${responseId.replace(/^resp_/, '')}`;
}

/** The response as it stands before its output exists (`status: in_progress`, no usage). */
export function responseInProgress(id: string, createdAt: number, model: string, echo: ResponseEcho): ResponseObject {
  return {
    id,
    object: 'response',
    created_at: createdAt,
    status: 'in_progress',
    background: false,
    error: null,
    incomplete_details: null,
    instructions: echo.instructions,
    max_output_tokens: echo.maxOutputTokens,
    max_tool_calls: null,
    metadata: echo.metadata,
    model,
    output: [],
    output_text: '',
    parallel_tool_calls: echo.parallelToolCalls ?? (echo.tools !== undefined && echo.tools.length > 0),
    previous_response_id: echo.previousResponseId,
    reasoning: { effort: null, summary: null },
    service_tier: 'default',
    store: echo.store,
    temperature: echo.temperature,
    text: { format: echo.format, verbosity: echo.verbosity ?? 'medium' },
    tool_choice: echo.toolChoice ?? (echo.tools !== undefined && echo.tools.length > 0 ? 'auto' : 'none'),
    tools: echo.tools ?? [],
    top_logprobs: 0,
    top_p: echo.topP,
    truncation: 'disabled',
    usage: null,
    user: echo.user,
  };
}

/** The in-progress response a stream opens with, rebuilt from the finished one (`model`: the one the request named, as the live stream shows). */
export function responseShellOf(response: ResponseObject, model: string): ResponseObject {
  return { ...response, model, status: 'in_progress', incomplete_details: null, output: [], output_text: '', usage: null, error: null };
}

/** The assistant message of a finished generation. */
export function outputMessage(id: string, text: string, status: ResponseOutputMessage['status']): ResponseOutputMessage {
  return { id: outputMessageId(id), type: 'message', role: 'assistant', status, content: [{ type: 'output_text', text, annotations: [], logprobs: [] }] };
}

/** ID of the `index`-th function call item of a response. */
export function functionCallItemId(responseId: string, index: number): string {
  return `fc_${responseId.replace(/^resp_/, '')}_${index}`;
}

/**
 * The finished response: `completed`, or `incomplete` (`max_output_tokens`) when the generation
 * stopped at its token limit; `usage` is the completion's, which is the ledger row's. `output` is
 * the assistant message (when it has text, or there is no call), then one `function_call` item per
 * tool call, its `call_id` the call's ID (what a `function_call_output` answers).
 */
export function responseOf(id: string, echo: ResponseEcho, completion: ChatCompletion): ResponseObject {
  const choice = completion.choices[0];
  const text = choice?.message.content ?? '';
  const incomplete = choice?.finish_reason === 'length';
  const status = incomplete ? 'incomplete' : 'completed';
  const calls = (choice?.message.tool_calls ?? []).map((c, i): ResponseFunctionCall => ({
    id: functionCallItemId(id, i), type: 'function_call', call_id: c.id, name: c.function.name, arguments: c.function.arguments, status,
  }));
  const output: ResponseOutputItem[] = text !== '' || calls.length === 0 ? [outputMessage(id, text, status), ...calls] : calls;
  return {
    ...responseInProgress(id, completion.created, completion.model, echo),
    status,
    incomplete_details: incomplete ? { reason: 'max_output_tokens' } : null,
    output,
    output_text: text,
    usage: {
      input_tokens: completion.usage.prompt_tokens,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: completion.usage.completion_tokens,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: completion.usage.total_tokens,
    },
  };
}

/** The assistant turn a response adds to its conversation (what `previous_response_id` continues): its text and its calls. */
export function assistantTurnOf(response: ResponseObject): ChatMessageInput {
  const calls = response.output.flatMap((item) => (item.type === 'function_call' ? [{ id: item.call_id, type: 'function' as const, function: { name: item.name, arguments: item.arguments } }] : []));
  return { role: 'assistant', content: response.output_text, ...(calls.length > 0 ? { tool_calls: calls } : {}) };
}
