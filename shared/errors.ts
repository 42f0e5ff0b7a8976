/**
 * The one table of error codes that cross a wire. The edge renders every error as
 * `{"error":{"code","message"}}` with the HTTP status listed here; agents, the client SDK and
 * the CLI switch on `code`, never on the message, so codes are stable and only ever added.
 * What each code means is {@link ERROR_WHEN}; docs/protocol.md's error table is generated from
 * both (test/gen-golden.ts).
 */
export const ERROR_CODES = {
  bad_request: 400,
  invalid_body: 400,
  invalid_input: 400,
  invalid_query: 400,
  invalid_upload: 400,
  invalid_webhook: 400,
  unauthorized: 401,
  forbidden: 403,
  agent_id_taken: 403,
  not_found: 404,
  upload_not_found: 404,
  file_not_found: 404,
  model_not_found: 404,
  job_not_found: 404,
  account_not_found: 404,
  version_not_found: 404,
  agent_not_found: 404,
  idempotency_conflict: 409,
  job_not_finished: 409,
  conflict: 409,
  file_not_ready: 409,
  stale_lease: 409,
  version_conflict: 409,
  pieces_missing: 409,
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

/** When the edge answers with each code: the "when" column of docs/protocol.md's error table. */
export const ERROR_WHEN: Readonly<Record<ErrorCode, string>> = {
  bad_request:
    "a malformed header or path part (`Idempotency-Key`, `X-Floodgate-Agent`, `X-Floodgate-Instance`, a part number, an output key), a WebSocket upgrade without the agent subprotocol (`floodgate.v2`), or an unknown tier",
  invalid_body: "the body is not JSON, fails its schema, is nested past 64 levels or has a `__proto__` key",
  invalid_input: "`input` fails the model's JSON Schema or the input rules (Jobs, below)",
  invalid_query: "a query parameter or path parameter fails its schema",
  invalid_upload:
    "an upload's parts, size or sha256 are not what was stored: a part shorter than its place implies, etags that do not match, or a complete whose size or SHA-256 differs from the stored bytes' (Output uploads)",
  invalid_webhook:
    "a webhook URL the address guard refuses (not https, credentials in it, a private, loopback, link-local, CGNAT, metadata or internal host), or a job's `webhook` before the account made its job-webhook secret (`POST /v1/webhooks/job-secret`)",
  unauthorized:
    "no key, or an unknown, malformed, forged (no valid MAC), expired or revoked key, agent token or stream token",
  forbidden: "a user key on an admin route, or an output URL whose signature is wrong or expired",
  agent_id_taken: "an agent id bound to another live agent token (Connecting, below)",
  not_found: "no such route, output, preview, key or agent token",
  upload_not_found: "an upload id not started for that key, or already completed",
  file_not_found:
    "no such input file: never uploaded, another account's, deleted or past its retention (the file routes, and a submit whose input names it)",
  model_not_found: "no such model",
  job_not_found: "no such job — also another account's job",
  account_not_found: "no such account",
  agent_not_found: "no agent with that id is connected (admin agent routes: drain, reclaim)",
  version_not_found:
    "no such version of the model, or one not ready yet (some of its pieces are not stored); on agent routes, also a model the agent token does not name",
  idempotency_conflict:
    "an `Idempotency-Key` reused with another body within 24 h, or reused after the job it made was deleted",
  job_not_finished: "deleting a job that has not ended",
  conflict:
    "a state conflict: an account that exists, a registry that holds the most models a job id can name, an output name uploaded twice in one attempt, a purge of a version the rollout desires",
  file_not_ready: "a submit names an input file whose upload has not completed (`POST /v1/files/{id}/complete` first)",
  stale_lease: "an agent's upload names a lease (job id and epoch) the agent does not hold: abandon the job",
  version_conflict:
    "a push names a model and version that exists with other content (another digest): versions are immutable, push it as a new version",
  pieces_missing:
    "committing a version while some of its pieces are not in the store: the message says how many; upload them",
  payload_too_large:
    "a body over 1 MiB, a job `input` over 32 KiB msgpack-encoded (send large inputs as files), an upload part over 64 MiB or past its announced size, or an output over its model's `max_bytes` (an attempt over `max_job_bytes`)",
  upgrade_required: "`GET /v1/agent/connect` without `Upgrade: websocket`",
  unsupported_media_type:
    "a body that is not sent as `application/json`, or an output whose media type its model's `outputs.content_types` does not allow",
  rate_limited:
    "the account is over its rate limit; an agent token over its own (1,200 requests per 10 s); or, for requests refused for their credentials, the client address over its limit",
  too_many_streams: "a job's 500 or an account's 1,000 open event streams are taken",
  overloaded:
    "the tier's projected wait is past its `k × SLO`, or past half of that for an account that already has jobs queued in the tier (a flood is shed first)",
  internal: "a bug; report the `X-Request-Id`",
  unavailable: "the edge is misconfigured (e.g. no signing keys)",
};

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
