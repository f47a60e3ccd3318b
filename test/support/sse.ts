/** Reading a `text/event-stream` body into its events, shared by the streaming tests and the benchmarks. */

/** One server-sent event: its `id:` (null when it has none) and its `data:` lines joined by newlines. */
export interface SseEvent { id: string | null; data: string }

/**
 * Reads an SSE body into events, calling `onEvent` as each one arrives (return true to stop early:
 * the body is cancelled and the events so far are returned).
 */
export async function readEvents(res: Response, onEvent?: (e: SseEvent) => boolean | void): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let at: number;
    while ((at = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      const id = /^id: (.*)$/m.exec(block)?.[1] ?? null;
      const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
      const event = { id, data };
      events.push(event);
      if (onEvent?.(event) === true) {
        await reader.cancel();
        return events;
      }
    }
  }
  return events;
}
