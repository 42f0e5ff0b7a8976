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
import { JobPhase, JobStatus, WaitReason } from "./job.ts";

export const StatusData = z.object({
  status: JobStatus,
  phase: JobPhase,
  /** While queued: jobs ahead in its tier, the estimated wait, and why it waits. */
  queue: z.object({ position: z.number().int(), eta_s: z.number().nullable(), reason: WaitReason }).nullable(),
  /** While running: the attempt number (which agent runs it is the operator's to know). */
  attempt: z.number().int().nullable(),
  /** Present and true when the subscriber's Last-Event-ID could not be resumed. */
  reset: z.boolean().optional(),
});

export const ProgressData = z.object({
  phase: z.enum(["loading", "sampling", "decoding", "uploading"]),
  step: z.number().int(),
  total: z.number().int(),
});

export const PreviewData = z.object({
  content_type: z.string(),
  size: z.number().int(),
  /** A signed URL of the preview image (SSE, larger previews). */
  url: z.string().optional(),
  /** The image itself, base64 (SSE, small previews). */
  data_base64: z.string().optional(),
  /** The image itself (WebSocket frames). */
  bytes: z.custom<Uint8Array>((v) => v instanceof Uint8Array).optional(),
});

export const LogData = z.object({ level: z.enum(["debug", "info", "warn", "error"]), message: z.string() });

export const OutputView = z.looseObject({
  name: z.string(),
  content_type: z.string(),
  size: z.number().int(),
  sha256: z.string(),
  url: z.string(),
});

export const JobEvent = z.discriminatedUnion("event", [
  z.object({ id: z.string(), event: z.literal("status"), data: StatusData }),
  z.object({ id: z.string(), event: z.literal("progress"), data: ProgressData }),
  z.object({ id: z.string(), event: z.literal("preview"), data: PreviewData }),
  z.object({ id: z.string(), event: z.literal("log"), data: LogData }),
  z.object({ id: z.string(), event: z.literal("succeeded"), data: z.object({ outputs: z.array(OutputView) }) }),
  z.object({
    id: z.string(),
    event: z.literal("failed"),
    data: z.object({ error: z.object({ code: z.string(), message: z.string() }) }),
  }),
  z.object({ id: z.string(), event: z.literal("cancelled"), data: z.object({}) }),
  z.object({
    id: z.string(),
    event: z.literal("expired"),
    data: z.object({ error: z.object({ code: z.string(), message: z.string() }) }),
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

/** Previews up to this size (bytes) travel inline in SSE; larger ones by signed URL. */
export const INLINE_PREVIEW_BYTES = 48 * 1024;

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
