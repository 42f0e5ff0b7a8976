/**
 * Waiting for a job's end over its event stream, with a deadline: the outputs on `succeeded`,
 * a typed error on `failed`, `cancelled` or `expired`, and a {@link TimeoutError} carrying the
 * job id when the deadline passes first (the job goes on; the caller can come back for it).
 */
import type { z } from "zod";
import { assertExhaustive } from "../shared/errors.ts";
import type { JobEvent, OutputView } from "../shared/events.ts";
import { FloodgateClientError, JobCancelledError, JobExpiredError, JobFailedError, TimeoutError } from "./errors.ts";
import type { EventsOptions } from "./events.ts";
import { anySignal } from "./http.ts";

/** Default deadline of a wait (ms): 15 minutes. */
export const DEFAULT_WAIT_MS = 15 * 60_000;

export interface WaitOptions {
  /** Called with every event, in order; a returned promise is awaited before the next. */
  onEvent?: ((event: JobEvent) => void | Promise<void>) | undefined;
  /** How long to wait for the end, from now (ms). Default 15 minutes. */
  timeoutMs?: number | undefined;
  /** Stops waiting (the job goes on); rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
  /** Stream tuning: idle timeout, reconnects, backoff, polling fallback. */
  events?: Omit<EventsOptions, "signal" | "lastEventId"> | undefined;
}

export interface RunResult {
  id: string;
  outputs: z.infer<typeof OutputView>[];
}

class Deadline extends Error {}

/**
 * Follows `follow(signal)` until a terminal event; see the module comment.
 *
 * @example
 * const { outputs } = await waitForJob((signal) => followEvents(http, id, { signal }), id, { timeoutMs: 60_000 });
 */
export async function waitForJob(
  follow: (signal: AbortSignal) => AsyncIterable<JobEvent>,
  jobId: string,
  opts: WaitOptions = {},
): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_WAIT_MS;
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new Deadline()), timeoutMs);
  const signal = anySignal([opts.signal, deadline.signal]);
  try {
    for await (const event of follow(signal)) {
      await opts.onEvent?.(event);
      switch (event.event) {
        case "succeeded":
          return { id: jobId, outputs: event.data.outputs };
        case "failed":
          throw new JobFailedError(jobId, event.data.error.code, event.data.error.message);
        case "cancelled":
          throw new JobCancelledError(jobId);
        case "expired":
          throw new JobExpiredError(jobId, event.data.error.code, event.data.error.message);
        case "status":
        case "progress":
        case "preview":
        case "log":
          break;
        default:
          assertExhaustive(event);
      }
      if (signal.aborted) break;
    }
    if (deadline.signal.aborted && !opts.signal?.aborted) throw new TimeoutError(jobId, timeoutMs);
    if (opts.signal?.aborted) throw opts.signal.reason;
    throw new Error(`the event stream of ${jobId} ended without a terminal event`);
  } catch (err) {
    // Aborts surface as the signal's reason; anything else the SDK throws on purpose stands.
    if (err instanceof Deadline || (deadline.signal.aborted && !(err instanceof FloodgateClientError))) {
      throw new TimeoutError(jobId, timeoutMs);
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
