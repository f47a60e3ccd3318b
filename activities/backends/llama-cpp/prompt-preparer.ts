/**
 * Chat formatting for the llama.cpp backend: turns chat messages into prompt tokens and the stops
 * the template implies.
 *
 * - If the GGUF carries a chat template (`tokenizer.chat_template`), node-llama-cpp's
 *   `resolveChatWrapper(model)` picks the matching wrapper (a specialised one or the Jinja
 *   template itself) and renders the conversation, with special tokens, plus the wrapper's stop
 *   triggers;
 * - otherwise the plain template of {@link formatPlainChatPrompt} is used, tokenized without
 *   special tokens (so message text can never forge a control token), after a BOS token when the
 *   model asks for one, with `"\n\nUser:"` as an extra stop string.
 *
 * A request with tools (or a conversation with tool calls) always goes through a chat wrapper, so
 * node-llama-cpp's function-calling support renders it: the model's own wrapper, else
 * node-llama-cpp's `GeneralChatWrapper` (the plain template has no call syntax). The functions are
 * described in the wrapper's system text, an assistant's calls and the tool messages answering
 * them as the wrapper's function calls and results.
 */
import {
  GeneralChatWrapper,
  resolveChatWrapper,
  SpecialToken,
  SpecialTokensText,
  type ChatHistoryItem,
  type ChatModelFunctionCall,
  type ChatModelFunctions,
  type ChatModelResponse,
  type ChatWrapper,
  type LlamaModel,
  type LlamaText,
  type Token,
} from 'node-llama-cpp';

import type { ChatMessage } from '../types.js';

/** A rendered prompt: its tokens and the extra ways generation ends besides EOG tokens. */
export interface PreparedPrompt {
  tokens: Token[];
  /** Stop strings implied by the chat template (request stops are added to these). */
  templateStops: string[];
  /** Non-EOG single tokens that end the answer (from a chat wrapper's stop triggers). */
  stopTokens: ReadonlySet<Token>;
  /** The chat wrapper that rendered it (its call syntax is how `auto` calls are read); null: the plain template. */
  wrapper: ChatWrapper | null;
}

/**
 * Turns chat messages into a prompt for the loaded model; `functions`: the request's tools, as
 * node-llama-cpp describes them. @default no functions
 */
export type PromptPreparer = (messages: readonly ChatMessage[], functions?: ChatModelFunctions) => PreparedPrompt;

/** Role labels of the plain template. */
const PLAIN_ROLE_LABELS: Record<ChatMessage['role'], string> = {
  system: 'System',
  developer: 'Developer',
  user: 'User',
  assistant: 'Assistant',
  tool: 'Tool',
};

/** Stop strings that the plain template adds to every request. */
export const PLAIN_TEMPLATE_STOPS: readonly string[] = ['\n\nUser:'];

/**
 * Renders messages with the plain template used for models without a chat template: each message
 * as `Label: content`, separated by blank lines, ending with an open `Assistant:` turn. Labels are
 * System, Developer, User, Assistant and Tool.
 *
 * @example
 * formatPlainChatPrompt([{ role: 'user', content: 'Hi' }]) // 'User: Hi\n\nAssistant:'
 */
export function formatPlainChatPrompt(messages: readonly ChatMessage[]): string {
  const turns = messages.map((message) => `${PLAIN_ROLE_LABELS[message.role]}: ${message.content}`);
  return [...turns, `${PLAIN_ROLE_LABELS.assistant}:`].join('\n\n');
}

/** Tokenizes `text` as a raw prompt: BOS when the model wants one, no special-token parsing. */
export function tokenizeRawPrompt(model: LlamaModel, text: string): Token[] {
  const bos = model.tokens.bos;
  const tokens = model.tokenize(text, false);
  return model.tokens.shouldPrependBosToken && bos !== null ? [bos, ...tokens] : tokens;
}

/** A call's arguments as node-llama-cpp's `params`: the parsed JSON, else the text as the client sent it. */
function paramsOf(args: string): unknown {
  try {
    return JSON.parse(args);
  } catch {
    return args;
  }
}

/**
 * Maps our messages onto node-llama-cpp's chat history, ending with an open model turn. An
 * assistant's calls become `functionCall` items carrying the content of the tool messages that
 * answer them (those messages are consumed); after such a turn the model's turn goes on (as
 * node-llama-cpp's own function calling continues a response after a result).
 */
function toChatHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  const answers = new Map<string, string>();
  for (const m of messages) if (m.role === 'tool' && m.tool_call_id !== undefined) answers.set(m.tool_call_id, m.content);
  const callIds = new Set(messages.flatMap((m) => (m.tool_calls ?? []).map((c) => c.id)));
  const answered = (m: ChatMessage) => m.role === 'tool' && m.tool_call_id !== undefined && callIds.has(m.tool_call_id);
  const history: ChatHistoryItem[] = messages.filter((m) => !answered(m)).map((message): ChatHistoryItem => {
    switch (message.role) {
      case 'system':
      case 'developer':
        return { type: 'system', text: message.content };
      case 'user':
        return { type: 'user', text: message.content };
      case 'tool':
        return { type: 'user', text: `Tool result:\n${message.content}` };
      case 'assistant': {
        const calls = (message.tool_calls ?? []).map((c): ChatModelFunctionCall => ({
          type: 'functionCall', name: c.function.name, params: paramsOf(c.function.arguments), result: answers.get(c.id),
        }));
        const response: ChatModelResponse['response'] = [...(message.content !== '' || calls.length === 0 ? [message.content] : []), ...calls];
        return { type: 'model', response };
      }
    }
  });
  const last = history.at(-1);
  if (last?.type === 'model' && last.response.at(-1) !== undefined && typeof last.response.at(-1) === 'object') return history;
  history.push({ type: 'model', response: [] });
  return history;
}

/** A stop trigger's values as text pieces and special tokens (as node-llama-cpp's stop detector sees them). */
function resolveTrigger(model: LlamaModel, trigger: LlamaText): (string | Token)[] {
  return trigger.values.flatMap((value): (string | Token)[] => {
    if (typeof value === 'string') return value === '' ? [] : [value];
    if (value instanceof SpecialToken) return value.tokenize(model.tokenizer);
    if (value instanceof SpecialTokensText) return value.tokenizeSpecialTokensOnly(model.tokenizer);
    return [];
  });
}

/**
 * Splits a chat wrapper's stop triggers into plain stop strings and single stop tokens. Triggers
 * mixing text and tokens are left out: in practice they end with an EOG token, which stops
 * generation anyway.
 */
function splitStopTriggers(model: LlamaModel, triggers: readonly LlamaText[]) {
  const strings: string[] = [];
  const tokens = new Set<Token>();
  for (const trigger of triggers) {
    const parts = resolveTrigger(model, trigger);
    const [first] = parts;
    if (parts.length === 1 && typeof first === 'number') tokens.add(first);
    else if (parts.length > 0 && parts.every((part) => typeof part === 'string')) strings.push(parts.join(''));
  }
  return { strings, tokens };
}

/** A preparer that renders through a node-llama-cpp chat wrapper. */
function createWrapperPreparer(model: LlamaModel, wrapper: ChatWrapper): PromptPreparer {
  return (messages, functions) => {
    const state = wrapper.generateContextState({
      chatHistory: toChatHistory(messages),
      ...(functions !== undefined ? { availableFunctions: functions, documentFunctionParams: true } : {}),
    });
    const stops = splitStopTriggers(model, state.stopGenerationTriggers);
    return {
      tokens: state.contextText.tokenize(model.tokenizer),
      templateStops: stops.strings,
      stopTokens: stops.tokens,
      wrapper,
    };
  };
}

/** Whether a conversation carries tool calls or answers (rendered through a chat wrapper). */
const hasToolTurns = (messages: readonly ChatMessage[]) => messages.some((m) => m.tool_calls !== undefined || m.tool_call_id !== undefined);

/**
 * Chooses the chat formatting for the model: its own template if it has one, else the plain one
 * (and node-llama-cpp's general chat wrapper for requests with tools or tool turns).
 */
export function createPromptPreparer(model: LlamaModel): PromptPreparer {
  if (model.fileInfo.metadata.tokenizer.chat_template !== undefined) {
    return createWrapperPreparer(model, resolveChatWrapper(model));
  }
  const general = createWrapperPreparer(model, new GeneralChatWrapper());
  return (messages, functions) => {
    if (functions !== undefined || hasToolTurns(messages)) return general(messages, functions);
    return {
      tokens: tokenizeRawPrompt(model, formatPlainChatPrompt(messages)),
      templateStops: [...PLAIN_TEMPLATE_STOPS],
      stopTokens: new Set(),
      wrapper: null,
    };
  };
}
