/**
 * Request-body validation for `/v1/chat/completions`, pure: everything decided before a
 * workflow exists. Errors name the offending parameter, as OpenAI's do.
 */
import type { ChatMessageInput, ChatParams } from '../workflows/contracts.js';
import { badRequest } from './errors.js';

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool']);
/** OpenAI's own bound on `stop`. */
const MAX_STOP = 4;

export interface ValidChatBody {
  model: string;
  messages: ChatMessageInput[];
  params: ChatParams;
  user: string | null;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optionalNumber(body: Record<string, unknown>, name: string, min: number, max: number, integer = false): number | null {
  const v = body[name];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw badRequest(`'${name}' must be ${integer ? 'an integer' : 'a number'}`, name, 'invalid_type');
  }
  if (v < min || v > max) throw badRequest(`'${name}' must be between ${min} and ${max}, got ${v}`, name, 'invalid_value');
  return v;
}

/** Text of a message's content: a string, or an array of `{type: "text", text}` parts. */
function contentText(content: unknown, i: number): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part, j) => {
        if (isObject(part) && part.type === 'text' && typeof part.text === 'string') return part.text;
        throw badRequest(`messages[${i}].content[${j}]: only text parts are supported`, `messages[${i}].content`, 'invalid_type');
      })
      .join('');
  }
  throw badRequest(`messages[${i}].content must be a string or an array of text parts`, `messages[${i}].content`, 'invalid_type');
}

export function validateChatBody(raw: unknown): ValidChatBody {
  if (!isObject(raw)) throw badRequest('The request body must be a JSON object', null, 'invalid_type');
  if (typeof raw.model !== 'string' || raw.model.trim() === '') throw badRequest("'model' is required", 'model', 'missing_required_parameter');
  if (raw.model.length > 256) throw badRequest("'model' is too long", 'model', 'invalid_value');
  if (!Array.isArray(raw.messages)) throw badRequest("'messages' is required and must be an array", 'messages', 'missing_required_parameter');
  if (raw.messages.length === 0) throw badRequest("'messages' must contain at least one message", 'messages', 'invalid_value');
  const messages = raw.messages.map((m, i): ChatMessageInput => {
    if (!isObject(m)) throw badRequest(`messages[${i}] must be an object`, `messages[${i}]`, 'invalid_type');
    if (typeof m.role !== 'string' || !ROLES.has(m.role)) {
      throw badRequest(`messages[${i}].role must be one of system, developer, user, assistant, tool`, `messages[${i}].role`, 'invalid_value');
    }
    if (m.content === undefined || m.content === null) throw badRequest(`messages[${i}].content is required`, `messages[${i}].content`, 'missing_required_parameter');
    return { role: m.role as ChatMessageInput['role'], content: contentText(m.content, i) };
  });
  if (raw.stream === true) throw badRequest("'stream' is not supported yet: omit it or set it to false", 'stream', 'unsupported_parameter');
  if (raw.n !== undefined && raw.n !== null && raw.n !== 1) throw badRequest("only 'n': 1 is supported", 'n', 'unsupported_parameter');
  if (raw.tools !== undefined && raw.tools !== null) throw badRequest("'tools' is not supported", 'tools', 'unsupported_parameter');
  const maxTokensName = raw.max_completion_tokens !== undefined && raw.max_completion_tokens !== null ? 'max_completion_tokens' : 'max_tokens';
  const maxTokens = optionalNumber(raw, maxTokensName, 1, Number.MAX_SAFE_INTEGER, true);
  let stop: string[] | null = null;
  if (typeof raw.stop === 'string') stop = [raw.stop];
  else if (Array.isArray(raw.stop)) {
    if (raw.stop.length > MAX_STOP || !raw.stop.every((s) => typeof s === 'string' && s.length > 0)) {
      throw badRequest(`'stop' must be a string or up to ${MAX_STOP} non-empty strings`, 'stop', 'invalid_value');
    }
    stop = raw.stop as string[];
  } else if (raw.stop !== undefined && raw.stop !== null) throw badRequest("'stop' must be a string or an array of strings", 'stop', 'invalid_type');
  if (raw.user !== undefined && raw.user !== null && typeof raw.user !== 'string') throw badRequest("'user' must be a string", 'user', 'invalid_type');
  return {
    model: raw.model,
    messages,
    params: {
      maxTokens,
      temperature: optionalNumber(raw, 'temperature', 0, 2),
      topP: optionalNumber(raw, 'top_p', 0, 1),
      seed: optionalNumber(raw, 'seed', -(2 ** 31), 2 ** 31 - 1, true),
      stop,
    },
    user: typeof raw.user === 'string' && raw.user !== '' ? raw.user : null,
  };
}

/** Bytes of the prompt text: the basis of the token estimate. */
export function promptBytes(messages: readonly ChatMessageInput[]): number {
  return messages.reduce((n, m) => n + Buffer.byteLength(m.content) + Buffer.byteLength(m.role) + 4, 0);
}

/**
 * Prompt tokens assumed for the reservation before the tokenizer has counted: one per byte, an
 * upper bound for byte-fallback vocabularies, so a reservation never holds less than is spent.
 * Settlement replaces it with the tokenizer's count.
 */
export function estimatePromptTokens(messages: readonly ChatMessageInput[]): number {
  return promptBytes(messages);
}

/**
 * A lower bound of prompt tokens for any common tokenizer (no piece is longer than 16 bytes):
 * a prompt whose lower bound already exceeds the context is refused before a workflow starts.
 */
export function minPromptTokens(messages: readonly ChatMessageInput[]): number {
  return Math.ceil(promptBytes(messages) / 16);
}
