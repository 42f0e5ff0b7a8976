/**
 * The two ways a subscriber follows a job's events: Server-Sent Events (text, previews inline
 * as base64 or by URL) and a WebSocket (msgpack frames, previews as raw bytes). Each is bounded:
 * a subscriber that does not keep up — an SSE reader {@link MAX_BEHIND} events behind, a
 * WebSocket sent more than {@link MAX_WS_BUFFERED} bytes past the last event it acknowledged —
 * is dropped, so it can neither slow the others nor grow the actor's memory.
 *
 * Called by JobActor.
 */
import { decode, encode } from "../../shared/codec.ts";
import { sseData, type JobEvent } from "../../shared/events.ts";

/** An SSE subscriber this many events behind is dropped. */
const MAX_BEHIND = 256;
/** A WebSocket subscriber sent more than this many bytes past its last acknowledgement is dropped (bytes). */
export const MAX_WS_BUFFERED = 4 * 1024 * 1024;
/** SSE comment sent when nothing else was, so proxies keep the stream open (ms). */
const KEEPALIVE_MS = 15_000;
/** The WebSocket close code a subscriber too slow to keep up gets (RFC 6455 §7.4.1: policy). */
const TOO_SLOW = 1008;
/** The close code for a subscriber that sends something other than an ack (RFC 6455: unsupported data). */
const UNSUPPORTED = 1003;

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

/**
 * What a WebSocket subscriber says: `{ack: "<event id>"}` (msgpack in a binary frame, or JSON
 * in a text frame), the last event it has taken. workerd gives no measure of what waits unsent
 * on a socket, so the subscriber's acks are how the edge tells a reader from one that stopped.
 */
function ackOf(message: ArrayBuffer | string): number | undefined {
  let v: unknown;
  try {
    v = typeof message === "string" ? JSON.parse(message) : decode(new Uint8Array(message));
  } catch {
    return undefined;
  }
  const id = (v as { ack?: unknown } | null)?.ack;
  if (typeof id !== "string" || id.length > 64) return undefined;
  const seq = Number(id.slice(id.indexOf(".") + 1));
  return Number.isSafeInteger(seq) && seq >= 0 ? seq : undefined;
}

/**
 * A WebSocket subscriber and its upgrade response; `onClose` runs once when it goes. It must
 * acknowledge what it takes: more than {@link MAX_WS_BUFFERED} bytes sent past its last ack and
 * it is closed with 1008 (it may reconnect and resume from its last event id).
 */
export function webSocketSubscriber(onClose: (s: Subscriber) => void): { sub: Subscriber; response: Response } {
  const pair = new WebSocketPair();
  const [client, server] = [pair[0], pair[1]];
  server.accept();
  // Acks in binary frames arrive as ArrayBuffers, not Blobs.
  server.binaryType = "arraybuffer";
  let open = true;
  /** Events sent and not yet acknowledged: their sequence numbers and sizes, oldest first. */
  const unacked: { seq: number; bytes: number }[] = [];
  let unackedBytes = 0;
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
      const frame = encode({ id: e.id, event: e.event, data });
      unacked.push({ seq: Number(e.id.slice(e.id.indexOf(".") + 1)), bytes: frame.length });
      unackedBytes += frame.length;
      try {
        server.send(frame);
      } catch {
        close();
      }
    },
    lagging: () => unackedBytes > MAX_WS_BUFFERED,
    close: () =>
      sub.lagging() ? close(TOO_SLOW, "too far behind: acknowledge events ({ack: id}) and resume") : close(),
  };
  server.addEventListener("message", (m) => {
    const seq = ackOf(m.data as ArrayBuffer | string);
    if (seq === undefined) {
      close(UNSUPPORTED, "a subscriber sends only {ack: <event id>}");
      return;
    }
    while (unacked.length > 0 && (unacked[0]?.seq ?? Infinity) <= seq) unackedBytes -= unacked.shift()?.bytes ?? 0;
  });
  server.addEventListener("close", () => close());
  server.addEventListener("error", () => close());
  return { sub, response: new Response(null, { status: 101, webSocket: client }) };
}
