/**
 * The grammar `tool_choice: "auto"` switches to once the model starts a call (as node-llama-cpp's
 * own LlamaChat does with its FunctionCallNameGrammar and FunctionCallParamsGrammar, but as one
 * grammar): from the end of the wrapper's call prefix, one of the tools' names, the wrapper's params
 * prefix, arguments following that function's JSON schema, and the wrapper's suffix. What the
 * grammar accepts is a complete call that `readTemplateCall` reads back and ajv accepts.
 *
 * The arguments' rules are node-llama-cpp's own JSON-schema grammars (`createGrammarForJsonSchema`),
 * each renamed under its own prefix so several can share one file. Pure text functions.
 */
import { LlamaText, type ChatWrapper } from 'node-llama-cpp';

/** Where a call starts in the wrapper's syntax, and how it goes on. */
export interface CallSyntax {
  /**
   * Texts whose appearance in the generated text starts a call: the call prefix and its alternate
   * matches, without trailing whitespace (a tokenizer usually joins that whitespace to the next word).
   */
  triggers: string[];
  /** The wrapper's call prefix as text (`||call: ` for node-llama-cpp's general wrapper). */
  prefix: string;
  /** What the grammar starts with after a trigger: the prefix's trailing whitespace (optional when the wrapper says so). */
  lead: { text: string; optional: boolean };
  /** Text between a function's name and its arguments. */
  paramsPrefix: (name: string) => string;
  /** Text after a function's arguments. */
  suffix: (name: string) => string;
}

/** A wrapper setting (text or LlamaText) as text, `{{functionName}}` replaced by `name`. */
export const textOf = (value: unknown, name: string): string => LlamaText(value as Parameters<typeof LlamaText>[0]).toString().replaceAll('{{functionName}}', name);

/** The call syntax of `wrapper`; null when it has none (no prefix to watch for). */
export function callSyntaxOf(wrapper: ChatWrapper): CallSyntax | null {
  const call = wrapper.settings.functions.call;
  const prefix = textOf(call.prefix, '');
  const triggers = [...new Set([prefix, ...(call.prefixAlternateMatches ?? []).map((p) => textOf(p, ''))].map((p) => p.trim()).filter((p) => p !== ''))];
  if (triggers.length === 0) return null;
  const lead = prefix.slice(prefix.trimEnd().length);
  return {
    triggers,
    prefix,
    lead: { text: lead, optional: lead === '' || call.optionalPrefixSpace === true },
    paramsPrefix: (name) => textOf(call.paramsPrefix, name),
    suffix: (name) => textOf(call.suffix, name),
  };
}

/** `text` as a GBNF string literal. */
export function gbnfLiteral(text: string): string {
  return `"${[...text].map((ch) => {
    if (ch === '"' || ch === '\\') return `\\${ch}`;
    if (ch === '\n') return '\\n';
    if (ch === '\r') return '\\r';
    if (ch === '\t') return '\\t';
    const code = ch.codePointAt(0) ?? 0;
    return code < 0x20 || code === 0x7f ? `\\x${code.toString(16).padStart(2, '0')}` : ch;
  }).join('')}"`;
}

/**
 * Renames every rule of a GBNF file (names and references) to `<prefix><name>`, leaving string
 * literals, character classes and repetition counts as they are.
 */
export function renameGbnfRules(gbnf: string, prefix: string): string {
  let out = '';
  let i = 0;
  while (i < gbnf.length) {
    const ch = gbnf[i] as string;
    const close = ch === '"' ? '"' : ch === '[' ? ']' : ch === '{' ? '}' : null;
    if (close !== null) {
      // A literal, a class or a count, copied through its closing character (escapes skipped).
      let j = i + 1;
      while (j < gbnf.length && gbnf[j] !== close) j += gbnf[j] === '\\' ? 2 : 1;
      out += gbnf.slice(i, j + 1);
      i = j + 1;
      continue;
    }
    const name = /^[a-zA-Z0-9_-]+/.exec(gbnf.slice(i, i + 256));
    if (name !== null) {
      out += prefix + name[0];
      i += name[0].length;
      continue;
    }
    out += ch;
    i++;
  }
  return out;
}

/** How node-llama-cpp's JSON-schema grammars end their root: whitespace allowed after the value, up to a stop of four newlines. */
const JSON_GRAMMAR_END = ' "\\n\\n\\n\\n" [\\n]*';

/** One callable function: its name and the GBNF of its arguments (a node-llama-cpp JSON-schema grammar). */
export interface CallGrammarPart {
  name: string;
  argumentsGbnf: string;
}

/**
 * The GBNF of one call after a trigger: `lead`, then for one of `parts` its name, the params
 * prefix, its arguments, the suffix. Throws when an arguments grammar is not in the shape this
 * node-llama-cpp version writes (a root rule first, ending with its four-newline stop).
 */
export function callGrammarText(syntax: CallSyntax, parts: readonly CallGrammarPart[]): string {
  const rules: string[] = [];
  const branches = parts.map((part, i) => {
    const [rootLine = '', ...rest] = part.argumentsGbnf.split('\n');
    if (!rootLine.startsWith('root ::= ') || !rootLine.endsWith(JSON_GRAMMAR_END)) throw new Error(`unexpected JSON-schema grammar for ${part.name}`);
    const prefix = `t${i}-`;
    rules.push(renameGbnfRules(rootLine.slice(0, -JSON_GRAMMAR_END.length), prefix), ...rest.filter((l) => l.trim() !== '').map((l) => renameGbnfRules(l, prefix)));
    return [gbnfLiteral(part.name), gbnfLiteral(syntax.paramsPrefix(part.name)), `${prefix}root`, gbnfLiteral(syntax.suffix(part.name))].filter((s) => s !== '""').join(' ');
  });
  const lead = syntax.lead.text === '' ? '' : `${gbnfLiteral(syntax.lead.text)}${syntax.lead.optional ? '?' : ''} `;
  return [`root ::= ${lead}( ${branches.join(' | ')} )`, ...rules].join('\n');
}
