/**
 * A job's event stream, as subscribers see it (`GET /v1/jobs/{id}/events`): Server-Sent Events
 * with `id`, `event` and a JSON `data` line, or — on the same path with `Upgrade: websocket` —
 * binary msgpack frames `{id, event, data}` where a preview's bytes are raw (`data.bytes`).
 *
 * Event ids are `<generation>.<sequence>`; reconnecting with `Last-Event-ID` (or `?last_event_id=`)
 * resumes right after that event with no gap and no duplicate. A subscriber that arrives late
 * first receives a `status` snapshot of the current state; one whose id has left the bounded
 * log (or names an older generation) receives a `status` snapshot with `reset: true`. The
 * stream ends after a terminal event: `succeeded`, `failed`, `cancelled` or `expired`.
 */
import { z } from "zod";
import { JobPhase, JobStatus, ProgressPhase, WaitReason } from "./job.ts";

export const StatusData = z
  .object({
    status: JobStatus.describe("The job's status."),
    phase: JobPhase.describe("Its finer phase, for people watching."),
    queue: z
      .object({
        position: z.number().int().describe("Jobs ahead of it in its tier."),
        eta_s: z.number().nullable().describe("Estimated wait, seconds; null when no estimate can be made yet."),
        reason: WaitReason.describe(
          "Why it waits: `capacity` (agents are busy), `no_agent` (none connected), `scaling_up` (none connected yet, and a pool is growing for the model), `agents_unhealthy` (its model's attempts keep failing).",
        ),
      })
      .nullable()
      .describe("While queued: its place and estimated wait; null otherwise."),
    attempt: z
      .number()
      .int()
      .nullable()
      .describe(
        "While running: how many attempts the job has had (its `attempts` in `GET /v1/jobs/{id}`, the current one included, drained and preempted ones too); null otherwise.",
      ),
    reset: z
      .boolean()
      .optional()
      .describe(
        "Present and true when the subscriber's `Last-Event-ID` could not be resumed: events may have been missed; this is the state now.",
      ),
  })
  .describe("The job's state changed (and the first event of every subscription).");

export const ProgressData = z
  .object({
    phase: ProgressPhase,
    step: z.number().int().describe("Steps done in this phase."),
    total: z.number().int().describe("Steps in this phase."),
  })
  .describe("The agent reported progress.");

/** Previews up to this size (bytes) travel inline in SSE; larger ones by signed URL. */
export const INLINE_PREVIEW_BYTES = 48 * 1024;

export const PreviewData = z
  .object({
    content_type: z.string().describe("The image's media type (`image/png`, `image/gif`, `image/jpeg`, `image/webp`)."),
    size: z.number().int().describe("The image's size, bytes."),
    url: z
      .string()
      .optional()
      .describe(
        `SSE, previews over ${INLINE_PREVIEW_BYTES} bytes: a signed URL of the image (it serves the newest preview).`,
      ),
    data_base64: z
      .string()
      .optional()
      .describe(`SSE, previews up to ${INLINE_PREVIEW_BYTES} bytes: the image, base64.`),
    bytes: z
      .custom<Uint8Array>((v) => v instanceof Uint8Array)
      .optional()
      .describe("WebSocket frames only: the image (msgpack bin)."),
  })
  .describe("A new preview image of the job in progress. A resumed stream carries only the newest preview's image.");

export const LogData = z
  .object({
    level: z.enum(["debug", "info", "warn", "error"]).describe("Severity."),
    message: z.string().describe("The line."),
  })
  .describe("The agent logged a line for the job's owner.");

export const OutputView = z
  .looseObject({
    name: z.string().describe("File name."),
    content_type: z.string().describe("Media type."),
    size: z.number().int().describe("Bytes."),
    sha256: z.string().describe("SHA-256 of the bytes, 64 lowercase hex chars."),
    url: z.string().describe("A signed URL, valid one hour."),
  })
  .describe("An output file.");

const EventId = z
  .string()
  .describe(
    "`<generation>.<sequence>`: strictly increasing along one stream; send the last one you saw as `Last-Event-ID` to resume.",
  );
const ErrorData = z
  .object({
    error: z
      .object({
        code: z
          .string()
          .describe(
            "The reason: an agent's failure code (`oom`, `model_error`, …), `worker_lost`, `run_timeout`; `queue_ttl` for an expired job.",
          ),
        message: z.string().describe("For people."),
      })
      .describe("Why."),
  })
  .describe("Why the job ended.");

export const JobEvent = z.discriminatedUnion("event", [
  z.object({ id: EventId, event: z.literal("status"), data: StatusData }),
  z.object({ id: EventId, event: z.literal("progress"), data: ProgressData }),
  z.object({ id: EventId, event: z.literal("preview"), data: PreviewData }),
  z.object({ id: EventId, event: z.literal("log"), data: LogData }),
  z.object({
    id: EventId,
    event: z.literal("succeeded"),
    data: z
      .object({ outputs: z.array(OutputView).describe("The job's outputs.") })
      .describe("The job succeeded: the last event."),
  }),
  z.object({ id: EventId, event: z.literal("failed"), data: ErrorData.describe("The job failed: the last event.") }),
  z.object({
    id: EventId,
    event: z.literal("cancelled"),
    data: z.object({}).describe("The job was cancelled: the last event. `data` is `{}`."),
  }),
  z.object({
    id: EventId,
    event: z.literal("expired"),
    data: ErrorData.describe("The job waited past its model's `queue_ttl_s`: the last event."),
  }),
]);
export type JobEvent = z.infer<typeof JobEvent>;
export type JobEventName = JobEvent["event"];

export const TERMINAL_EVENTS: readonly JobEventName[] = ["succeeded", "failed", "cancelled", "expired"];

/** Characters JSON leaves raw that some line readers take for line breaks. */
const LINE_BREAKS_JSON_KEEPS = /[\u0085\u2028\u2029]/g;

/**
 * An event's `data` as one SSE `data:` line: JSON with U+0085, U+2028 and U+2029 escaped as
 * `\u0085`, `\u2028`, `\u2029`. JSON.stringify escapes control characters (so no CR or LF
 * reaches the line) but leaves these three raw, and readers that split lines the Unicode way
 * (Python's `str.splitlines`, some EventSource shims) would cut the line there. The escaped form
 * is the same JSON value.
 *
 * @example
 * sseData({ message: "a\u2028b" }) // '{"message":"a\\u2028b"}'
 */
export function sseData(data: unknown): string {
  return JSON.stringify(data).replace(
    LINE_BREAKS_JSON_KEEPS,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * Subscribers (SSE streams and WebSockets together) one job takes at once; past it a new one is
 * `429 too_many_streams`. The fan-out one job is built and tested for (test/e2e/streams.test.ts:
 * every one of 500 subscribers sees every event); each costs the job's actor memory, a write per
 * event and a keep-alive every 15 s, all on that one actor's thread.
 */
export const MAX_STREAMS_PER_JOB = 500;

/** Subscribers one account holds at once across all its jobs; past it, `429 too_many_streams`. */
export const MAX_STREAMS_PER_ACCOUNT = 1000;

export const StreamTokenAnswer = z.object({ token: z.string(), expires_at: z.string() });
