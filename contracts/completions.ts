/** A legacy text completion (`/v1/completions`) as the API, the workflow and the job routes pass it. Pure types. */
import type { ChatCompletion, ChatRequestInput } from './chat.js';

/** Most prompts one `/v1/completions` request may carry (`prompt: [...]`); more is a 400 naming `prompt`. */
export const MAX_COMPLETION_PROMPTS = 16;

/**
 * Input of the `completionRequest` workflow: a chat request input whose one user message is the
 * first prompt, continued raw (`params.rawPrompt`). Histories recorded before several prompts
 * and `echo` existed have neither field, and run the single-prompt pipeline as they did.
 */
export interface CompletionRequestInput extends ChatRequestInput {
  /**
   * Every prompt of the request, in order (`messages` holds the first): present only when there
   * are two or more, each generated, settled (usage step {@link promptUsageStep}) and audited on
   * its own under the request's one admission. @default one prompt: `messages`
   */
  prompts?: string[];
  /** `echo: true`: the workflow's result carries the prompts (`echo`), so a job body can prepend them. @default absent (no echo) */
  echo?: true;
}

/**
 * What the `completionRequest` workflow returns: the request's completion (one choice per prompt,
 * `index` i for prompt i; usage summed), and with `echo` the prompts, by choice index. Only the
 * completion (no prompt) is kept on the request row.
 */
export type CompletionResult = ChatCompletion & { echo?: string[] };

/**
 * Usage step of prompt `i` of a request: `infer` for the first (as a single-prompt request),
 * `infer:<i>` for the others (experiment statistics sum them as the request's one serving,
 * migration 0801); a failed or cancelled attempt of it is `<step>:failed:<deployment>` /
 * `<step>:cancelled:<deployment>`, unbilled.
 */
export function promptUsageStep(i: number): string {
  return i === 0 ? 'infer' : `infer:${i}`;
}
