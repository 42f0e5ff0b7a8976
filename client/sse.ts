/**
 * An incremental `text/event-stream` parser, after the WHATWG HTML standard §9.2.6 ("Parsing an
 * event stream"): lines end in CRLF, LF or CR (a CR at the end of one chunk and an LF at the
 * start of the next are one line end); a leading BOM is dropped; `:` starts a comment; a field
 * without a colon has an empty value; one space after the colon is dropped; `data` lines join
 * with LF; an `id` containing NUL is ignored; `retry` takes ASCII digits only; a blank line
 * dispatches. Pure and runtime-free, so it works in browsers and Node alike.
 */

/** One dispatched message. */
export interface SseMessage {
  /** The `event` field; "message" when the block had none. */
  event: string;
  data: string;
  /** The last event ID at dispatch (ids persist across messages, as the standard says). */
  id: string;
}

export class SseParser {
  /** The last event ID string: what to send as `Last-Event-ID` on reconnect. */
  lastEventId = "";
  /** The reconnection time the server asked for (`retry:`, ms), if any. */
  retryMs: number | undefined;

  private buffer = "";
  private data: string[] = [];
  private event = "";
  private idBuffer = "";
  private started = false;
  private skipLf = false;

  /** Feeds decoded text; returns the messages it completed, in order. */
  feed(chunk: string): SseMessage[] {
    let text = chunk;
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (text.length === 0) return [];
    if (this.skipLf && text.startsWith("\n")) text = text.slice(1);
    this.skipLf = false;
    this.buffer += text;
    const out: SseMessage[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer.charCodeAt(i);
      if (c !== 0x0a && c !== 0x0d) continue;
      this.line(this.buffer.slice(start, i), out);
      if (c === 0x0d) {
        if (i + 1 < this.buffer.length) {
          if (this.buffer.charCodeAt(i + 1) === 0x0a) i++;
        } else this.skipLf = true;
      }
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  /** Forgets a half-received message (the connection dropped); the last event ID stays. */
  reset(): void {
    this.buffer = "";
    this.data = [];
    this.event = "";
    this.idBuffer = this.lastEventId;
    this.started = false;
    this.skipLf = false;
  }

  private line(line: string, out: SseMessage[]): void {
    if (line === "") {
      this.dispatch(out);
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.event = value;
        break;
      case "data":
        this.data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.idBuffer = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
        // Unknown fields are ignored, as the standard says.
        break;
    }
  }

  private dispatch(out: SseMessage[]): void {
    this.lastEventId = this.idBuffer;
    if (this.data.length === 0) {
      this.event = "";
      return;
    }
    out.push({ event: this.event || "message", data: this.data.join("\n"), id: this.lastEventId });
    this.data = [];
    this.event = "";
  }
}
