/**
 * A small Chrome DevTools Protocol client for workerd's V8 inspector: the targets its `/json`
 * lists (one per isolate: `core:user:<worker>` for a Worker and its Durable Objects, and
 * Miniflare's own internal workers), and one session per target over a WebSocket, with every
 * command bounded in time. Used by the `cost` benchmark for CPU profiles and call counts.
 */
import { WebSocket } from "ws";

/** One debuggable isolate, as workerd's `/json` lists it. */
export interface InspectorTarget {
  id: string;
  title: string;
  webSocketDebuggerUrl: string;
}

/** The targets workerd's inspector at `inspectorUrl` (`http://127.0.0.1:<port>`) lists. */
export async function inspectorTargets(inspectorUrl: string): Promise<InspectorTarget[]> {
  const res = await fetch(new URL("/json", inspectorUrl), { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`the inspector answered /json with ${res.status}`);
  return (await res.json()) as InspectorTarget[];
}

/** A CDP session with one target. */
export interface CdpSession {
  readonly target: string;
  /** Sends a command; rejects on a protocol error, a closed socket or after `timeoutMs`. */
  send<T = unknown>(method: string, params?: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  /** Calls `fn` with every event (a message without an id) the target sends. */
  onEvent(fn: (method: string, params: Record<string, unknown>) => void): void;
  /** Closes the socket (idempotent). */
  close(): Promise<void>;
}

/** Opens a session with `target`, waiting at most `timeoutMs` for the socket to open. */
export async function openSession(target: InspectorTarget, timeoutMs = 10_000): Promise<CdpSession> {
  // Profiles of a few seconds run to tens of MB of JSON.
  const ws = new WebSocket(target.webSocketDebuggerUrl, { maxPayload: 1024 * 1024 * 1024 });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`the inspector session with ${target.id} did not open within ${timeoutMs} ms`));
    }, timeoutMs);
    ws.once("open", () => {
      clearTimeout(timer);
      resolve();
    });
    ws.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  let next = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const listeners: ((method: string, params: Record<string, unknown>) => void)[] = [];
  ws.on("message", (data: Buffer) => {
    const msg = JSON.parse(data.toString("utf8")) as {
      id?: number;
      method?: string;
      params?: Record<string, unknown>;
      result?: unknown;
      error?: { message: string };
    };
    if (msg.id === undefined) {
      for (const fn of listeners) fn(msg.method ?? "", msg.params ?? {});
      return;
    }
    const waiter = pending.get(msg.id);
    if (!waiter) return;
    pending.delete(msg.id);
    if (msg.error) waiter.reject(new Error(`${target.id}: ${msg.error.message}`));
    else waiter.resolve(msg.result);
  });
  ws.on("close", () => {
    for (const w of pending.values()) w.reject(new Error(`the inspector session with ${target.id} closed`));
    pending.clear();
  });
  ws.on("error", () => undefined);
  return {
    target: target.id,
    send<T>(method: string, params: Record<string, unknown> = {}, limitMs = 60_000): Promise<T> {
      if (ws.readyState !== WebSocket.OPEN) {
        return Promise.reject(new Error(`the inspector session with ${target.id} is closed`));
      }
      const id = ++next;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${target.id}: ${method} had no answer within ${limitMs} ms`));
        }, limitMs);
        pending.set(id, {
          resolve: (v) => {
            clearTimeout(timer);
            resolve(v as T);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        ws.send(JSON.stringify({ id, method, params }));
      });
    },
    onEvent(fn): void {
      listeners.push(fn);
    },
    async close(): Promise<void> {
      if (ws.readyState === WebSocket.CLOSED) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          ws.terminate();
          resolve();
        }, 2_000);
        ws.once("close", () => {
          clearTimeout(timer);
          resolve();
        });
        ws.close();
      });
    },
  };
}
