/**
 * Small statistics for benchmark samples: percentiles by nearest rank, and rounding for
 * reports.
 */

/** The p-th percentile (0–100) of samples by nearest rank; NaN when there are none. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] as number;
}

export function mean(samples: readonly number[]): number {
  if (samples.length === 0) return Number.NaN;
  let sum = 0;
  for (const s of samples) sum += s;
  return sum / samples.length;
}

/** Rounds to `digits` significant decimals for JSON metrics (NaN becomes null). */
export function round(v: number, digits = 3): number | null {
  if (!Number.isFinite(v)) return null;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * CLOCK_MONOTONIC in ms with sub-µs precision (process.hrtime): one clock for every process on
 * the machine, and the clock Node's `performance.now()` counts on from the process's start.
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/**
 * {@link monotonicMs} − `performance.now()` in this process, to µs: the tightest of a few
 * bracketed reads (the first reads of either clock can be slow).
 */
export function monotonicOffsetMs(): number {
  let best = { width: Infinity, offset: 0 };
  for (let i = 0; i < 20; i++) {
    const before = performance.now();
    const mono = monotonicMs();
    const after = performance.now();
    if (after - before < best.width) best = { width: after - before, offset: mono - (before + after) / 2 };
  }
  return best.offset;
}
