/**
 * Jittered exponential backoff, the one implementation: the SDK's request retries and stream
 * reconnects, and the agent's reconnects.
 */

export interface Backoff {
  /** First delay (ms). */
  baseMs: number;
  /** Largest delay (ms). */
  maxMs: number;
}

/**
 * The delay before retry number `attempt` (0 for the first): "equal jitter", half fixed and half
 * random, so many clients cut off at once do not come back in step, yet none retries at once.
 */
export function backoffMs(attempt: number, b: Backoff, random: () => number = Math.random): number {
  const ceiling = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + (random() * ceiling) / 2;
}
