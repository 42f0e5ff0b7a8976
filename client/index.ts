/**
 * The Floodgate TypeScript SDK: the public face. Imports `shared/` only and uses nothing but
 * `fetch`, Web Streams, `TextDecoder` and Web Crypto, so the same code runs in browsers and Node.
 *
 * @example
 * import { createClient, JobFailedError, TimeoutError } from "@floodgate/client";
 * const fg = createClient({ url: "http://127.0.0.1:8787", apiKey });
 * try {
 *   const { id, outputs } = await fg.run("demo", { prompt: "a red fox" }, { timeoutMs: 120_000 });
 * } catch (err) {
 *   if (err instanceof TimeoutError) console.log(`still running; come back for ${err.jobId}`);
 * }
 */
export { createAdminClient, type AdminClientOptions, type FloodgateAdminClient } from "./admin.ts";
export { AgentView } from "../shared/api.ts";
export {
  createClient,
  newIdempotencyKey,
  type BatchJob,
  type ClientOptions,
  type FloodgateClient,
  type ListOptions,
  type RunOptions,
  type SubmitOptions,
} from "./client.ts";
export {
  FloodgateApiError,
  FloodgateClientError,
  FloodgateNetworkError,
  JobCancelledError,
  JobExpiredError,
  JobFailedError,
  MalformedAnswerError,
  TimeoutError,
} from "./errors.ts";
export { isTerminalEvent, type EventsOptions } from "./events.ts";
export {
  contentTypeOf,
  LocalFile,
  localFile,
  type FilesApi,
  type UploadOptions,
  type UploadProgress,
} from "./files.ts";
export type { FileList, FileView } from "../shared/files.ts";
export { DEFAULT_WAIT_MS, type RunResult, type WaitOptions } from "./run.ts";
export { SseParser, type SseMessage } from "./sse.ts";
export { verifyWebhook, type WebhooksApi } from "./webhooks.ts";
export type { UsageOptions } from "./usage.ts";
export type { UsageAnswer, UsageFigures, UsageGroupBy, UsageRow } from "../shared/usage.ts";
export type {
  Delivery,
  DeliveryList,
  JobWebhook,
  WebhookCreated,
  WebhookEvent,
  WebhookList,
  WebhookPayload,
  WebhookView,
} from "../shared/webhooks.ts";
export type { BatchAnswer, JobList, JobView, QueueStats, SubmitAnswer } from "../shared/api.ts";
export type { JobEvent, JobEventName } from "../shared/events.ts";
export type { JobPhase, JobStatus } from "../shared/job.ts";
