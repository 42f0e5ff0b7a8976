/**
 * The job state machine. Every status change in the scheduler goes through
 * {@link canTransition}; the table is the whole lifecycle:
 *
 *   queued → running → succeeded | failed | cancelled
 *   queued → cancelled | expired | failed (attempts spent while requeued)
 *   running → queued (lease lost, preempted, drained)
 */
import { z } from "zod";

export const JobStatus = z.enum(["queued", "running", "succeeded", "failed", "cancelled", "expired"]);
export type JobStatus = z.infer<typeof JobStatus>;

/** A finer state for people watching a job. */
export const JobPhase = z.enum(["waiting", "assigned", "loading", "sampling", "decoding", "uploading", "done"]);
export type JobPhase = z.infer<typeof JobPhase>;

/** The phases an agent reports progress in: the running part of {@link JobPhase}. */
export const ProgressPhase = JobPhase.extract(["loading", "sampling", "decoding", "uploading"]).describe(
  "`loading`: the model loads; `sampling`: denoising steps; `decoding`: frames decode; `uploading`: outputs upload.",
);
export type ProgressPhase = z.infer<typeof ProgressPhase>;

const TRANSITIONS: Record<JobStatus, readonly JobStatus[]> = {
  queued: ["running", "cancelled", "expired", "failed"],
  running: ["queued", "succeeded", "failed", "cancelled"],
  succeeded: [],
  failed: [],
  cancelled: [],
  expired: [],
};

/** Whether a job may move from one status to another. */
export function canTransition(from: JobStatus, to: JobStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Whether a status is final. */
export function isTerminal(status: JobStatus): boolean {
  return TRANSITIONS[status].length === 0;
}

/** Why a queued job is still waiting. */
export const WaitReason = z.enum(["capacity", "no_agent", "agents_unhealthy"]);
export type WaitReason = z.infer<typeof WaitReason>;

/** How an attempt ended. */
export const AttemptOutcome = z.enum(["running", "succeeded", "failed", "requeued", "lease_expired", "cancelled"]);
export type AttemptOutcome = z.infer<typeof AttemptOutcome>;

/** Reason codes for a failed job or attempt. */
export const FailureReason = z.enum([
  "worker_lost",
  "oom",
  "runner_crashed",
  "run_timeout",
  "invalid_output",
  "model_error",
  "cancelled",
  "preempted",
  "drained",
  "max_attempts",
]);
export type FailureReason = z.infer<typeof FailureReason>;
