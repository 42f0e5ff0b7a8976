/**
 * The one backoff helper of the SDK: jittered exponential delays and an abortable sleep, used by
 * request retries and by event-stream reconnects alike.
 */
import type { Backoff } from "../shared/backoff.ts";

export { backoffMs, type Backoff } from "../shared/backoff.ts";

/** Request retries and stream reconnects: 0.25 s doubling to 10 s. */
export const DEFAULT_BACKOFF: Backoff = { baseMs: 250, maxMs: 10_000 };

/** Waits `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
