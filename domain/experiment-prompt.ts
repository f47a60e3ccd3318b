/**
 * A variant's prompt override, validated at creation and applied to the messages inference
 * receives. Two forms, at most one per variant:
 * - `system_prompt`: a system message put first; the caller's own messages follow unchanged.
 * - `system_template`: replaces the caller's system messages by one, the template with
 *   `{{system}}` standing for the caller's system text (their system and developer messages
 *   joined by a blank line; empty when there are none). No other placeholder exists: any other
 *   `{{…}}` is refused at creation, so nothing is left unexpanded at run time.
 * A legacy completion (`/v1/completions`, one raw prompt) gets the resulting system text
 * followed by a blank line before its prompt: the same instruction, in the only form a raw
 * prompt has.
 */
import { InvalidRequestError } from './invalid-request.js';

/** The longest prompt override, in characters. */
export const MAX_PROMPT_OVERRIDE = 32_768;

/** The placeholders a `system_template` may use. */
export const TEMPLATE_PLACEHOLDERS = ['system'] as const;

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;

/** Checks a prompt override's text; `param` names it (e.g. `variants[0].overrides.system_template`). */
export function checkPromptOverride(value: unknown, param: string, kind: 'system_prompt' | 'system_template'): string {
  if (typeof value !== 'string') throw new InvalidRequestError(`'${param}' must be a string`, param, 'invalid_type');
  if (value.trim() === '' || value.length > MAX_PROMPT_OVERRIDE) {
    throw new InvalidRequestError(`'${param}' must be 1 to ${MAX_PROMPT_OVERRIDE} characters`, param, 'invalid_value');
  }
  if (kind === 'system_template') {
    for (const m of value.matchAll(PLACEHOLDER)) {
      const name = m[1] ?? '';
      if (!(TEMPLATE_PLACEHOLDERS as readonly string[]).includes(name)) {
        throw new InvalidRequestError(`'${param}' has an unknown placeholder {{${name}}} (only {{${TEMPLATE_PLACEHOLDERS.join('}}, {{')}}})`, param, 'invalid_value');
      }
    }
    if (/\{\{|\}\}/.test(value.replace(PLACEHOLDER, ''))) {
      throw new InvalidRequestError(`'${param}' has an unbalanced {{ or }}`, param, 'invalid_value');
    }
  }
  return value;
}

interface PromptOverrides {
  system_prompt?: string;
  system_template?: string;
}

interface Message {
  role: string;
  content?: unknown;
}

/** The messages with the variant's prompt override applied (the same array when it has none). */
export function applyPromptOverride<M extends Message>(messages: M[], overrides: PromptOverrides, rawPrompt: boolean): M[] {
  const { system_prompt: prompt, system_template: template } = overrides;
  if (prompt === undefined && template === undefined) return messages;
  const isSystem = (m: Message) => m.role === 'system' || m.role === 'developer';
  const callerSystem = messages.filter(isSystem).flatMap((m) => (typeof m.content === 'string' ? [m.content] : [])).join('\n\n');
  const text = template !== undefined ? template.replace(PLACEHOLDER, () => callerSystem) : (prompt as string);
  if (rawPrompt) return messages.map((m, i) => (i === 0 && typeof m.content === 'string' ? { ...m, content: `${text}\n\n${m.content}` } : m));
  const rest = template !== undefined ? messages.filter((m) => !isSystem(m)) : messages;
  return [{ role: 'system', content: text } as unknown as M, ...rest];
}
