/**
 * The dashboard's one way to the edge: requests with the admin key, which lives in the tab's
 * sessionStorage only (never in a URL, so never in a log or a Referer), and the live stream of
 * aggregates, read with `fetch` so the key travels in the Authorization header (EventSource
 * cannot set headers).
 */
import { EventSourceParserStream } from "eventsource-parser/stream";
import type { LiveFrame } from "../../shared/api.ts";

const KEY = "floodgate.admin-key";

export function savedKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function saveKey(key: string): void {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey(): void {
  sessionStorage.removeItem(KEY);
}

/** An answer of the edge: its status and its JSON body (an `{"error":…}` one when refused). */
export interface Answer<T> {
  status: number;
  body: T;
}

/** An error answer's message, or a generic one. */
export function errorMessage(body: unknown): string {
  if (typeof body === "object" && body !== null && "error" in body) {
    const e = (body as { error: { code?: unknown; message?: unknown } }).error;
    return `${String(e.code)}: ${String(e.message)}`;
  }
  return "unexpected answer";
}

/** Calls the edge with the admin key (or `key`, when signing in). */
export async function call<T>(method: string, path: string, body?: unknown, key = savedKey()): Promise<Answer<T>> {
  const res = await fetch(path, {
    method,
    headers: {
      authorization: `Bearer ${key ?? ""}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { error: { code: "bad_answer", message: text.slice(0, 200) } };
  }
  return { status: res.status, body: parsed as T };
}

/**
 * Follows `GET /v1/admin/live` until `signal` aborts, calling `onFrame` with each frame and
 * `onState` as the stream connects, drops, and reconnects (after 1 s, then up to 10 s).
 * A 401 or 403 ends it for good: the key is not (or no longer) the admin key.
 */
export async function followLive(
  signal: AbortSignal,
  onFrame: (f: LiveFrame) => void,
  onState: (s: "live" | "reconnecting" | "refused") => void,
): Promise<void> {
  let wait = 1000; // ms
  while (!signal.aborted) {
    try {
      const res = await fetch("/v1/admin/live", {
        headers: { authorization: `Bearer ${savedKey() ?? ""}`, accept: "text/event-stream" },
        signal,
      });
      if (res.status === 401 || res.status === 403) {
        onState("refused");
        return;
      }
      if (!res.ok || !res.body) throw new Error(`live answered ${res.status}`);
      onState("live");
      wait = 1000;
      const events = res.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
      for await (const e of events) {
        if (e.event === "aggregates") onFrame(JSON.parse(e.data) as LiveFrame);
      }
    } catch {
      if (signal.aborted) return;
    }
    onState("reconnecting");
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(10_000, wait * 2);
  }
}
