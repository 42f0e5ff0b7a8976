/**
 * What a job row keeps as JSON text — the body as its client sent it, the attempts, the outputs
 * — read and written here and nowhere else. Only SchedulerCore writes rows, from values it has
 * checked (bodies are checked by the edge before enqueue, attempts are built here), so reading
 * them back trusts what it reads: this module holds the scheduler's only casts.
 *
 * Called by the scheduler's core and its view.
 */
import type { InputFiles } from "../../shared/files.ts";
import type { AttemptOutcome } from "../../shared/job.ts";
import type { JobWebhook } from "../../shared/webhooks.ts";
import type { JobRow } from "./store.ts";

/** The stored body of a job: what the client sent, kept as sent. */
export interface JobBody {
  model: string;
  input: Record<string, unknown>;
  metadata?: Record<string, unknown> | undefined;
  deadline?: string | undefined;
  version?: string | undefined;
  webhook?: JobWebhook | undefined;
  /** The input files its input names, by field, as the edge checked them at submit. */
  files?: InputFiles | undefined;
}

/** An attempt as stored inside its job row (times in ms since the Unix epoch). */
export interface StoredAttempt {
  n: number;
  agent: string;
  pool: string;
  version: string | null;
  epoch: number;
  started_at: number;
  ended_at: number | null;
  outcome: AttemptOutcome;
  reason: string | null;
  /** Once ended: its executing time (ms), as its agent reported it capped by the edge's span. */
  executing_ms?: number | undefined;
  /** Once ended: the GPUs it counted for usage. */
  gpus?: number | undefined;
}

/** The job's body. */
export function bodyOf(job: JobRow): JobBody {
  return JSON.parse(job.body) as JobBody;
}

/** The job's attempts, oldest first. */
export function attemptsOf(job: JobRow): StoredAttempt[] {
  return JSON.parse(job.attempts) as StoredAttempt[];
}

/** Writes a job's attempts back into its row (the caller saves the row). */
export function setAttempts(job: JobRow, attempts: readonly StoredAttempt[]): void {
  job.attempts = JSON.stringify(attempts);
}

/** The outputs recorded when the job succeeded, or `null`. */
export function outputsOf(job: JobRow): Record<string, unknown>[] | null {
  return job.outputs === null ? null : (JSON.parse(job.outputs) as Record<string, unknown>[]);
}

/** Records a job's outputs in its row. */
export function setOutputs(job: JobRow, outputs: readonly Record<string, unknown>[]): void {
  job.outputs = JSON.stringify(outputs);
}
