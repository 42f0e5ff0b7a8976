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

/**
 * Why an agent says an attempt failed (`job.results`): `oom` out of GPU memory,
 * `runner_crashed` the runner died, `model_error` the model failed, `invalid_input` the input
 * cannot run, `run_timeout` the runner gave up on it, `upload_failed` an output could not be
 * uploaded, `cancelled` after a `job.cancel`.
 */
export const AgentFailure = z
  .enum(["oom", "runner_crashed", "model_error", "invalid_input", "run_timeout", "upload_failed", "cancelled"])
  .describe(
    "Why the attempt failed: `oom` out of GPU memory; `runner_crashed` the runner died; `model_error` the model failed; `invalid_input` the input cannot run; `run_timeout` the runner gave up; `upload_failed` an output could not be uploaded; `cancelled` after a `job.cancel`.",
  );
export type AgentFailure = z.infer<typeof AgentFailure>;

/**
 * Why an attempt or a job ended other than in success: an agent's {@link AgentFailure}, or one
 * the edge decides — `worker_lost` (the agent went away or stopped renewing), `invalid_output`
 * (its outputs were not what the edge stored, or not what the model requires), `preempted` and
 * `drained` (given back without an attempt spent), `queue_ttl` (waited past the model's queue
 * TTL), `cancelled` (by its owner).
 */
export const FailureReason = z.enum([
  ...AgentFailure.options,
  "worker_lost",
  "invalid_output",
  "preempted",
  "drained",
  "queue_ttl",
]);
export type FailureReason = z.infer<typeof FailureReason>;

/**
 * Whether another attempt may succeed where this one failed: a failure the next attempt could
 * avoid (another agent, more memory, a healthy runner) requeues the job, spending an attempt; the
 * others fail it at once. Decided here, not by the agent that reports the failure.
 */
export const RETRYABLE: Readonly<Record<FailureReason, boolean>> = {
  oom: true,
  runner_crashed: true,
  run_timeout: true,
  upload_failed: true,
  worker_lost: true,
  invalid_output: true,
  model_error: false,
  invalid_input: false,
  cancelled: false,
  preempted: true,
  drained: true,
  queue_ttl: false,
};
