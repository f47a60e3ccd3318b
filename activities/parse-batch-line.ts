/**
 * A batch input line checked as OpenAI does: the envelope (JSON object, custom_id, method, url),
 * then the body as the endpoint's route checks it; pure.
 */
import type { BatchLineError } from '../db/tables/index.js';
import { validateChatBody, type ValidChatBody } from '../domain/chat-validation.js';
import { validateEmbeddingsBody, type ValidEmbeddingsBody } from '../domain/embeddings-validation.js';
import { isObject } from '../domain/is-object.js';
import { MAX_JSON_DEPTH, jsonDeeperThan } from '../domain/json-depth.js';
import { responsesAsChatBody } from '../domain/responses-validation.js';

export type ParsedLine =
  | { ok: true; customId: string; body: ValidChatBody; raw: unknown }
  | { ok: false; error: Omit<BatchLineError, 'line'>; customId: string | null };

/** A parsed line's `custom_id` if it is a non-empty string, else null. */
function customIdField(json: Record<string, unknown>): string | null {
  return typeof json.custom_id === 'string' && json.custom_id !== '' ? json.custom_id : null;
}

/** The `custom_id` of an input line (null when the line has none): all the output files need of a validated line. */
export function customIdOf(content: string): string | null {
  try {
    const json: unknown = JSON.parse(content);
    return isObject(json) ? customIdField(json) : null;
  } catch {
    return null;
  }
}

/** A line's envelope (JSON object, custom_id, method, url), checked as OpenAI does: its body, or the error. */
function lineEnvelope(content: string, endpoint: string): { ok: true; customId: string; body: unknown } | Extract<ParsedLine, { ok: false }> {
  let json: unknown;
  try {
    json = JSON.parse(content);
  } catch {
    return { ok: false, customId: null, error: { code: 'invalid_json_line', message: 'This line is not parseable as valid JSON.', param: null } };
  }
  if (!isObject(json)) return { ok: false, customId: null, error: { code: 'invalid_request', message: 'Each line must be a JSON object.', param: null } };
  if (jsonDeeperThan(json)) return { ok: false, customId: null, error: { code: 'nesting_too_deep', message: `This line nests objects or arrays deeper than ${MAX_JSON_DEPTH} levels.`, param: null } };
  const customId = customIdField(json);
  if (customId === null) return { ok: false, customId, error: { code: 'missing_required_parameter', message: "'custom_id' is required and must be a non-empty string.", param: 'custom_id' } };
  if (customId.length > 512) return { ok: false, customId, error: { code: 'invalid_value', message: "'custom_id' is longer than 512 characters.", param: 'custom_id' } };
  if (json.method !== 'POST') return { ok: false, customId, error: { code: 'invalid_method', message: "'method' must be 'POST'.", param: 'method' } };
  if (json.url !== endpoint) return { ok: false, customId, error: { code: 'invalid_url', message: `'url' must be '${endpoint}', the batch's endpoint.`, param: 'url' } };
  return { ok: true, customId, body: json.body };
}

/** A body's refusal as a line error (`param` under `body.`). */
export function bodyError(err: unknown, customId: string): Extract<ParsedLine, { ok: false }> {
  const e = err as { message?: string; code?: string | null; param?: string | null };
  return { ok: false, customId, error: { code: e.code ?? 'invalid_body', message: e.message ?? 'invalid body', param: e.param ? `body.${e.param}` : 'body' } };
}

/** Checks one input line's envelope and body, as OpenAI does; pure. */
export function parseBatchLine(content: string, endpoint: string): ParsedLine {
  const envelope = lineEnvelope(content, endpoint);
  if (!envelope.ok) return envelope;
  try {
    const body = endpoint === RESPONSES_ENDPOINT ? responsesAsChatBody(envelope.body) : validateChatBody(envelope.body);
    // As OpenAI's Batch API: a batch line is answered in the output file, never streamed.
    if (body.stream) return { ok: false, customId: envelope.customId, error: { code: 'unsupported_parameter', message: "'stream' is not supported in batch lines.", param: 'body.stream' } };
    return { ok: true, customId: envelope.customId, body, raw: envelope.body };
  } catch (err) {
    return bodyError(err, envelope.customId);
  }
}

/**
 * The batch endpoint whose lines are Responses requests: each line runs as a chat request (its
 * body translated by `responsesAsChatBody`), and its output body is the response object.
 */
export const RESPONSES_ENDPOINT = '/v1/responses';

/** The batch endpoint whose lines are embeddings requests. */
export const EMBEDDINGS_ENDPOINT = '/v1/embeddings';

export type ParsedEmbeddingsLine = { ok: true; customId: string; body: ValidEmbeddingsBody } | Extract<ParsedLine, { ok: false }>;

/** Checks one line of a `/v1/embeddings` batch: the same envelope, the body as `POST /v1/embeddings` checks it; pure. */
export function parseEmbeddingsBatchLine(content: string): ParsedEmbeddingsLine {
  const envelope = lineEnvelope(content, EMBEDDINGS_ENDPOINT);
  if (!envelope.ok) return envelope;
  try {
    return { ok: true, customId: envelope.customId, body: validateEmbeddingsBody(envelope.body) };
  } catch (err) {
    return bodyError(err, envelope.customId);
  }
}

/** A line's error for a refused field of its body (a pure rule's error): `param` under `body.`. */

export function isBlank(content: string): boolean {
  return content.trim() === '';
}
