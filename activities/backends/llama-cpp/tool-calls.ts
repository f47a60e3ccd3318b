/**
 * Tools on the llama.cpp backend, around node-llama-cpp's function-calling support:
 * - the request's tools as node-llama-cpp `ChatModelFunctions` (the chat wrapper describes them to
 *   the model in its own words and call syntax; `parameters` through the grammar subset, so what is
 *   described is what a forced call follows);
 * - `auto`: a call is read from the generated text when it is one call in the wrapper's syntax
 *   (`prefix` name `paramsPrefix` JSON `suffix`, e.g. `||call: get_weather({"city":"Oslo"})` for
 *   node-llama-cpp's general wrapper) to one of the tools, whose arguments validate against the
 *   function's schema (ajv); any other text is the answer's text;
 * - `required` and a named function: the call is forced by a JSON-schema grammar
 *   (`forcedCallGrammar`, domain/tools.ts) and read back with `readForcedCall`.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import { LlamaText, type ChatModelFunctions, type ChatWrapper, type GbnfJsonSchema } from 'node-llama-cpp';

import type { ToolChoice, ToolDefinition } from '../../../contracts/chat.js';
import { canonicalJson } from '../../../domain/canonical-json.js';
import { toGrammarSchema } from '../../../domain/response-format.js';
import { argumentsSchema, callableTools } from '../../../domain/tools.js';

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

const textOf = (value: string | LlamaText, name: string): string => LlamaText(value).toString().replaceAll('{{functionName}}', name);

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
  const prefixes = [textOf(call.prefix, ''), ...(call.prefixAlternateMatches ?? []).map((p) => textOf(p, ''))].map((p) => p.trimStart()).filter((p) => p !== '');
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
