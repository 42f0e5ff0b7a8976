/**
 * The errors the SDK throws. Every HTTP error answer becomes a {@link FloodgateApiError} whose
 * `code` comes from the shared error table (callers switch on it, never on the message); a
 * job's unhappy end becomes a typed error that carries the job id, so a caller can always come
 * back for the job.
 */
import type { ErrorCode } from "../shared/errors.ts";

/** Base class of every error the SDK throws on purpose. */
export class FloodgateClientError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * The edge answered with an error (`{"error":{"code","message"}}`).
 *
 * @example
 * try { await fg.jobs.get(id) } catch (err) {
 *   if (err instanceof FloodgateApiError && err.code === "job_not_found") …
 * }
 */
export class FloodgateApiError extends FloodgateClientError {
  /** HTTP status. */
  readonly status: number;
  /** A code of shared/errors.ts (codes are only ever added, so unknown ones may arrive). */
  readonly code: ErrorCode | (string & {});
  /** The answer's `X-Request-Id`, to report with a bug. */
  readonly requestId: string | undefined;
  /** Seconds to wait before retrying (`Retry-After`), on 429 and 503. */
  readonly retryAfterS: number | undefined;

  constructor(init: {
    status: number;
    code: string;
    message: string;
    requestId?: string | undefined;
    retryAfterS?: number | undefined;
  }) {
    super(init.message);
    this.status = init.status;
    this.code = init.code;
    this.requestId = init.requestId;
    this.retryAfterS = init.retryAfterS;
  }
}

/** The request never got an answer: the connection failed, or the request timed out. */
export class FloodgateNetworkError extends FloodgateClientError {
  /** True when the SDK gave up waiting (`timeoutMs`), false when the connection failed. */
  readonly timedOut: boolean;

  constructor(message: string, init: { timedOut: boolean; cause?: unknown }) {
    super(message, { cause: init.cause });
    this.timedOut = init.timedOut;
  }
}

/** The edge answered something that does not match its schema: a bug on one side, never cast. */
export class MalformedAnswerError extends FloodgateClientError {
  readonly status: number;
  readonly requestId: string | undefined;

  constructor(message: string, init: { status: number; requestId?: string | undefined; cause?: unknown }) {
    super(message, { cause: init.cause });
    this.status = init.status;
    this.requestId = init.requestId;
  }
}

/** The job ended `failed`. */
export class JobFailedError extends FloodgateClientError {
  readonly jobId: string;
  /** Why: `oom`, `model_error`, `max_attempts`, `worker_lost`, … */
  readonly code: string;

  constructor(jobId: string, code: string, message: string) {
    super(`job ${jobId} failed (${code}): ${message}`);
    this.jobId = jobId;
    this.code = code;
  }
}

/** The job ended `cancelled`. */
export class JobCancelledError extends FloodgateClientError {
  readonly jobId: string;

  constructor(jobId: string) {
    super(`job ${jobId} was cancelled`);
    this.jobId = jobId;
  }
}

/** The job ended `expired`: its queue TTL ran out before any agent took it. */
export class JobExpiredError extends FloodgateClientError {
  readonly jobId: string;
  readonly code: string;

  constructor(jobId: string, code: string, message: string) {
    super(`job ${jobId} expired (${code}): ${message}`);
    this.jobId = jobId;
    this.code = code;
  }
}

/**
 * A wait passed its deadline. The job goes on; `jobId` says where to come back for the result
 * (`jobs.get`, `jobs.events`).
 */
export class TimeoutError extends FloodgateClientError {
  readonly jobId: string;
  /** The deadline that passed (ms). */
  readonly timeoutMs: number;

  constructor(jobId: string, timeoutMs: number) {
    super(`job ${jobId} did not finish within ${timeoutMs} ms; it goes on — read it later by its id`);
    this.jobId = jobId;
    this.timeoutMs = timeoutMs;
  }
}
