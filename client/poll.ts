/**
 * Following a job by polling `GET /v1/jobs/{id}`, for edges that have no events route: each read
 * is compared with the last and what changed becomes the same {@link JobEvent}s the stream would
 * send: a `status` when status, phase, queue position or reason, or attempt changed (as on
 * the edge, a new ETA alone is no change), a `progress` when the step moved, and the terminal
 * event at the end. Ids are `poll.<n>`. No previews or logs: a job read does not carry them.
 */
import { JobView } from "../shared/api.ts";
import { OutputView, type JobEvent } from "../shared/events.ts";
import { assertExhaustive } from "../shared/errors.ts";
import { ProgressPhase } from "../shared/job.ts";
import { MalformedAnswerError } from "./errors.ts";
import type { Http } from "./http.ts";
import { sleep } from "./retry.ts";

type Body = JobEvent extends infer E ? (E extends JobEvent ? Omit<E, "id"> : never) : never;

/** What a `status` event reports, as a comparable string. */
function statusKey(v: JobView | undefined): string | undefined {
  return (
    v && JSON.stringify([v.status, v.phase, v.queue?.position ?? null, v.queue?.reason ?? null, v.attempts.length])
  );
}

/** The step progress a job read carries, if any. */
function stepOf(v: JobView | undefined): { phase: string; step: number; total: number } | undefined {
  const p = v?.progress;
  if (!p || typeof p.step !== "number" || typeof p.total !== "number") return undefined;
  return { phase: typeof p.phase === "string" ? p.phase : (v?.phase ?? ""), step: p.step, total: p.total };
}

/** The events that take a job from `prev` (undefined at first) to `next`; pure. */
export function diffView(prev: JobView | undefined, next: JobView): Body[] {
  const out: Body[] = [];
  const running = next.status === "running";
  const status = {
    status: next.status,
    phase: next.phase,
    queue: next.queue,
    attempt: running ? next.attempts.length : null,
  };
  if (statusKey(prev) !== statusKey(next)) out.push({ event: "status", data: status });
  const a = stepOf(prev);
  const b = stepOf(next);
  if (running && b && (a?.step !== b.step || a.total !== b.total || a.phase !== b.phase)) {
    const phase = ProgressPhase.catch("sampling").parse(b.phase);
    out.push({ event: "progress", data: { phase, step: b.step, total: b.total } });
  }
  switch (next.status) {
    case "succeeded": {
      const outputs = OutputView.array().safeParse(next.outputs ?? []);
      if (!outputs.success) {
        throw new MalformedAnswerError(`job ${next.id}: its outputs do not match their schema`, {
          status: 200,
          cause: outputs.error,
        });
      }
      out.push({ event: "succeeded", data: { outputs: outputs.data } });
      break;
    }
    case "failed":
      out.push({ event: "failed", data: { error: next.error ?? { code: "failed", message: "the job failed" } } });
      break;
    case "cancelled":
      out.push({ event: "cancelled", data: {} });
      break;
    case "expired":
      out.push({
        event: "expired",
        data: { error: next.error ?? { code: "expired", message: "the job waited past its queue TTL" } },
      });
      break;
    case "queued":
    case "running":
      break;
    default:
      assertExhaustive(next.status);
  }
  return out;
}

/** Yields a job's events by polling until it ends; see the module comment. */
export async function* pollEvents(
  http: Http,
  jobId: string,
  opts: { signal?: AbortSignal | undefined; intervalMs?: number | undefined },
): AsyncGenerator<JobEvent, void, undefined> {
  const path = `/v1/jobs/${encodeURIComponent(jobId)}`;
  let prev: JobView | undefined;
  let n = 0;
  for (;;) {
    const view = await http.request(path, JobView, { signal: opts.signal, idempotent: true });
    for (const body of diffView(prev, view)) {
      n += 1;
      const event = { id: `poll.${n}`, ...body } as JobEvent;
      yield event;
      if (
        event.event === "succeeded" ||
        event.event === "failed" ||
        event.event === "cancelled" ||
        event.event === "expired"
      )
        return;
    }
    prev = view;
    await sleep(opts.intervalMs ?? 1_000, opts.signal);
  }
}
