/**
 * The one backoff helper of the SDK: jittered exponential delays and an abortable sleep, used by
 * request retries and by event-stream reconnects alike.
 */

export interface Backoff {
  /** First delay (ms). */
  baseMs: number;
  /** Largest delay (ms). */
  maxMs: number;
}

/** Request retries and stream reconnects: 0.25 s doubling to 10 s. */
export const DEFAULT_BACKOFF: Backoff = { baseMs: 250, maxMs: 10_000 };

/**
 * The delay before retry number `attempt` (0 for the first): "equal jitter", half fixed and half
 * random, so many clients cut off at once do not come back in step, yet none retries at once.
 */
export function backoffMs(attempt: number, b: Backoff = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const ceiling = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + (random() * ceiling) / 2;
}

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
