/** `response_format`: validation, and the JSON Schema subset llama.cpp's grammar enforces (refusals name the keyword's path). */
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../domain/invalid-request.js';
import { MAX_SCHEMA_BYTES, llamaCppGrammarFor, toGrammarSchema, validateResponseFormat } from '../../domain/response-format.js';
import { refusedOn } from '../../domain/chat-fields.js';
import { validateChatBody } from '../../domain/chat-validation.js';

const P = 'response_format.json_schema.schema';

function thrown(fn: () => unknown): InvalidRequestError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidRequestError);
    return err as InvalidRequestError;
  }
  throw new Error('expected a refusal');
}

const format = (schema: Record<string, unknown>) => ({ type: 'json_schema', json_schema: { name: 'answer', strict: true, schema } });

describe('validateResponseFormat', () => {
  it.each<[string, unknown, string]>([
    ['not an object', 'json', 'response_format'],
    ['an unknown type', { type: 'yaml' }, 'response_format.type'],
    ['json_object with extra fields', { type: 'json_object', schema: {} }, 'response_format'],
    ['json_schema without json_schema', { type: 'json_schema' }, 'response_format.json_schema'],
    ['a bad name', { type: 'json_schema', json_schema: { name: 'has space' } }, 'response_format.json_schema.name'],
    ['an unknown json_schema field', { type: 'json_schema', json_schema: { name: 'a', schemas: {} } }, 'response_format.json_schema.schemas'],
    ['a non-boolean strict', { type: 'json_schema', json_schema: { name: 'a', strict: 'yes' } }, 'response_format.json_schema.strict'],
    ['a non-object schema', { type: 'json_schema', json_schema: { name: 'a', schema: [] } }, P],
    ['a schema too large', format({ type: 'string', description: 'x'.repeat(MAX_SCHEMA_BYTES) }), P],
  ])('refuses %s, naming %s', (_name, value, param) => {
    expect(thrown(() => validateResponseFormat(value)).param).toBe(param);
    expect(thrown(() => validateChatBody({ model: 'm', messages: [{ role: 'user', content: 'x' }], response_format: value })).param).toBe(param);
  });

  it('carries json_object and json_schema as extras; text is the default and carries nothing', () => {
    const base = { model: 'm', messages: [{ role: 'user', content: 'x' }] };
    expect(validateChatBody({ ...base, response_format: { type: 'text' } }).params.extras).toBeUndefined();
    expect(validateChatBody({ ...base, response_format: { type: 'json_object' } }).params.extras).toEqual({ response_format: { type: 'json_object' } });
    const f = format({ type: 'object', properties: { a: { type: 'string' } } });
    expect(validateChatBody({ ...base, response_format: f }).params.extras).toEqual({ response_format: f });
  });
});

describe('the grammar subset (llama.cpp)', () => {
  it('keeps what the grammar enforces, drops annotations and turns anyOf into oneOf', () => {
    const schema = {
      $schema: 'https://json-schema.org/draft/2020-12/schema', title: 'T', type: 'object', description: 'd',
      properties: {
        s: { type: 'string', maxLength: 8, default: 'x' }, d: { type: 'string', format: 'date' }, e: { type: 'string', enum: ['a', 'b'] },
        c: { const: 3 }, u: { anyOf: [{ type: 'null' }, { $ref: '#/$defs/item' }] }, l: { type: 'array', items: { type: 'boolean' }, minItems: 1, maxItems: 2 },
        t: { type: ['string', 'null'] },
      },
      required: ['s', 'd'], additionalProperties: false,
      $defs: { item: { type: 'object', properties: { n: { type: 'integer' } } } },
    };
    expect(toGrammarSchema(schema)).toEqual({
      type: 'object', description: 'd',
      properties: {
        s: { type: 'string', maxLength: 8 }, d: { type: 'string', format: 'date' }, e: { enum: ['a', 'b'] }, c: { const: 3 },
        u: { oneOf: [{ type: 'null' }, { $ref: '#/$defs/item' }] }, l: { type: 'array', items: { type: 'boolean' }, minItems: 1, maxItems: 2 },
        t: { type: ['string', 'null'] },
      },
      additionalProperties: false,
      $defs: { item: { type: 'object', properties: { n: { type: 'integer' } } } },
    });
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['pattern', { type: 'object', properties: { a: { type: 'string', pattern: '^x' } } }, `${P}.properties.a.pattern`],
    ['minimum', { type: 'integer', minimum: 0 }, `${P}.minimum`],
    ['allOf', { allOf: [{ type: 'string' }] }, P],
    ['not', { type: 'string', not: { const: 'a' } }, `${P}.not`],
    ['an unconstrained property', { type: 'object', properties: { a: {} } }, `${P}.properties.a`],
    ['uniqueItems', { type: 'array', items: { type: 'string' }, uniqueItems: true }, `${P}.uniqueItems`],
    ['patternProperties', { type: 'object', patternProperties: { '^a': { type: 'string' } } }, `${P}.patternProperties`],
    ['an unknown format', { type: 'string', format: 'email' }, `${P}.format`],
    ['a $ref outside $defs', { $ref: '#/definitions/a' }, `${P}.$ref`],
    ['a $ref to a missing def', { $ref: '#/$defs/nope' }, `${P}.$ref`],
    ['nested $defs', { type: 'object', properties: { a: { type: 'string', $defs: {} } } }, `${P}.properties.a.$defs`],
    ['required naming an undeclared property', { type: 'object', properties: { a: { type: 'string' } }, required: ['b'] }, `${P}.required`],
    ['an object in a type list', { type: ['object', 'null'] }, `${P}.type`],
    ['an enum of objects', { enum: [{ a: 1 }] }, `${P}.enum`],
  ])('refuses %s, naming its path', (_name, schema, param) => {
    const err = thrown(() => toGrammarSchema(schema));
    expect(err.param).toBe(param);
    expect(err.code).toBe('unsupported_parameter');
    // The same refusal through the per-backend check, for llama.cpp only.
    const extras = { response_format: validateResponseFormat(format(schema)) };
    expect(refusedOn('llama-cpp', extras)?.param).toBe(param);
    expect(refusedOn('openai-compatible', extras)).toBeNull();
  });

  it('bounds the depth of a schema', () => {
    let schema: Record<string, unknown> = { type: 'string' };
    for (let i = 0; i < 40; i++) schema = { type: 'array', items: schema };
    expect(thrown(() => toGrammarSchema(schema)).code).toBe('invalid_value');
  });

  it('json_object (and json_schema without a schema) is the JSON grammar', () => {
    expect(llamaCppGrammarFor({ type: 'json_object' })).toEqual({ kind: 'json' });
    expect(llamaCppGrammarFor({ type: 'json_schema', json_schema: { name: 'a' } })).toEqual({ kind: 'json' });
  });
});
