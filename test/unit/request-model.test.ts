/**
 * `model` on every inference endpoint (`domain/request-model.ts`): a value that is there but not
 * a string is `invalid_type` "must be a string", not "'model' is required"; absent or blank is
 * `missing_required_parameter`; each names `model`.
 */
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../domain/invalid-request.js';
import { validateChatBody } from '../../domain/chat-validation.js';
import { validateCompletionBody } from '../../domain/completion-validation.js';
import { validateEmbeddingsBody } from '../../domain/embeddings-validation.js';
import { validateResponsesBody } from '../../domain/responses-validation.js';

/** Each endpoint's validator and a body it accepts but for `model`. */
const endpoints: Array<[string, (raw: unknown) => { model: string }, Record<string, unknown>]> = [
  ['/v1/chat/completions', validateChatBody, { messages: [{ role: 'user', content: 'hi' }] }],
  ['/v1/completions', validateCompletionBody, { prompt: 'hi' }],
  ['/v1/embeddings', validateEmbeddingsBody, { input: 'hi' }],
  ['/v1/responses', validateResponsesBody, { input: 'hi' }],
];

function refusal(validate: (raw: unknown) => unknown, body: unknown): { message: string; param: string | null; code: string } {
  try {
    validate(body);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidRequestError);
    const e = err as InvalidRequestError;
    return { message: e.message, param: e.param, code: e.code };
  }
  throw new Error(`accepted: ${JSON.stringify(body)}`);
}

describe.each(endpoints)('model on %s', (_name, validate, rest) => {
  it.each<[string, unknown]>([
    ['an array', ['x']],
    ['a number', 42],
    ['an object', { id: 'x' }],
    ['a boolean', true],
  ])('%s is invalid_type "must be a string"', (_what, model) => {
    expect(refusal(validate, { ...rest, model })).toEqual({ message: "'model' must be a string", param: 'model', code: 'invalid_type' });
  });

  it.each<[string, Record<string, unknown>]>([
    ['absent', {}],
    ['null', { model: null }],
    ['blank', { model: '   ' }],
  ])('%s is missing_required_parameter', (_what, model) => {
    expect(refusal(validate, { ...rest, ...model })).toEqual({ message: "'model' is required", param: 'model', code: 'missing_required_parameter' });
  });

  it('over 256 characters is invalid_value; 256 is accepted as given', () => {
    expect(refusal(validate, { ...rest, model: 'm'.repeat(257) })).toEqual({ message: "'model' is too long", param: 'model', code: 'invalid_value' });
    expect(validate({ ...rest, model: 'm'.repeat(256) }).model).toBe('m'.repeat(256));
  });
});
