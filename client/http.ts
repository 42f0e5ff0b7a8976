/**
 * The SDK's one way to talk HTTP: a base URL and a bearer key, a deadline on every request,
 * error answers turned into {@link FloodgateApiError}, answers checked against their shared zod
 * schema, and retries (jittered backoff, `Retry-After` honoured) for requests that are safe to
 * repeat. Uses only `fetch`, so it runs in browsers, Node, Deno and Workers.
 */
import type { z } from "zod";
import { ERROR_CODES, type ErrorCode } from "../shared/errors.ts";
import { ErrorAnswer } from "../shared/api.ts";
import { FloodgateApiError, FloodgateNetworkError, MalformedAnswerError } from "./errors.ts";
import { backoffMs, DEFAULT_BACKOFF, sleep } from "./retry.ts";

/** What a client needs to reach the edge. */
export interface HttpOptions {
  /** The edge's base URL, e.g. `https://floodgate.example.com` or `http://127.0.0.1:8787`. */
  url: string;
  /** The bearer key: a user API key (`fgk_…`) or, for the admin client, the admin key. */
  key: string;
  /** A `fetch` to use instead of the global one (tests, proxies, instrumentation). */
  fetch?: typeof fetch | undefined;
  /** Deadline of one request, answer body included (ms). Default 30 000. */
  timeoutMs?: number | undefined;
  /** Extra attempts for requests safe to repeat (reads, cancels, keyed submits). Default 2. */
  retries?: number | undefined;
}

export interface RequestOptions {
  method?: "GET" | "POST" | "PUT" | "DELETE";
  body?: unknown;
  /** Raw bytes to send instead of a JSON body (`application/octet-stream`). */
  bytes?: Uint8Array<ArrayBuffer>;
  headers?: Record<string, string>;
  signal?: AbortSignal | undefined;
  /** Whether sending the request twice does no harm (so it may be retried). */
  idempotent?: boolean;
  /** Overrides the client's deadline for this request (ms). */
  timeoutMs?: number | undefined;
}

export const DEFAULT_TIMEOUT_MS = 30_000;
/** The longest `Retry-After` the SDK waits out by itself (ms); past it the error goes to the caller. */
const MAX_RETRY_AFTER_MS = 30_000;

/** Statuses worth another try of a request that is safe to repeat. */
function retryableStatus(status: number): boolean {
  return status === 429 || status === 500 || status === 502 || status === 503 || status === 504;
}

/** Whether an error from {@link Http.request} is worth retrying. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof FloodgateNetworkError) return true;
  if (err instanceof FloodgateApiError) return retryableStatus(err.status);
  return false;
}

/** The code the edge would have used for a status, for error answers without a JSON body (proxies). */
function codeForStatus(status: number): string {
  const found = (Object.entries(ERROR_CODES) as [ErrorCode, number][]).find(([, s]) => s === status);
  if (found) return found[0];
  return status >= 500 ? "unavailable" : "bad_request";
}

function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value);
  // RFC 9110 §10.2.3: an HTTP date is allowed too.
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/** Turns a non-2xx answer into a {@link FloodgateApiError}, reading its `{"error":…}` body. */
export async function apiError(res: Response): Promise<FloodgateApiError> {
  const requestId = res.headers.get("x-request-id") ?? undefined;
  const retryAfterS = parseRetryAfter(res.headers.get("retry-after"));
  const text = await res.text().catch(() => "");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const parsed = ErrorAnswer.safeParse(json);
  if (parsed.success) {
    return new FloodgateApiError({ status: res.status, ...parsed.data.error, requestId, retryAfterS });
  }
  const snippet = text.replace(/\s+/g, " ").trim().slice(0, 200);
  return new FloodgateApiError({
    status: res.status,
    code: codeForStatus(res.status),
    message: `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}${snippet ? `: ${snippet}` : ""}`,
    requestId,
    retryAfterS,
  });
}

/** A signal that aborts when any of `signals` does (`AbortSignal.any` where present). */
export function anySignal(signals: (AbortSignal | undefined)[]): AbortSignal {
  const list = signals.filter((s): s is AbortSignal => s !== undefined);
  if (typeof AbortSignal.any === "function") return AbortSignal.any(list);
  const ctl = new AbortController();
  for (const s of list) {
    if (s.aborted) {
      ctl.abort(s.reason);
      break;
    }
    s.addEventListener("abort", () => ctl.abort(s.reason), { once: true });
  }
  return ctl.signal;
}

/** The reason a deadline timer aborts with, told apart from a caller's abort. */
class DeadlineReached extends Error {}

export class Http {
  readonly baseUrl: string;
  private readonly key: string;
  private readonly fetchFn: typeof fetch;
  readonly timeoutMs: number;
  readonly retries: number;

  constructor(opts: HttpOptions) {
    let base: URL;
    try {
      base = new URL(opts.url);
    } catch {
      throw new TypeError(`not a URL: ${JSON.stringify(opts.url)}`);
    }
    if (base.protocol !== "http:" && base.protocol !== "https:") {
      throw new TypeError(`the edge URL must be http or https, not ${base.protocol}`);
    }
    this.baseUrl = base.href.replace(/\/+$/, "");
    this.key = opts.key;
    // Bound to globalThis: some runtimes refuse a fetch called on another receiver.
    this.fetchFn = opts.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.retries = opts.retries ?? 2;
  }

  /** The absolute URL of an API path (`/v1/…`). */
  url(path: string): string {
    return this.baseUrl + path;
  }

  /**
   * Sends a request once, with a deadline on the headers only (the caller reads the body, and
   * owns the deadline of a stream). Non-2xx answers become {@link FloodgateApiError}.
   */
  async open(path: string, opts: RequestOptions & { signal?: AbortSignal | undefined }): Promise<Response> {
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const timer = new AbortController();
    const t = setTimeout(() => timer.abort(new DeadlineReached()), timeoutMs);
    const signal = anySignal([opts.signal, timer.signal]);
    const headers: Record<string, string> = { authorization: `Bearer ${this.key}`, ...opts.headers };
    let body: string | Uint8Array<ArrayBuffer> | undefined;
    if (opts.bytes !== undefined) {
      headers["content-type"] = "application/octet-stream";
      body = opts.bytes;
    } else if (opts.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(opts.body);
    }
    try {
      const res = await this.fetchFn(this.url(path), { method: opts.method ?? "GET", headers, body, signal });
      if (!res.ok) throw await apiError(res);
      return res;
    } catch (err) {
      throw this.translate(err, opts.signal, timer.signal, timeoutMs, path);
    } finally {
      clearTimeout(t);
    }
  }

  /** Maps fetch failures to SDK errors; a caller's own abort passes through as its reason. */
  private translate(
    err: unknown,
    callerSignal: AbortSignal | undefined,
    timerSignal: AbortSignal,
    timeoutMs: number,
    path: string,
  ): unknown {
    if (err instanceof FloodgateApiError || err instanceof MalformedAnswerError) return err;
    if (callerSignal?.aborted) return callerSignal.reason;
    if (timerSignal.aborted) {
      return new FloodgateNetworkError(`no answer from ${this.url(path)} within ${timeoutMs} ms`, {
        timedOut: true,
        cause: err,
      });
    }
    return new FloodgateNetworkError(`could not reach ${this.url(path)}: ${(err as Error)?.message ?? String(err)}`, {
      timedOut: false,
      cause: err,
    });
  }

  /**
   * Sends a request and parses its JSON answer with `schema`; retries what is safe to retry.
   * A 204 answers `undefined` when the schema allows it.
   */
  async request<S extends z.ZodType>(path: string, schema: S, opts: RequestOptions = {}): Promise<z.infer<S>> {
    const attempts = opts.idempotent ? this.retries + 1 : 1;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once(path, schema, opts);
      } catch (err) {
        if (attempt + 1 >= attempts || !isRetryable(err) || opts.signal?.aborted) throw err;
        const retryAfterMs =
          err instanceof FloodgateApiError && err.retryAfterS !== undefined ? err.retryAfterS * 1000 : 0;
        if (retryAfterMs > MAX_RETRY_AFTER_MS) throw err;
        await sleep(Math.max(retryAfterMs, backoffMs(attempt, DEFAULT_BACKOFF)), opts.signal);
      }
    }
  }

  private async once<S extends z.ZodType>(path: string, schema: S, opts: RequestOptions): Promise<z.infer<S>> {
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    // One deadline for headers and body: a stalled body must not hang the caller.
    const timer = new AbortController();
    const t = setTimeout(() => timer.abort(new DeadlineReached()), timeoutMs);
    const signal = anySignal([opts.signal, timer.signal]);
    try {
      const res = await this.open(path, { ...opts, signal, timeoutMs: timeoutMs + 1000 });
      const requestId = res.headers.get("x-request-id") ?? undefined;
      const text = await res.text();
      let json: unknown = undefined;
      if (text !== "") {
        try {
          json = JSON.parse(text);
        } catch (err) {
          throw new MalformedAnswerError(
            `${opts.method ?? "GET"} ${path} answered ${res.status} with a body that is not JSON`,
            {
              status: res.status,
              requestId,
              cause: err,
            },
          );
        }
      }
      const parsed = schema.safeParse(json);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        const where = issue && issue.path.length > 0 ? issue.path.join(".") : "the body";
        throw new MalformedAnswerError(
          `${opts.method ?? "GET"} ${path} answered ${res.status} with an unexpected body: ${where}: ${issue?.message ?? "invalid"}`,
          { status: res.status, requestId, cause: parsed.error },
        );
      }
      return parsed.data;
    } catch (err) {
      throw this.translate(err, opts.signal, timer.signal, timeoutMs, path);
    } finally {
      clearTimeout(t);
    }
  }
}
