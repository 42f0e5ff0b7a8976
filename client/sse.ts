/**
 * An incremental `text/event-stream` parser (WHATWG HTML §9.2.6, "Parsing an event stream"),
 * as client/events.ts reads a job's events. The parsing is `eventsource-parser`'s (line ends,
 * a leading BOM, comments, field rules, `retry` digits, an `id` with NUL ignored); this class
 * adds what the standard keeps across messages and that parser leaves to its caller: the last
 * event ID, which persists until an `id` field changes it, and the `message` default event name.
 * Runtime-free, so it works in browsers and Node alike.
 */
import { createParser } from "eventsource-parser";

/** One dispatched message. */
export interface SseMessage {
  /** The `event` field; "message" when the block had none. */
  event: string;
  data: string;
  /** The last event ID at dispatch (ids persist across messages, as the standard says). */
  id: string;
}

/**
 * Feeds decoded text in, takes the messages it completes out.
 *
 * @example
 * const parser = new SseParser();
 * for (const m of parser.feed('id: g.1\nevent: status\ndata: {"a":1}\n\n')) console.log(m.event, m.data);
 * // on reconnect: send parser.lastEventId as Last-Event-ID, wait parser.retryMs, then parser.reset()
 */
export class SseParser {
  /** The last event ID string: what to send as `Last-Event-ID` on reconnect. */
  lastEventId = "";
  /** The reconnection time the server asked for (`retry:`, ms), if any. */
  retryMs: number | undefined;

  private completed: SseMessage[] = [];
  private readonly parser = createParser({
    // Called at the end of every block with an `id` field, before its message if it has one.
    onId: (id) => {
      this.lastEventId = id;
    },
    onEvent: (m) => {
      this.completed.push({ event: m.event ?? "message", data: m.data, id: this.lastEventId });
    },
    onRetry: (ms) => {
      this.retryMs = ms;
    },
  });

  /** Feeds decoded text; returns the messages it completed, in order. */
  feed(chunk: string): SseMessage[] {
    this.parser.feed(chunk);
    const done = this.completed;
    this.completed = [];
    return done;
  }

  /** Forgets a half-received message (the connection dropped); the last event ID stays. */
  reset(): void {
    this.parser.reset();
    this.completed = [];
  }
}
