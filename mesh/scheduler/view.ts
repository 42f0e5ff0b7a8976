/**
 * How a stored job reads as a job view (`GET /v1/jobs/{id}` before the edge adds signed URLs
 * and live progress): its body, attempts, outputs and timings, in the shape shared/api.ts
 * declares. A presenter only: it decides nothing.
 *
 * Called by SchedulerCore.
 */
import type { AdminAttempt, AdminJobView } from "../../shared/api.ts";
import type { JobPhase, JobStatus } from "../../shared/job.ts";
import { attemptsOf, bodyOf, outputsOf } from "./rows.ts";
import type { JobRow } from "./store.ts";

function iso(t: number | null): string | null {
  return t === null ? null : new Date(t).toISOString();
}

/** A job row as admins see it; `queue` comes from the queues when the job waits. */
export function renderJob(job: JobRow, now: number, queue: AdminJobView["queue"]): AdminJobView {
  const body = bodyOf(job);
  const attempts = attemptsOf(job).map(({ executing_ms, gpus: _gpus, ...a }): AdminAttempt => ({
    ...a,
    started_at: new Date(a.started_at).toISOString(),
    ended_at: iso(a.ended_at),
    executing_s: a.ended_at === null ? null : (executing_ms ?? a.ended_at - a.started_at) / 1000,
  }));
  const finished = job.finished_at;
  return {
    id: job.id,
    model: body.model,
    tier: job.tier,
    status: job.status as JobStatus,
    phase: job.phase as JobPhase,
    created_at: new Date(job.created_at).toISOString(),
    metadata: body.metadata ?? null,
    deadline: body.deadline ?? null,
    version: body.version ?? null,
    attempts,
    queue,
    // Progress is the agent's to report, live, to its agent actor: a shard keeps none.
    progress: null,
    outputs: outputsOf(job),
    error: job.error_code === null ? null : { code: job.error_code, message: job.error_message ?? job.error_code },
    timings: {
      created_at: new Date(job.created_at).toISOString(),
      started_at: iso(job.started_at),
      finished_at: iso(finished),
      queued_s:
        job.started_at === null
          ? finished === null
            ? (now - job.created_at) / 1000
            : null
          : (job.started_at - job.created_at) / 1000,
      running_s: job.started_at === null ? null : ((finished ?? now) - job.started_at) / 1000,
    },
  };
}
