/**
 * Turns a growing generated text into stream deltas that never have to be taken back: text that
 * might still become part of a stop string, or an incomplete UTF-8 character (decoded as U+FFFD),
 * is held back until the next token decides it, and text after a stop string is never sent. The
 * final `finish(content)` sends what is left, so the deltas always join to the completion's content.
 */

/** Emits deltas to `emit`; `update` takes the whole decoded text so far, `finish` the final content. */
export interface DeltaTracker {
  update(text: string): void;
  finish(content: string): void;
  /** What was emitted so far. */
  readonly emitted: string;
}

/** Characters at the end of `text` that could start one of `stops` (or are an incomplete character). */
function heldBack(text: string, stops: readonly string[]): number {
  let hold = 0;
  while (hold < text.length && text[text.length - 1 - hold] === '\uFFFD') hold++;
  const visible = text.slice(0, text.length - hold);
  let prefix = 0;
  for (const stop of stops) {
    for (let n = Math.min(stop.length - 1, visible.length); n > prefix; n--) {
      if (visible.endsWith(stop.slice(0, n))) {
        prefix = n;
        break;
      }
    }
  }
  return hold + prefix;
}

export function createDeltaTracker(stops: readonly string[], emit: (delta: string) => void): DeltaTracker {
  const activeStops = stops.filter((s) => s !== '');
  let emitted = '';
  let stopped = false;
  const send = (stable: string) => {
    if (!stable.startsWith(emitted) || stable.length === emitted.length) return;
    const delta = stable.slice(emitted.length);
    emitted = stable;
    emit(delta);
  };
  return {
    update(text) {
      if (stopped) return;
      const cut = Math.min(...activeStops.map((s) => text.indexOf(s)).filter((i) => i >= 0));
      if (Number.isFinite(cut)) {
        stopped = true;
        send(text.slice(0, cut));
        return;
      }
      send(text.slice(0, text.length - heldBack(text, activeStops)));
    },
    finish(content) {
      send(content);
    },
    get emitted() {
      return emitted;
    },
  };
}
