/**
 * The two ways a subscriber follows a job's events: Server-Sent Events (text, previews inline
 * as base64 or by URL) and a WebSocket (msgpack frames, previews as raw bytes). Each is bounded:
 * a subscriber that does not keep up — an SSE reader {@link MAX_BEHIND} events behind, a
 * WebSocket with more than {@link MAX_WS_BUFFERED} bytes it has not taken — is dropped, so it
 * can neither slow the others nor grow the actor's memory.
 *
 * Called by JobActor.
 */
import { encode } from "../../shared/codec.ts";
import { sseData, type JobEvent } from "../../shared/events.ts";

/** An SSE subscriber this many events behind is dropped. */
const MAX_BEHIND = 256;
/** A WebSocket subscriber with more than this many bytes queued for it is dropped (bytes). */
export const MAX_WS_BUFFERED = 4 * 1024 * 1024;
/** SSE comment sent when nothing else was, so proxies keep the stream open (ms). */
const KEEPALIVE_MS = 15_000;
/** The WebSocket close code a subscriber too slow to keep up gets (RFC 6455 §7.4.1: policy). */
const TOO_SLOW = 1008;

export interface Subscriber {
  send(e: JobEvent): void;
  /** Whether it fell too far behind to keep. */
  lagging(): boolean;
  close(): void;
}

const enc = new TextEncoder();

function sseFrame(e: JobEvent): Uint8Array {
  const { bytes: _raw, ...data } = e.data as { bytes?: Uint8Array };
  return enc.encode(`id: ${e.id}\nevent: ${e.event}\ndata: ${sseData(data)}\n\n`);
}

/** An SSE subscriber and its response; `onClose` runs once when it goes, however it goes. */
export function sseSubscriber(onClose: (s: Subscriber) => void): { sub: Subscriber; response: Response } {
  // Chunks wait on the writable side until this subscriber reads them: its queue length is how
  // far behind it is.
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>(undefined, {
    highWaterMark: MAX_BEHIND * 2,
  });
  const writer = writable.getWriter();
  let open = true;
  let lastWrite = Date.now();
  const write = (bytes: Uint8Array): void => {
    if (!open) return;
    lastWrite = Date.now();
    writer.write(bytes).catch(() => close());
  };
  const keepalive = setInterval(() => {
    if (Date.now() - lastWrite >= KEEPALIVE_MS) write(enc.encode(": keep-alive\n\n"));
  }, KEEPALIVE_MS);
  const close = (): void => {
    if (!open) return;
    open = false;
    clearInterval(keepalive);
    onClose(sub);
    writer.close().catch(() => undefined);
  };
  const sub: Subscriber = {
    send: (e) => write(sseFrame(e)),
    lagging: () => MAX_BEHIND * 2 - (writer.desiredSize ?? 0) > MAX_BEHIND,
    close,
  };
  // A subscriber that went away cancels the readable side, which errors the writer at once: its
  // place is given back then, not at the next write.
  writer.closed.then(close, close);
  write(enc.encode("retry: 1000\n\n"));
  const response = new Response(readable, {
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      "x-accel-buffering": "no",
    },
  });
  return { sub, response };
}

/** A WebSocket subscriber and its upgrade response; `onClose` runs once when it goes. */
export function webSocketSubscriber(onClose: (s: Subscriber) => void): { sub: Subscriber; response: Response } {
  const pair = new WebSocketPair();
  const [client, server] = [pair[0], pair[1]];
  server.accept();
  let open = true;
  const close = (code = 1000, reason = "the job has ended"): void => {
    if (!open) return;
    open = false;
    onClose(sub);
    try {
      server.close(code, reason);
    } catch {
      // already closed
    }
  };
  const sub: Subscriber = {
    send: (e) => {
      if (!open) return;
      const { data_base64: _inline, ...data } = e.data as { data_base64?: string };
      try {
        server.send(encode({ id: e.id, event: e.event, data }));
      } catch {
        close();
      }
    },
    lagging: () => server.bufferedAmount > MAX_WS_BUFFERED,
    close: () => (sub.lagging() ? close(TOO_SLOW, "too far behind; reconnect and resume") : close()),
  };
  server.addEventListener("close", () => close());
  server.addEventListener("error", () => close());
  return { sub, response: new Response(null, { status: 101, webSocket: client }) };
}
