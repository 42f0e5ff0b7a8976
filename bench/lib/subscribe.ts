/**
 * Subscribers to a job's event stream (`GET /v1/jobs/{id}/events`, shared/events.ts) for the
 * stream benchmarks: Server-Sent Events read with undici's fetch and parsed here, or the
 * WebSocket variant (`Upgrade: websocket`, one msgpack frame per event, preview bytes raw).
 * Every event is handed over with the time its bytes were read (`performance.now()`), taken
 * before parsing.
 */
import { Agent as UndiciAgent, fetch } from "undici";
import { WebSocket } from "ws";
import { decode, encode } from "../../shared/codec.ts";

/** One event as a subscriber sees it. */
export interface StreamEvent {
  id: string;
  event: string;
  data: Record<string, unknown>;
}

export interface Subscription {
  /** Resolves at the first event (the status snapshot): the subscriber is registered. */
  ready: Promise<void>;
  /** Resolves when the stream ends (after a terminal event) or fails; never rejects. */
  done: Promise<{ events: number; error?: string }>;
  close(): void;
}

/** A promise and the function that resolves it. */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve: (() => void) | undefined;
  const promise = new Promise<void>((res) => (resolve = res));
  return { promise, resolve: () => resolve?.() };
}

/** A dispatcher for many long-lived SSE streams to one origin; close it when done. */
export function sseDispatcher(): UndiciAgent {
  return new UndiciAgent({ keepAliveTimeout: 10_000, headersTimeout: 30_000, bodyTimeout: 60_000 });
}

/** Subscribes with SSE; `onEvent` gets each parsed event and when its chunk was read. */
export function subscribeSse(opts: {
  url: string;
  key: string;
  jobId: string;
  dispatcher: UndiciAgent;
  onEvent: (e: StreamEvent, at: number) => void;
}): Subscription {
  const abort = new AbortController();
  const { promise: readyP, resolve: ready } = signal();
  const done = (async (): Promise<{ events: number; error?: string }> => {
    let events = 0;
    try {
      const res = await fetch(`${opts.url}/v1/jobs/${opts.jobId}/events`, {
        headers: { authorization: `Bearer ${opts.key}`, accept: "text/event-stream" },
        dispatcher: opts.dispatcher,
        signal: abort.signal,
      });
      if (res.status !== 200 || !res.body) return { events, error: `status ${res.status}: ${await res.text()}` };
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { done: end, value } = await reader.read();
        if (end) return { events };
        const at = performance.now();
        buf += dec.decode(value, { stream: true });
        let cut: number;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let id = "";
          let event = "";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            if (colon < 0) continue;
            const field = line.slice(0, colon);
            const text = line.slice(colon + 1).replace(/^ /, "");
            if (field === "id") id = text;
            else if (field === "event") event = text;
            else if (field === "data") data += text;
          }
          if (!event) continue;
          events++;
          ready();
          opts.onEvent({ id, event, data: JSON.parse(data || "{}") as Record<string, unknown> }, at);
        }
      }
    } catch (err) {
      return { events, error: (err as Error).message };
    } finally {
      ready();
    }
  })();
  return { ready: readyP, done, close: () => abort.abort() };
}

/** Subscribes with the WebSocket variant; preview events carry their bytes in `data.bytes`. */
export function subscribeWs(opts: {
  url: string;
  key: string;
  jobId: string;
  onEvent: (e: StreamEvent, at: number, frameBytes: number) => void;
}): Subscription {
  const u = new URL(`${opts.url}/v1/jobs/${opts.jobId}/events`);
  u.protocol = "ws:";
  const ws = new WebSocket(u.toString(), {
    headers: { authorization: `Bearer ${opts.key}` },
    maxPayload: 4 * 1024 * 1024,
    handshakeTimeout: 10_000,
  });
  ws.binaryType = "nodebuffer";
  const { promise: readyP, resolve: ready } = signal();
  let events = 0;
  const done = new Promise<{ events: number; error?: string }>((res) => {
    ws.on("message", (raw: Buffer) => {
      const at = performance.now();
      events++;
      ready();
      const msg = decode(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength)) as unknown as StreamEvent;
      opts.onEvent(msg, at, raw.byteLength);
      // Taken: the edge bounds what a WebSocket subscriber has not acknowledged.
      ws.send(encode({ ack: msg.id }));
    });
    ws.on("unexpected-response", (_req, r) => {
      ready();
      res({ events, error: `status ${r.statusCode}` });
      ws.terminate();
    });
    ws.on("error", (err) => {
      ready();
      res({ events, error: err.message });
    });
    ws.on("close", () => {
      ready();
      res({ events });
    });
  });
  return {
    ready: readyP,
    done,
    close: () => {
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.terminate();
    },
  };
}
