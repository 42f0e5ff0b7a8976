/**
 * Pools and provisioners: the pools file (`floodgate pools apply pools.yaml`) and what travels
 * between the edge, the operator's provisioner process (`floodgate provisioner`) and a pool's
 * webhook. A pool is the agents of one agent-token pool name; the edge decides how many it
 * should have (mesh/pools/decide.ts) and asks for them: a webhook it calls itself, a command
 * through a provisioner (a command cannot run inside the edge).
 */
import { z } from "zod";
import { ModelName } from "./api.ts";

/** A pool's name: the `pool` of the agent tokens its agents connect with. */
export const PoolName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "a pool name is 1–64 of a-z, 0-9, '.', '_', '-' (its agent tokens' pool)");

/**
 * The command name of the pool that ships with the project: the provisioner itself starts and
 * stops local `floodgate agent` processes (`floodgate dev --autoscale`, the tests).
 */
export const LOCAL_POOL_COMMAND = "floodgate:local-agents";

export const PoolSpec = z
  .strictObject({
    models: z.array(ModelName).min(1).max(64).describe("The models this pool's agents serve."),
    min: z.number().int().min(0).max(100_000).default(0).describe("Agents kept however idle (0: scale to zero)."),
    max: z.number().int().min(1).max(100_000).describe("Agents at most."),
    priority: z
      .number()
      .int()
      .min(0)
      .max(1000)
      .default(100)
      .describe("Which pool grows first for a model: the lowest; the highest shrinks first."),
    command: z
      .string()
      .min(1)
      .max(1024)
      .optional()
      .describe(
        "Run by a provisioner with FLOODGATE_POOL, FLOODGATE_DESIRED and FLOODGATE_REMOVE set (or `floodgate:local-agents`).",
      ),
    webhook: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe("Called by the edge, signed as Standard Webhooks."),
    step_up: z.number().int().min(1).max(10_000).default(16).describe("Agents added per decision at most."),
    step_down: z.number().int().min(1).max(10_000).default(1).describe("Agents removed per decision at most."),
    window_s: z
      .number()
      .min(1)
      .max(86_400)
      .default(300)
      .describe("Stable window: the pool shrinks only to the mean need over it."),
    burst_window_s: z
      .number()
      .min(1)
      .max(3600)
      .default(10)
      .describe("Burst window: the pool grows to the mean need over it, at once."),
    cooldown_s: z
      .number()
      .min(0)
      .max(86_400)
      .default(300)
      .describe("No shrinking until this long after the pool last grew."),
    startup_s: z
      .number()
      .min(0)
      .max(3600)
      .default(60)
      .describe(
        "How long a new agent takes to serve: the need is sized so work queued now still starts within its SLO.",
      ),
  })
  .refine((p) => (p.command === undefined) !== (p.webhook === undefined), {
    message: "a pool has either a command or a webhook, not both",
  })
  .refine((p) => p.min <= p.max, { message: "min is above max" });
export type PoolSpec = z.infer<typeof PoolSpec>;

export const PoolsFile = z.strictObject({
  pools: z.record(PoolName, PoolSpec).refine((p) => Object.keys(p).length <= 64, { message: "at most 64 pools" }),
});
export type PoolsFile = z.infer<typeof PoolsFile>;

/** What `PUT /v1/admin/pools` takes: the parsed file, and its text for the record. */
export const PoolsApply = z.strictObject({
  file: PoolsFile,
  source: z.string().max(65_536).optional(),
});

/** One call to a pool's provisioner or webhook, as kept and shown. */
export const PoolCall = z.object({
  id: z.number().int(),
  pool: z.string(),
  /** Agents the pool should have. */
  desired: z.number().int(),
  /** Idle agents to remove, when shrinking (never a busy one). */
  remove: z.array(z.string()),
  /** Why the desired count changed, for people. */
  reason: z.string(),
  created_at: z.string(),
  /** When a provisioner took it (command pools), or the edge sent it (webhooks). */
  sent_at: z.string().nullable(),
  answered_at: z.string().nullable(),
  ok: z.boolean().nullable(),
  /** The command's exit code and output tail, or the webhook's status and body head. */
  answer: z.string().nullable(),
});
export type PoolCall = z.infer<typeof PoolCall>;

/** One pool as `floodgate pools status` shows it. */
export const PoolStatus = z.object({
  name: z.string(),
  spec: PoolSpec,
  desired: z.number().int(),
  connected: z.number().int(),
  busy: z.number().int(),
  calls: z.array(PoolCall),
});
export type PoolStatus = z.infer<typeof PoolStatus>;

export const PoolsStatus = z.object({ pools: z.array(PoolStatus) });
export type PoolsStatus = z.infer<typeof PoolsStatus>;

/** What a provisioner is asked to do: run the pool's command with this environment. */
export const ProvisionerCall = z.object({
  id: z.number().int(),
  pool: z.string(),
  command: z.string(),
  desired: z.number().int(),
  remove: z.array(z.string()),
});
export type ProvisionerCall = z.infer<typeof ProvisionerCall>;

export const ProvisionerCalls = z.object({ calls: z.array(ProvisionerCall) });

/** A provisioner's answer to a call: how its command ended. */
export const ProvisionerAnswer = z.strictObject({
  ok: z.boolean(),
  exit_code: z.number().int().nullable(),
  output: z.string().max(4096).describe("The tail of the command's output."),
});
export type ProvisionerAnswer = z.infer<typeof ProvisionerAnswer>;

/** The body a pool's webhook receives (signed as Standard Webhooks: webhook-id, -timestamp, -signature). */
export const PoolWebhookBody = z.object({
  type: z.literal("pool.scale"),
  pool: z.string(),
  desired: z.number().int(),
  remove: z.array(z.string()),
  reason: z.string(),
});

export const ProvisionerTokenBody = z.strictObject({
  pools: z.array(PoolName).min(1).max(64),
  ttl_s: z
    .number()
    .int()
    .min(60)
    .max(365 * 86400)
    .default(30 * 86400),
});
