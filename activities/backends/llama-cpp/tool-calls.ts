/**
 * Tools on the llama.cpp backend, around node-llama-cpp's function-calling support:
 * - the request's tools as node-llama-cpp `ChatModelFunctions` (the chat wrapper describes them to
 *   the model in its own words and call syntax; `parameters` through the grammar subset, so what is
 *   described is what a forced call follows);
 * - `auto`: the model writes text freely until the wrapper's call prefix appears (`||call:` for
 *   node-llama-cpp's general wrapper), anywhere in the text; from there a grammar forces one call
 *   in the wrapper's syntax (`prefix` name `paramsPrefix` JSON `suffix`, e.g.
 *   `||call: get_weather({"city":"Oslo"})`) to one of the tools (`autoCallGrammar`,
 *   call-grammar.ts). The text before the prefix is the answer's content; the call is read back
 *   with `readTemplateCall` and its arguments validated against the function's schema (ajv). A
 *   call cut by `max_tokens` (or one ajv refuses) is never returned: the answer is then the text
 *   before the prefix, with its finish reason (`length`);
 * - `required` and a named function: the call is forced by a JSON-schema grammar
 *   (`forcedCallGrammar`, domain/tools.ts) and read back with `readForcedCall`.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import { type ChatModelFunctions, type ChatWrapper, type GbnfJsonSchema, type LlamaGrammar } from 'node-llama-cpp';

import type { ToolChoice, ToolDefinition } from '../../../contracts/chat.js';
import { canonicalJson } from '../../../domain/canonical-json.js';
import { toGrammarSchema } from '../../../domain/response-format.js';
import { argumentsSchema, callableGrammarSchemas, callableTools } from '../../../domain/tools.js';
import { callGrammarText, textOf, type CallSyntax } from './call-grammar.js';

/** The tools as node-llama-cpp describes them to the model (name, description, parameters). */
export function toChatModelFunctions(tools: readonly ToolDefinition[]): ChatModelFunctions {
  return Object.fromEntries(tools.map((t, i) => [t.function.name, {
    ...(t.function.description !== undefined ? { description: t.function.description } : {}),
    params: toGrammarSchema(argumentsSchema(t), `tools[${i}].function.parameters`) as unknown as GbnfJsonSchema,
  }]));
}

/** Validators compiled by schema, most recently used last (compiling costs more than validating). */
const VALIDATOR_CACHE_SIZE = 64;

/** ajv validators of the functions' `parameters`, cached by canonical schema. */
export function createArgumentsValidator() {
  const ajv = new Ajv({ strict: false, allErrors: false });
  const cache = new Map<string, ValidateFunction>();
  return (schema: Record<string, unknown>, value: unknown): boolean => {
    const key = canonicalJson(schema);
    let validate = cache.get(key);
    if (validate === undefined) {
      try {
        validate = ajv.compile(schema);
      } catch {
        return false;
      }
      cache.set(key, validate);
      if (cache.size > VALIDATOR_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
    }
    return validate(value) === true;
  };
}

/**
 * The one call `text` makes in the wrapper's call syntax, when it is exactly that (leading
 * whitespace aside, anything after the call's suffix ignored: the model would go on to imagine the
 * result); null when it is text.
 */
export function readTemplateCall(
  text: string,
  wrapper: ChatWrapper,
  tools: readonly ToolDefinition[],
  choice: ToolChoice | undefined,
  valid: (schema: Record<string, unknown>, value: unknown) => boolean,
): { name: string; arguments: string } | null {
  const call = wrapper.settings.functions.call;
  const rest = text.trimStart();
  const prefixes = [textOf(call.prefix, ''), ...(call.prefixAlternateMatches ?? []).map((p) => textOf(p, ''))].map((p) => p.trim()).filter((p) => p !== '');
  const prefix = prefixes.find((p) => rest.startsWith(p));
  if (prefix === undefined) return null;
  const afterPrefix = rest.slice(prefix.length).trimStart();
  for (const tool of callableTools(tools, choice)) {
    const name = tool.function.name;
    const head = `${name}${textOf(call.paramsPrefix, name)}`;
    if (!afterPrefix.startsWith(head)) continue;
    const body = afterPrefix.slice(head.length);
    const suffix = textOf(call.suffix, name);
    // The arguments end at some occurrence of the suffix: the first at which they parse.
    for (let end = suffix === '' ? body.length : body.indexOf(suffix); end >= 0; end = suffix === '' ? -1 : body.indexOf(suffix, end + 1)) {
      let args: unknown;
      try {
        args = JSON.parse(body.slice(0, end));
      } catch {
        continue;
      }
      return valid(argumentsSchema(tool), args) ? { name, arguments: JSON.stringify(args) } : null;
    }
  }
  return null;
}

/**
 * The grammar of an `auto` call after the wrapper's call prefix (call-grammar.ts), made of the
 * callable functions' JSON-schema grammars (`jsonGrammar`) and built by `gbnfGrammar` (both
 * cached by the backend).
 */
export async function autoCallGrammar(
  syntax: CallSyntax,
  tools: readonly ToolDefinition[],
  choice: ToolChoice | undefined,
  jsonGrammar: (schema: Record<string, unknown>) => Promise<LlamaGrammar>,
  gbnfGrammar: (text: string) => Promise<LlamaGrammar>,
): Promise<LlamaGrammar> {
  const parts = await Promise.all(callableGrammarSchemas(tools, choice).map(async (t) => ({ name: t.name, argumentsGbnf: (await jsonGrammar(t.schema)).grammar })));
  return gbnfGrammar(callGrammarText(syntax, parts));
}
