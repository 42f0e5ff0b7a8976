/**
 * What the agent needs of a runner, whatever starts it: a runner process (runner/host.ts), a
 * version's replicas (pool.ts, versions/manager.ts) or an in-process stand-in in tests and
 * benchmarks.
 */
import type { RunnerPhase } from "../../shared/job.ts";

/** A frame of pixels handed back by a runner. */
export interface Frame {
  index: number;
  width: number;
  height: number;
  data: Uint8Array;
}

/** What the agent needs of a runner process (runner/host.ts provides it). */
export interface RunnerLike {
  readonly maxBatch: number;
  readonly models: readonly { model: string; version: string }[];
  run(
    job: { job_id: string; model: string; version: string; input: Record<string, unknown> },
    on: {
      progress: (p: { phase: RunnerPhase; step: number; total: number }) => void;
      preview: (f: Frame) => void;
      log: (level: "debug" | "info" | "warn" | "error", message: string) => void;
    },
  ): Promise<{ frames: Frame[]; outputs: { name: string; content_type: string; data: Uint8Array }[] }>;
  cancel(jobId: string): void;
  close(): Promise<void>;
  /** False once the process has exited (a new runner is on its way). */
  readonly alive: boolean;
  /** Resolves when the process has exited, with why. */
  readonly exited: Promise<{ reason: string }>;
}
