/**
 * Nesting depth of parsed JSON, measured without recursion (so a hostile body cannot overflow the
 * stack here), for the checks where JSON enters: HTTP bodies and batch lines. Every validator and
 * hash behind them recurses; bodies deeper than this never reach them.
 */

/** Deepest nesting of objects and arrays accepted in a request body or batch line. */
export const MAX_JSON_DEPTH = 128;

/** Whether `value` nests objects or arrays deeper than `max` levels. */
export function jsonDeeperThan(value: unknown, max: number = MAX_JSON_DEPTH): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (node === null || typeof node !== 'object') continue;
    if (depth > max) return true;
    for (const child of Object.values(node as Record<string, unknown>)) stack.push([child, depth + 1]);
  }
  return false;
}
