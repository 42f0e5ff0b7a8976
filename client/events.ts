/**
 * A job's event stream (`GET /v1/jobs/{id}/events`, shared/events.ts) as an async iterator of
 * parsed {@link JobEvent}s, read as Server-Sent Events over `fetch` so it can send the
 * `Authorization` header (EventSource cannot) and runs in browsers and Node alike.
 *
 * It resumes by itself: a dropped, stalled or cleanly closed connection before the terminal event
 * is reopened with jittered backoff and `Last-Event-ID`, and an event already yielded is never
 * yielded again (ids are `<generation>.<sequence>`; a server that resends one is ignored). A
 * `status` with `reset: true` (the server could not resume) is passed through. The iterator ends
 * after `succeeded`, `failed`, `cancelled` or `expired`.
 */
import { JobEvent, TERMINAL_EVENTS, type JobEventName } from "../shared/events.ts";
import { FloodgateApiError, FloodgateNetworkError, MalformedAnswerError } from "./errors.ts";
import { anySignal, isRetryable, type Http } from "./http.ts";
import { pollEvents } from "./poll.ts";
import { backoffMs, sleep, type Backoff } from "./retry.ts";
import { SseParser, type SseMessage } from "./sse.ts";

export interface EventsOptions {
  /** Resume after this event (an id from an earlier stream). */
  lastEventId?: string | undefined;
  /** Stops the stream; the iterator then rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
  /**
   * A connection that sends nothing for this long is taken as dead and reopened (ms). The edge
   * sends a keep-alive comment every 15 s. Default 45 000.
   */
  idleTimeoutMs?: number | undefined;
  /** Reconnects in a row without receiving anything before giving up. Default 10. */
  maxReconnects?: number | undefined;
  /** Delays between reconnects; the server's `retry:` raises the first one. Default 0.25 s → 10 s. */
  backoff?: Backoff | undefined;
  /**
   * When the edge has no events route (404 `not_found`, an older edge), follow the job by polling
   * `GET /v1/jobs/{id}` instead, with events made from what changed. Default true.
   */
  pollFallback?: boolean | undefined;
  /** Polling interval of the fallback (ms). Default 1 000. */
  pollIntervalMs?: number | undefined;
}

const KNOWN = new Set<string>(["status", "progress", "preview", "log", "succeeded", "failed", "cancelled", "expired"]);
/** Ids remembered per generation to drop resent events. */
const SEEN_LIMIT = 4096;

function seqOf(id: string): { gen: string; seq: number } | undefined {
  const dot = id.lastIndexOf(".");
  if (dot <= 0) return undefined;
  const seq = Number(id.slice(dot + 1));
  return Number.isSafeInteger(seq) ? { gen: id.slice(0, dot), seq } : undefined;
}

/**
 * Remembers what was yielded: the ids seen in the current generation (to drop a resent one) and
 * the highest of them (what to resume after). A `reset` snapshot may be followed by older ids
 * of the new state (the latest progress, the terminal event), so order alone cannot decide.
 */
class Cursor {
  /** What to send as `Last-Event-ID`: the highest id of the current generation. */
  resumeId: string | undefined;
  private gen: string | undefined;
  private maxSeq = -1;
  /** Ids at or below this sequence count as seen even once forgotten (the set is bounded). */
  private floor = -1;
  private readonly seen = new Set<string>();

  constructor(lastEventId: string | undefined) {
    if (lastEventId) this.note(lastEventId);
  }

  /** Whether `id` was already yielded. */
  has(id: string): boolean {
    const s = seqOf(id);
    if (s === undefined || s.gen !== this.gen) return id === this.resumeId;
    return s.seq <= this.floor || this.seen.has(id);
  }

  note(id: string): void {
    const s = seqOf(id);
    if (!s) {
      this.resumeId = id;
      return;
    }
    if (s.gen !== this.gen) {
      this.gen = s.gen;
      this.maxSeq = -1;
      this.floor = -1;
      this.seen.clear();
    }
    this.seen.add(id);
    if (this.seen.size > SEEN_LIMIT) {
      // Forget the older half; everything up to it counts as seen from now on.
      const seqs = [...this.seen].map((x) => seqOf(x)?.seq ?? -1).sort((a, b) => a - b);
      this.floor = Math.max(this.floor, seqs[Math.floor(seqs.length / 2)] ?? -1);
      for (const x of this.seen) if ((seqOf(x)?.seq ?? -1) <= this.floor) this.seen.delete(x);
    }
    if (s.seq > this.maxSeq) {
      this.maxSeq = s.seq;
      this.resumeId = id;
    }
  }

  /** A reset snapshot: the server starts afresh, so what was seen before no longer counts. */
  reset(id: string): void {
    this.gen = undefined;
    this.note(id);
  }
}

/** Decodes one SSE message; `undefined` for events this SDK does not know (added later). */
function decode(m: SseMessage, path: string): JobEvent | undefined {
  if (!KNOWN.has(m.event)) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(m.data);
  } catch (err) {
    throw new MalformedAnswerError(`${path}: the data of a ${m.event} event is not JSON`, { status: 200, cause: err });
  }
  const parsed = JobEvent.safeParse({ id: m.id, event: m.event, data });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new MalformedAnswerError(
      `${path}: a ${m.event} event does not match its schema: ${issue?.path.join(".") ?? ""}: ${issue?.message ?? "invalid"}`,
      { status: 200, cause: parsed.error },
    );
  }
  return parsed.data;
}

/** Whether an event ends the stream. */
export function isTerminalEvent(e: JobEvent): boolean {
  return TERMINAL_EVENTS.includes(e.event as JobEventName);
}

/** Why a connection stopped, when it was not the caller's doing. */
class Idle extends Error {}

/**
 * Follows a job's events; see the module comment. Throws {@link FloodgateApiError} for answers
 * that retrying cannot fix (401, 404 `job_not_found`, …), {@link FloodgateNetworkError} after
 * `maxReconnects` fruitless reconnects, {@link MalformedAnswerError} for an event that fails its
 * schema, and the signal's reason when the caller aborts.
 */
export async function* followEvents(
  http: Http,
  jobId: string,
  opts: EventsOptions = {},
): AsyncGenerator<JobEvent, void, undefined> {
  const path = `/v1/jobs/${encodeURIComponent(jobId)}/events`;
  const idleMs = opts.idleTimeoutMs ?? 45_000;
  const maxReconnects = opts.maxReconnects ?? 10;
  const cursor = new Cursor(opts.lastEventId);
  const parser = new SseParser();
  let backoff = opts.backoff ?? { baseMs: 250, maxMs: 10_000 };
  let failures = 0;
  let lastError: unknown;

  for (;;) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    if (failures > 0) {
      if (failures > maxReconnects) {
        throw new FloodgateNetworkError(
          `the event stream of ${jobId} was lost ${failures} times in a row; last: ${(lastError as Error)?.message ?? "closed"}`,
          { timedOut: false, cause: lastError },
        );
      }
      const retryAfterMs =
        lastError instanceof FloodgateApiError && lastError.retryAfterS !== undefined
          ? lastError.retryAfterS * 1000
          : 0;
      await sleep(Math.max(retryAfterMs, backoffMs(failures - 1, backoff)), opts.signal);
    }

    const conn = new AbortController();
    const signal = anySignal([opts.signal, conn.signal]);
    let res: Response;
    try {
      const headers: Record<string, string> = { accept: "text/event-stream", "cache-control": "no-store" };
      if (cursor.resumeId !== undefined) headers["last-event-id"] = cursor.resumeId;
      res = await http.open(path, { headers, signal });
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      if (
        err instanceof FloodgateApiError &&
        err.status === 404 &&
        err.code === "not_found" &&
        (opts.pollFallback ?? true)
      ) {
        // An edge without the events route: follow by polling, with the same promises.
        yield* pollEvents(http, jobId, { signal: opts.signal, intervalMs: opts.pollIntervalMs });
        return;
      }
      if (!isRetryable(err)) throw err;
      lastError = err;
      failures++;
      continue;
    }
    const type = res.headers.get("content-type") ?? "";
    if (!/^text\/event-stream\b/i.test(type) || res.body === null) {
      await res.body?.cancel().catch(() => undefined);
      throw new MalformedAnswerError(
        `${path} answered ${res.status} with ${type || "no content type"}, not an event stream`,
        {
          status: res.status,
          requestId: res.headers.get("x-request-id") ?? undefined,
        },
      );
    }

    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    parser.reset();
    let idle: ReturnType<typeof setTimeout> | undefined;
    const arm = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => conn.abort(new Idle(`no data for ${idleMs} ms`)), idleMs);
    };
    arm();
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (opts.signal?.aborted) throw opts.signal.reason;
          lastError = conn.signal.aborted ? conn.signal.reason : err;
          failures++;
          break;
        }
        if (chunk.done) {
          // Closed before the terminal event (a restart, a slow subscriber dropped): resume.
          lastError = new Error("the server closed the stream before the job ended");
          failures++;
          break;
        }
        arm();
        // Anything received, a keep-alive comment included, shows the connection works.
        failures = 0;
        const messages = parser.feed(decoder.decode(chunk.value, { stream: true }));
        if (parser.retryMs !== undefined && parser.retryMs > 0) {
          backoff = { ...backoff, baseMs: Math.max(backoff.baseMs, Math.min(parser.retryMs, backoff.maxMs)) };
        }
        for (const m of messages) {
          const event = decode(m, path);
          if (event === undefined) {
            if (m.id) cursor.note(m.id);
            continue;
          }
          const isReset = event.event === "status" && event.data.reset === true;
          if (!isReset && m.id && cursor.has(m.id)) continue;
          if (isReset) cursor.reset(m.id);
          else if (m.id) cursor.note(m.id);
          yield event;
          if (isTerminalEvent(event)) return;
        }
      }
    } finally {
      clearTimeout(idle);
      // Ends the connection whichever way we leave: terminal event, error, or the caller's break.
      conn.abort(new Idle("stream closed by the client"));
      await reader.cancel().catch(() => undefined);
    }
  }
}
