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

/** The phases a runner reports (uploading is the agent's own, after the runner is done). */
export const RunnerPhase = ProgressPhase.exclude(["uploading"]).describe(
  "`loading` the model loads; `sampling` denoising steps; `decoding` frames decode.",
);
export type RunnerPhase = z.infer<typeof RunnerPhase>;

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
export const WaitReason = z.enum(["capacity", "no_agent", "scaling_up", "agents_unhealthy"]);
export type WaitReason = z.infer<typeof WaitReason>;

/** How an attempt ended. */
export const AttemptOutcome = z.enum(["running", "succeeded", "failed", "requeued", "lease_expired", "cancelled"]);
export type AttemptOutcome = z.infer<typeof AttemptOutcome>;

/**
 * Why an agent says an attempt failed (`job.results`): `oom` out of GPU memory,
 * `runner_crashed` the runner died, `model_error` the model failed, `invalid_input` the input
 * cannot run, `run_timeout` the runner gave up on it, `upload_failed` an output could not be
 * uploaded, `input_unavailable` an input file could not be downloaded or verified,
 * `cancelled` after a `job.cancel`.
 */
export const AgentFailure = z
  .enum([
    "oom",
    "runner_crashed",
    "model_error",
    "invalid_input",
    "run_timeout",
    "upload_failed",
    "input_unavailable",
    "cancelled",
  ])
  .describe("Why the attempt failed (the failure reasons table says what each means and which are retried).");
export type AgentFailure = z.infer<typeof AgentFailure>;

/**
 * Why an attempt or a job ended other than in success: an agent's {@link AgentFailure}, or one
 * the edge decides.
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

/** What each failure reason means: the one place it is written (docs/protocol.md is made from it). */
export const FAILURE_WHEN: Readonly<Record<FailureReason, string>> = {
  oom: "the runner ran out of GPU memory",
  runner_crashed: "the runner process died while running the attempt",
  model_error: "the model raised an error the same input would raise again",
  invalid_input: "the input cannot run (the runner or the agent refused it)",
  run_timeout: "the attempt ran past the model's `run_timeout_s` (the runner gave up, or the edge stopped renewing)",
  upload_failed: "an output could not be uploaded",
  input_unavailable:
    "an input file the lease names could not be downloaded, or its bytes were not the size and SHA-256 the lease names",
  cancelled: "the job's owner cancelled it (an agent reports it after a `job.cancel`)",
  worker_lost: "the agent went away or stopped renewing its lease",
  invalid_output: "the outputs were not what the edge stored, or not what the model requires",
  preempted: "given back by the agent (more than it asked for, or its capacity went away)",
  drained: "given back by a draining or stopping agent",
  queue_ttl: "the job waited in its queue past the model's queue TTL",
};

/**
 * What a failure does to its job: `spend` requeues it and spends an attempt (another agent, more
 * memory or a healthy runner may succeed; past `max_attempts` the job fails), `free` requeues it
 * without spending one (the attempt was given back, not tried), `final` fails the job at once.
 * Decided here by the reason, never by the agent that reports it.
 */
export const RETRY: Readonly<Record<FailureReason, "spend" | "free" | "final">> = {
  oom: "spend",
  runner_crashed: "spend",
  run_timeout: "spend",
  upload_failed: "spend",
  input_unavailable: "spend",
  worker_lost: "spend",
  invalid_output: "spend",
  model_error: "final",
  invalid_input: "final",
  cancelled: "final",
  preempted: "free",
  drained: "free",
  queue_ttl: "final",
};
