/**
 * The live frames kept in the tab (one a second, the last hour) and the rates they give: the
 * edge sends counters, the dashboard differences them over a window.
 */
import type { LiveFrame, ModelCounters } from "../../shared/api.ts";

/** Frames kept: an hour at one a second. */
export const HISTORY = 3600;
/** The window rates are measured over (ms). */
export const RATE_WINDOW_MS = 60_000;

/** Adds a frame to the history, dropping the oldest past {@link HISTORY}. */
export function remember(history: readonly LiveFrame[], frame: LiveFrame): LiveFrame[] {
  const next = history.length >= HISTORY ? history.slice(history.length - HISTORY + 1) : history.slice();
  next.push(frame);
  return next;
}

export interface ModelRates {
  /** Jobs finished (succeeded or failed) per second. */
  jobsPerS: number | null;
  /** Of the jobs finished, the fraction that failed (null without any finished). */
  failureRate: number | null;
  /** Submits refused by admission control, per minute. */
  refusedPerMin: number | null;
}

/**
 * A model's rates over the last {@link RATE_WINDOW_MS} of history (or as much as there is). A
 * counter that went down (a shard's actor restarted) gives no rate rather than a negative one.
 */
export function modelRates(history: readonly LiveFrame[], model: string): ModelRates {
  const last = history.at(-1);
  if (!last) return { jobsPerS: null, failureRate: null, refusedPerMin: null };
  const first = history.find((f) => f.at >= last.at - RATE_WINDOW_MS) ?? last;
  const a = first.counters.find((c) => c.model === model);
  const b = last.counters.find((c) => c.model === model);
  const s = (last.at - first.at) / 1000;
  if (!a || !b || s <= 0) return { jobsPerS: null, failureRate: null, refusedPerMin: null };
  const d = (k: keyof ModelCounters): number | null => (b[k] >= a[k] ? b[k] - a[k] : null);
  const ok = d("succeeded");
  const failed = d("failed");
  const refused = d("refused");
  const done = ok === null || failed === null ? null : ok + failed;
  return {
    jobsPerS: done === null ? null : done / s,
    failureRate: done === null || failed === null || done === 0 ? null : failed / done,
    refusedPerMin: refused === null ? null : (refused / s) * 60,
  };
}

/** A model and tier's largest wait/SLO across its shards in a frame (0 when it has no queue). */
export function waitOverSlo(frame: LiveFrame, model: string, tier: string): number {
  let max = 0;
  for (const q of frame.queues) if (q.model === model && q.tier === tier) max = Math.max(max, q.max_wait_over_slo);
  return max;
}
