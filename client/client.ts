/**
 * The user client: jobs (submit, batch, read, list, cancel, delete, stream tokens, events) and
 * `run`, which submits and waits. Bodies are typed by the shared zod schemas and every answer is
 * parsed with them.
 */
import { z } from "zod";
import { BatchAnswer, BatchBody, JobList, JobView, SubmitAnswer, type SubmitBody } from "../shared/api.ts";
import { StreamTokenAnswer, type JobEvent } from "../shared/events.ts";
import type { JobStatus } from "../shared/job.ts";
import { followEvents, type EventsOptions } from "./events.ts";
import { filesApi, uploadInputFiles, type FilesApi, type UploadProgress } from "./files.ts";
import { Http } from "./http.ts";
import { waitForJob, type RunResult, type WaitOptions } from "./run.ts";
import { usagePath, type UsageOptions } from "./usage.ts";
import { webhooksApi, type WebhooksApi } from "./webhooks.ts";
import { UsageAnswer } from "../shared/usage.ts";
import type { JobWebhook } from "../shared/webhooks.ts";

export interface ClientOptions {
  /** The edge's base URL, e.g. `https://floodgate.example.com`. */
  url: string;
  /** A user API key (`fgk_…`). */
  apiKey: string;
  /** A `fetch` to use instead of the global one. */
  fetch?: typeof fetch | undefined;
  /** Deadline of one HTTP request (ms); streams have their own. Default 30 000. */
  timeoutMs?: number | undefined;
  /** Extra attempts for requests safe to repeat (reads, cancels, keyed submits). Default 2. */
  retries?: number | undefined;
}

/** Options of a submit, besides the model and its input. */
export interface SubmitOptions {
  /**
   * The same key and body within 24 h return the same job, so a submit retried after a network
   * error never makes two. With a key, the SDK retries the submit by itself.
   */
  idempotencyKey?: string | undefined;
  metadata?: SubmitBody["metadata"];
  /** After this time the result is no longer wanted. */
  deadline?: string | Date | undefined;
  /** A model version to pin. */
  version?: string | undefined;
  /**
   * A URL told of the job's status changes, or `{url, events}` for some of them; signed with
   * the account's job-webhook secret (`webhooks.jobSecret()`).
   */
  webhook?: JobWebhook | undefined;
  /** How the uploads of the input's files go (a Blob, File or `localFile(path)` value is uploaded first). */
  onUploadProgress?: ((p: UploadProgress) => void) | undefined;
  signal?: AbortSignal | undefined;
}

export interface RunOptions extends SubmitOptions, Omit<WaitOptions, "signal"> {
  /** Called with the job id once the job is durable, before any waiting. */
  onSubmitted?: ((id: string) => void | Promise<void>) | undefined;
}

export interface ListOptions {
  status?: JobStatus | undefined;
  /** 1–100; default 20. */
  limit?: number | undefined;
  /** `next_cursor` of the previous page. */
  cursor?: string | undefined;
  signal?: AbortSignal | undefined;
}

/** One job of a batch submit: a submit body with its own optional idempotency key. */
export type BatchJob = z.input<typeof BatchBody>["jobs"][number];

export interface FloodgateClient {
  jobs: {
    /**
     * Submits one job; answers at once with its id (202). Input values that are a `Blob` or
     * `File`, or `localFile(path)`, are uploaded first (`files.upload`) and sent as their file ids.
     */
    submit(model: string, input: Record<string, unknown>, opts?: SubmitOptions): Promise<SubmitAnswer>;
    /** Submits up to 100 jobs; each is answered on its own, in order. */
    submitBatch(model: string, jobs: BatchJob[], opts?: { signal?: AbortSignal }): Promise<BatchAnswer>;
    get(id: string, opts?: { signal?: AbortSignal }): Promise<JobView>;
    /** One page, newest first; pass `next_cursor` back as `cursor` for the next. */
    list(opts?: ListOptions): Promise<JobList>;
    /** Cancels the job (idempotent) and answers it as it now is. */
    cancel(id: string, opts?: { signal?: AbortSignal }): Promise<JobView>;
    /** Deletes a finished job and its outputs; `job_not_finished` (409) otherwise. */
    delete(id: string, opts?: { signal?: AbortSignal }): Promise<void>;
    /** A short-lived token for this job's events, for browsers (`?token=`). */
    streamToken(id: string, opts?: { signal?: AbortSignal }): Promise<z.infer<typeof StreamTokenAnswer>>;
    /** The job's events, resuming by itself; ends after the terminal event. */
    events(id: string, opts?: EventsOptions): AsyncGenerator<JobEvent, void, undefined>;
    /** Waits for the job's end: its outputs, or a typed error (failed, cancelled, expired, timeout). */
    wait(id: string, opts?: WaitOptions): Promise<RunResult>;
  };
  /**
   * Submits a job and waits for its end. An idempotency key is made when none is given, so the
   * submit can be retried safely; `onSubmitted(id)` is called before any waiting; the wait has a
   * deadline (`timeoutMs`, default 15 min) and a timeout rejects with the job id.
   */
  run(model: string, input: Record<string, unknown>, opts?: RunOptions): Promise<RunResult>;
  /** The account's webhook endpoints, its jobs' webhook secret, and jobs' deliveries. */
  webhooks: WebhooksApi;
  /** The account's input files: upload (in parts, resumable), get, list, delete. */
  files: FilesApi;
  /** The account's usage: GPU-seconds executing, attempts, jobs by outcome, output bytes, per model (or version, or day). */
  usage(opts?: UsageOptions): Promise<UsageAnswer>;
}

/** A fresh idempotency key: 128 random bits (Web Crypto, present in browsers and Node). */
export function newIdempotencyKey(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return `fgc_${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function jobPath(id: string, rest = ""): string {
  return `/v1/jobs/${encodeURIComponent(id)}${rest}`;
}

/**
 * Makes a user client.
 *
 * @example
 * const fg = createClient({ url: "http://127.0.0.1:8787", apiKey: process.env.FLOODGATE_API_KEY! });
 * const { id, outputs } = await fg.run("demo", { prompt: "a red fox" }, {
 *   onSubmitted: (id) => console.log("job", id),
 *   onEvent: (e) => e.event === "progress" && console.log(`${e.data.step}/${e.data.total}`),
 * });
 */
export function createClient(opts: ClientOptions): FloodgateClient {
  const http = new Http({
    url: opts.url,
    key: opts.apiKey,
    fetch: opts.fetch,
    timeoutMs: opts.timeoutMs,
    retries: opts.retries,
  });

  const files = filesApi(http);

  const submit = async (
    model: string,
    given: Record<string, unknown>,
    o: SubmitOptions = {},
  ): Promise<SubmitAnswer> => {
    const input = await uploadInputFiles(files, given, { onProgress: o.onUploadProgress, signal: o.signal });
    const body: SubmitBody = { input };
    if (o.metadata !== undefined) body.metadata = o.metadata;
    if (o.deadline !== undefined) body.deadline = o.deadline instanceof Date ? o.deadline.toISOString() : o.deadline;
    if (o.version !== undefined) body.version = o.version;
    if (o.webhook !== undefined) body.webhook = o.webhook;
    const headers: Record<string, string> = {};
    if (o.idempotencyKey !== undefined) headers["idempotency-key"] = o.idempotencyKey;
    return await http.request(`/v1/models/${encodeURIComponent(model)}/jobs`, SubmitAnswer, {
      method: "POST",
      body,
      headers,
      signal: o.signal,
      idempotent: o.idempotencyKey !== undefined,
    });
  };

  const jobs: FloodgateClient["jobs"] = {
    submit,
    submitBatch: (model, list, o = {}) =>
      http.request(`/v1/models/${encodeURIComponent(model)}/jobs/batch`, BatchAnswer, {
        method: "POST",
        body: { jobs: list },
        signal: o.signal,
        // Only a batch whose every job carries a key can be sent twice without making twins.
        idempotent: list.length > 0 && list.every((j) => j.idempotency_key !== undefined),
      }),
    get: (id, o = {}) => http.request(jobPath(id), JobView, { signal: o.signal, idempotent: true }),
    list: (o = {}) => {
      const q = new URLSearchParams();
      if (o.status !== undefined) q.set("status", o.status);
      if (o.limit !== undefined) q.set("limit", String(o.limit));
      if (o.cursor !== undefined) q.set("cursor", o.cursor);
      const qs = q.toString();
      return http.request(`/v1/jobs${qs ? `?${qs}` : ""}`, JobList, { signal: o.signal, idempotent: true });
    },
    cancel: (id, o = {}) =>
      http.request(jobPath(id, "/cancel"), JobView, { method: "POST", signal: o.signal, idempotent: true }),
    delete: async (id, o = {}) => {
      await http.request(jobPath(id), z.undefined(), { method: "DELETE", signal: o.signal, idempotent: true });
    },
    streamToken: (id, o = {}) =>
      http.request(jobPath(id, "/stream-token"), StreamTokenAnswer, {
        method: "POST",
        signal: o.signal,
        idempotent: true,
      }),
    events: (id, o) => followEvents(http, id, o),
    wait: (id, o) => waitForJob((signal) => followEvents(http, id, { ...o?.events, signal }), id, o),
  };

  return {
    jobs,
    files,
    webhooks: webhooksApi(http),
    usage: (o = {}) => http.request(usagePath("/v1/usage", o), UsageAnswer, { signal: o.signal, idempotent: true }),
    run: async (model, input, o = {}) => {
      const { onSubmitted, onEvent, timeoutMs, events, ...submitOpts } = o;
      const answer = await submit(model, input, {
        ...submitOpts,
        idempotencyKey: submitOpts.idempotencyKey ?? newIdempotencyKey(),
      });
      await onSubmitted?.(answer.id);
      return await jobs.wait(answer.id, { onEvent, timeoutMs, events, signal: o.signal });
    },
  };
}
