/**
 * The public HTTP API's bodies: one zod schema per body, imported by the edge (which validates
 * with them and generates `/openapi.json` from them) and by the client SDK.
 */
import { z } from "zod";
import { AttemptOutcome, JobPhase, JobStatus, ProgressPhase, WaitReason } from "./job.ts";
import { OutputsConfig } from "./outputs.ts";
import { TierName } from "./slo.ts";
import { JobWebhook } from "./webhooks.ts";

/** Model names appear in paths: lowercase, digits, `-`, `_`, `.`; at most 64 characters. */
export const ModelName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "a model name is 1–64 of a-z, 0-9, '.', '_', '-'");

/** Request bodies are refused above this size (bytes). */
export const MAX_BODY_BYTES = 1024 * 1024;
/** JSON bodies are refused nested deeper than this many levels of objects and arrays. */
export const MAX_BODY_DEPTH = 64;
/**
 * A job's `input` is refused nested deeper than this many levels: a lease carries the input
 * three levels down a `job.leases` frame, whose decoders stop at 32 (shared/codec.ts).
 */
export const MAX_INPUT_DEPTH = 16;
/**
 * Largest job `input`, msgpack-encoded (bytes): a lease carrying it always fits one agent
 * control frame (64 KiB, shared/wire.ts) with room for the lease's other fields. Larger inputs
 * travel as files.
 */
export const MAX_INPUT_BYTES = 32 * 1024;
/** Keys a job's `input` may not have anywhere: agents' decoders refuse them (shared/codec.ts). */
export const RESERVED_INPUT_KEYS: readonly string[] = ["__proto__", "constructor", "prototype"];
/** Jobs in one batch submit. */
export const MAX_BATCH = 100;

export const IdempotencyKey = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[\x21-\x7e]+$/, "printable ASCII without spaces");

export const SubmitBody = z.strictObject({
  input: z.record(z.string(), z.unknown()),
  metadata: z.record(z.string(), z.union([z.string().max(1024), z.number(), z.boolean()])).optional(),
  /** ISO 8601 time after which the result is no longer wanted. Stored; enforced later. */
  deadline: z.iso.datetime({ offset: true }).optional(),
  /** A model version to pin. Stored; served once the model repository exists. */
  version: z.string().min(1).max(128).optional(),
  /**
   * A URL told of the job's status changes, or `{url, events}` for some of them; signed with
   * the account's job-webhook secret (`POST /v1/webhooks/job-secret`).
   */
  webhook: JobWebhook.optional(),
});
export type SubmitBody = z.infer<typeof SubmitBody>;

export const BatchItem = SubmitBody.extend({
  idempotency_key: IdempotencyKey.optional().describe(
    "As the Idempotency-Key header of a single submit: the same key and body within 24 h answer the same job; another body, or a key whose job was since deleted, answers this item 409 idempotency_conflict.",
  ),
});
export const BatchBody = z.strictObject({ jobs: z.array(BatchItem).min(1).max(MAX_BATCH) });
export type BatchBody = z.infer<typeof BatchBody>;

export const SubmitAnswer = z.object({
  id: z.string(),
  status: JobStatus,
  model: z.string(),
  tier: z.string(),
  created_at: z.string(),
});
export type SubmitAnswer = z.infer<typeof SubmitAnswer>;

export const ErrorAnswer = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

export const BatchAnswer = z.object({
  jobs: z.array(
    z.union([
      SubmitAnswer.extend({ ok: z.literal(true) }),
      z.object({ ok: z.literal(false), error: ErrorAnswer.shape.error }),
    ]),
  ),
});
export type BatchAnswer = z.infer<typeof BatchAnswer>;

/**
 * One attempt of a job, as its owner sees it. Which agent and pool ran it are internal names of
 * the operator's fleet: only admins see them ({@link AdminAttempt}).
 */
export const Attempt = z.object({
  n: z.number().int(),
  version: z.string().nullable(),
  epoch: z.number().int(),
  started_at: z.string(),
  ended_at: z.string().nullable(),
  executing_s: z.number().nullable(),
  outcome: AttemptOutcome,
  reason: z.string().nullable(),
});
export type Attempt = z.infer<typeof Attempt>;

/** A running job's latest progress, as its agent last reported it: `progress` of a job view. */
export const JobProgressView = z
  .object({
    step: z.number().int().describe("Steps done in this phase."),
    total: z.number().int().describe("Steps in this phase."),
    phase: ProgressPhase,
    updated_at: z.string().nullable().describe("When the agent reported it, ISO 8601."),
  })
  .describe("The current attempt's latest progress.");
export type JobProgressView = z.infer<typeof JobProgressView>;

/** An attempt as admins see it (`GET /v1/admin/jobs…`): also the agent that ran it, and its pool. */
export const AdminAttempt = Attempt.extend({ agent: z.string(), pool: z.string() });
export type AdminAttempt = z.infer<typeof AdminAttempt>;

export const JobView = z.object({
  id: z.string(),
  model: z.string(),
  tier: z.string(),
  status: JobStatus,
  phase: JobPhase,
  created_at: z.string(),
  metadata: z.record(z.string(), z.unknown()).nullable(),
  deadline: z.string().nullable(),
  version: z.string().nullable(),
  attempts: z.array(Attempt),
  queue: z.object({ position: z.number().int(), eta_s: z.number().nullable(), reason: WaitReason }).nullable(),
  progress: JobProgressView.nullable().describe(
    "While running, once the current attempt's agent has reported progress (`GET /v1/jobs/{id}` only); null otherwise.",
  ),
  outputs: z.array(z.record(z.string(), z.unknown())).nullable(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  timings: z.object({
    created_at: z.string(),
    started_at: z.string().nullable(),
    finished_at: z.string().nullable(),
    queued_s: z.number().nullable(),
    running_s: z.number().nullable(),
  }),
});
export type JobView = z.infer<typeof JobView>;

/** A job as admins see it: its attempts name their agents and pools. */
export const AdminJobView = JobView.extend({ attempts: z.array(AdminAttempt) });
export type AdminJobView = z.infer<typeof AdminJobView>;

/** The view of a job its owner gets: the admin view without the fleet's internal names. */
export function customerView(job: AdminJobView): JobView {
  return { ...job, attempts: job.attempts.map(({ agent: _agent, pool: _pool, ...a }) => a) };
}

export const JobListQuery = z.strictObject({
  status: JobStatus.optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(64).optional(),
});
export const JobList = z.object({ jobs: z.array(JobView), next_cursor: z.string().nullable() });
export type JobList = z.infer<typeof JobList>;

/** `GET /v1/admin/jobs`: one account's jobs, as admins see them. */
export const AdminJobListQuery = JobListQuery.extend({ account: z.string().regex(/^acc_[0-9a-z]{16}$/) });
export const AdminJobList = z.object({ jobs: z.array(AdminJobView), next_cursor: z.string().nullable() });
export type AdminJobList = z.infer<typeof AdminJobList>;

const JSON_TYPES = ["object", "array", "string", "number", "integer", "boolean", "null"] as const;
const JsonType = z.enum(JSON_TYPES);
const Count = z.number().int().nonnegative();

/**
 * The shape of a JSON Schema (draft 2020-12) as far as a model's input needs it: the keywords a
 * validator acts on must have their right types, at every depth, so a typo such as
 * `"type": 12` is refused when the model is registered rather than ignored on every submit.
 * Other keywords pass through.
 */
export const JsonSchemaShape: z.ZodType<unknown> = z.lazy(() =>
  z.union([
    z.boolean(),
    z.looseObject({
      type: z.union([JsonType, z.array(JsonType).min(1)]).optional(),
      properties: z.record(z.string(), JsonSchemaShape).optional(),
      additionalProperties: JsonSchemaShape.optional(),
      items: JsonSchemaShape.optional(),
      prefixItems: z.array(JsonSchemaShape).optional(),
      required: z.array(z.string()).optional(),
      enum: z.array(z.unknown()).min(1).optional(),
      anyOf: z.array(JsonSchemaShape).min(1).optional(),
      oneOf: z.array(JsonSchemaShape).min(1).optional(),
      allOf: z.array(JsonSchemaShape).min(1).optional(),
      not: JsonSchemaShape.optional(),
      minimum: z.number().optional(),
      maximum: z.number().optional(),
      exclusiveMinimum: z.number().optional(),
      exclusiveMaximum: z.number().optional(),
      multipleOf: z.number().positive().optional(),
      minLength: Count.optional(),
      maxLength: Count.optional(),
      minItems: Count.optional(),
      maxItems: Count.optional(),
      pattern: z.string().optional(),
    }),
  ]),
);

/** A model's input schema: a JSON Schema whose instances are objects. */
export const InputSchema = z
  .looseObject({ type: z.literal("object", 'a model\'s input_schema must have "type": "object"') })
  .and(z.record(z.string(), z.unknown()))
  .refine((s) => JsonSchemaShape.safeParse(s).success, {
    message: "not a valid JSON Schema: a keyword has the wrong type (type, properties, required, minimum, …)",
  });

export const ModelConfigBody = z.strictObject({
  /** JSON Schema (draft 2020-12) of the job input; its `type` is "object". */
  input_schema: InputSchema.describe(
    'JSON Schema (draft 2020-12) of a job\'s input, whose `type` is "object". A top-level string property with `"x-floodgate-file": true` takes an input file\'s id (POST /v1/files); the runner gets a local path there.',
  ),
  max_attempts: z.number().int().min(1).max(20).default(3),
  /** Seconds a single attempt may run. */
  run_timeout_s: z.number().int().min(1).max(86400).default(600),
  /** Seconds a job may wait in the queue before it expires. */
  queue_ttl_s: z
    .number()
    .int()
    .min(1)
    .max(30 * 86400)
    .default(86400),
  /** Seconds a finished job and its outputs are kept. */
  retention_s: z
    .number()
    .int()
    .min(60)
    .max(365 * 86400)
    .default(7 * 86400),
  /** Expected service time of one job (seconds): the fair-queuing cost until measured. */
  expected_runtime_s: z.number().positive().max(86400).default(10),
  /**
   * Scheduler shards new submits spread over; job ids say which shard holds them. It may change
   * live either way: lowered, the shards past it take no new jobs and drain (see {@link shardSpan}).
   */
  shards: z.number().int().min(1).max(32).default(1),
  /**
   * What a successful attempt must produce and what its outputs may be (shared/outputs.ts):
   * required names, a minimum count, a content-type allow-list and size caps. Without it: no
   * output required, the safe media types, 256 MiB an output and 1 GiB an attempt.
   */
  outputs: OutputsConfig.optional(),
});
export type ModelConfigBody = z.infer<typeof ModelConfigBody>;

export const ModelConfig = ModelConfigBody.extend({
  name: ModelName,
  /** Stable number written into job ids; never reused. */
  number: z.number().int().min(0),
  /**
   * The shards that may hold the model's jobs: the most `shards` it ever had, kept by the
   * registry (absent: `shards`). Read it through {@link shardSpan}.
   */
  shard_span: z.number().int().min(1).max(32).optional(),
  updated_at: z.string(),
});
export type ModelConfig = z.infer<typeof ModelConfig>;

/**
 * How many shards may hold a model's jobs: submits go to the first `shards`, but a shard once
 * used keeps its jobs, so agents lease from, reads reach and the registry configures every
 * shard below this. Those past `shards` drain: nothing new arrives and their queues empty.
 */
export function shardSpan(model: Pick<ModelConfig, "shards" | "shard_span">): number {
  return Math.max(model.shards, model.shard_span ?? model.shards);
}

export const AccountCreateBody = z.strictObject({
  name: z.string().min(1).max(200),
  tier: TierName,
  /** Requests per minute; the tier's default when absent. */
  rate_limit: z.number().int().positive().max(1_000_000).optional(),
});
export type AccountCreateBody = z.infer<typeof AccountCreateBody>;

export const AccountCreated = z.object({ id: z.string(), key_id: z.string(), api_key: z.string() });
export const KeyCreated = z.object({ key_id: z.string(), api_key: z.string() });

export const AgentTokenBody = z.strictObject({
  pool: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/),
  models: z.array(ModelName).min(1).max(64),
  ttl_s: z
    .number()
    .int()
    .min(60)
    .max(365 * 86400)
    .default(30 * 86400),
});
export type AgentTokenBody = z.infer<typeof AgentTokenBody>;
export const AgentTokenCreated = z.object({ id: z.string(), token: z.string(), expires_at: z.string() });

/** A connected agent, as admins see it (`GET /v1/admin/agents`). */
export const AgentView = z.looseObject({
  agent_id: z.string(),
  name: z.string(),
  pool: z.string(),
  models: z.array(z.string()),
  versions: z.array(z.looseObject({ model: z.string(), version: z.string() })).default([]),
  slots: z.number(),
  prefetch: z.number().optional(),
  /** Its machine may be taken back at short notice (`floodgate agent --preemptible`). */
  preemptible: z.boolean().optional(),
  /** Leases the agent holds (running and staged), as of its last heartbeat. */
  running: z.number().optional(),
  gpus: z
    .array(
      z.looseObject({
        name: z.string().optional(),
        util_pct: z.number().optional(),
        vram_used_mb: z.number().optional(),
        vram_total_mb: z.number().optional(),
        temp_c: z.number().optional(),
      }),
    )
    .default([]),
  last_heartbeat: z.string(),
  connected_at: z.string().optional(),
});
export type AgentView = z.infer<typeof AgentView>;

export const QueueStats = z.object({
  model: z.string(),
  shard: z.number().int(),
  tier: z.string(),
  depth: z.number().int(),
  running: z.number().int(),
  oldest_wait_s: z.number(),
  max_wait_over_slo: z.number(),
  drain_per_s: z.number(),
});
export type QueueStats = z.infer<typeof QueueStats>;

/** A model's job counts since its shards' actors last started, summed over its shards. */
export const ModelCounters = z.object({
  /** Jobs accepted into a queue. */
  enqueued: z.number().int(),
  /** Attempts' results reported by agents, retried or final. */
  completed: z.number().int(),
  succeeded: z.number().int(),
  /** Jobs that failed for good, after their retries. */
  failed: z.number().int(),
  /** Submits admission control refused with `overloaded`. */
  refused: z.number().int(),
});
export type ModelCounters = z.infer<typeof ModelCounters>;

/**
 * One frame of `GET /v1/admin/live` (Server-Sent Events, `event: aggregates`, one a second):
 * what the shards and agents already keep, read once per frame, never per job. Rates (jobs/s,
 * failure rate) are the differences of `counters` between two frames over `at`.
 */
export const LiveFrame = z.object({
  /** When the frame was read, ms since the epoch. */
  at: z.number(),
  queues: z.array(QueueStats),
  counters: z.array(ModelCounters.extend({ model: z.string() })),
  agents: z.array(AgentView),
});
export type LiveFrame = z.infer<typeof LiveFrame>;
