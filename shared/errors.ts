/**
 * The one table of error codes that cross a wire. The edge renders every error as
 * `{"error":{"code","message"}}` with the HTTP status listed here; agents, the client SDK and
 * the CLI switch on `code`, never on the message, so codes are stable and only ever added.
 */
export const ERROR_CODES = {
  bad_request: 400,
  invalid_body: 400,
  invalid_input: 400,
  invalid_query: 400,
  invalid_upload: 400,
  unauthorized: 401,
  forbidden: 403,
  agent_id_taken: 403,
  not_found: 404,
  upload_not_found: 404,
  model_not_found: 404,
  job_not_found: 404,
  account_not_found: 404,
  method_not_allowed: 405,
  idempotency_conflict: 409,
  job_not_finished: 409,
  conflict: 409,
  stale_lease: 409,
  payload_too_large: 413,
  upgrade_required: 426,
  unsupported_media_type: 415,
  rate_limited: 429,
  overloaded: 429,
  too_many_streams: 429,
  internal: 500,
  unavailable: 503,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The JSON body of every error answer. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string };
}

/**
 * An expected failure with a stable code. Thrown inside the edge and rendered by its one error
 * handler; returned as a value (`{ ok: false, error }`) across actor RPC, where exceptions lose
 * their class.
 *
 * @example
 * throw new FloodgateError("job_not_found", `no job ${id}`);
 */
export class FloodgateError extends Error {
  readonly code: ErrorCode;
  /** Seconds the caller should wait before retrying (`Retry-After`), for 429 and 503. */
  readonly retryAfterS: number | undefined;

  constructor(code: ErrorCode, message: string, retryAfterS?: number) {
    super(message);
    this.name = "FloodgateError";
    this.code = code;
    this.retryAfterS = retryAfterS;
  }

  get status(): number {
    return ERROR_CODES[this.code];
  }

  toBody(): ErrorBody {
    return { error: { code: this.code, message: this.message } };
  }
}

/** An expected failure carried as a value across actor RPC. */
export interface Failure {
  ok: false;
  code: ErrorCode;
  message: string;
  retry_after_s?: number;
}

/** Either a value or an expected failure; what actor RPC methods return. */
export type Result<T> = ({ ok: true } & T) | Failure;

/** Builds a {@link Failure}. */
export function fail(code: ErrorCode, message: string, retryAfterS?: number): Failure {
  return retryAfterS === undefined
    ? { ok: false, code, message }
    : { ok: false, code, message, retry_after_s: retryAfterS };
}

/** Marks a switch as exhaustive: the compiler proves `x` can never arrive here. */
export function assertExhaustive(x: never): never {
  throw new Error(`unexpected value: ${JSON.stringify(x)}`);
}
