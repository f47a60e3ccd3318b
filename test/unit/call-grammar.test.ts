/**
 * `tool_choice: "auto"` on llama.cpp, pure parts: the call syntax read from node-llama-cpp's general
 * wrapper, the GBNF of a call after its trigger (node-llama-cpp's JSON-schema grammars renamed and
 * joined), and the partial-prefix holdback of streamed text.
 */
import { describe, expect, it } from 'vitest';
import { GeneralChatWrapper } from 'node-llama-cpp';
import { callGrammarText, callSyntaxOf, gbnfLiteral, renameGbnfRules } from '../../activities/backends/llama-cpp/call-grammar.js';
import { createDeltaTracker } from '../../activities/backends/stream-deltas.js';

describe('the call syntax of a chat wrapper', () => {
  it("node-llama-cpp's general wrapper: `||call:` starts a call, then an optional space, name(arguments)", () => {
    const syntax = callSyntaxOf(new GeneralChatWrapper());
    expect(syntax).not.toBeNull();
    expect(syntax?.triggers).toEqual(['||call:']);
    expect(syntax?.lead).toEqual({ text: ' ', optional: true });
    expect(syntax?.paramsPrefix('f')).toBe('(');
    expect(syntax?.suffix('f')).toBe(')');
  });
});

describe('the GBNF of a call', () => {
  it('renames rule names and references, never inside literals, classes or counts', () => {
    const gbnf = 'root ::= "root x-rule" x-rule [a-z-]{0,4}\nx-rule ::= "\\"root\\"" | [\\]x] root';
    expect(renameGbnfRules(gbnf, 't0-')).toBe('t0-root ::= "root x-rule" t0-x-rule [a-z-]{0,4}\nt0-x-rule ::= "\\"root\\"" | [\\]x] t0-root');
  });

  it('writes text as a GBNF literal', () => {
    expect(gbnfLiteral('a"b\\c\n\u0001')).toBe('"a\\"b\\\\c\\n\\x01"');
  });

  it('joins the functions as alternatives: lead, name, params prefix, arguments without the four-newline stop, suffix', () => {
    const syntax = callSyntaxOf(new GeneralChatWrapper());
    if (syntax === null) throw new Error('no syntax');
    const args = (value: string) => `root ::= "{" ws ${value} "}" "\\n\\n\\n\\n" [\\n]*\nws ::= [ ]?`;
    const text = callGrammarText(syntax, [{ name: 'get_weather', argumentsGbnf: args('"1"') }, { name: 'lookup', argumentsGbnf: args('"2"') }]);
    expect(text.split('\n')).toEqual([
      'root ::= " "? ( "get_weather" "(" t0-root ")" | "lookup" "(" t1-root ")" )',
      't0-root ::= "{" t0-ws "1" "}"',
      't0-ws ::= [ ]?',
      't1-root ::= "{" t1-ws "2" "}"',
      't1-ws ::= [ ]?',
    ]);
    expect(() => callGrammarText(syntax, [{ name: 'x', argumentsGbnf: 'root ::= "{}"' }])).toThrow(/unexpected/);
  });
});

describe('streamed text before a call (partial-prefix holdback)', () => {
  const run = (texts: string[], content: string) => {
    const out: string[] = [];
    const tracker = createDeltaTracker(['\n\nUser:', '||call:'], (d) => out.push(d));
    for (const t of texts) tracker.update(t);
    tracker.finish(content);
    return out;
  };

  it('holds back what could still start the call prefix, and sends nothing from the prefix on', () => {
    const deltas = run(['Hi', 'Hi |', 'Hi ||ca', 'Hi ||call:', 'Hi ||call: get_weather({'], 'Hi ');
    expect(deltas).toEqual(['Hi', ' ']);
    expect(deltas.join('')).toBe('Hi ');
  });

  it('sends the held-back text once it can no longer be the prefix', () => {
    const deltas = run(['a |', 'a ||c', 'a ||cx', 'a ||cx b'], 'a ||cx b');
    expect(deltas).toEqual(['a ', '||cx', ' b']);
  });
});
