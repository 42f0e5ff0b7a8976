/**
 * The rollout routes' bodies and answers (`/v1/admin/rollouts…`): what an operator applies, the
 * history the edge keeps, and the status of each model's rollout — desired versions, which
 * agents serve which version, each version's figures over its window, and the reverts. The
 * edge, the registry, the SDK and the CLI import them; the rollout file itself and what agents
 * are told are in shared/repository.ts and shared/wire.ts.
 */
import { z } from "zod";
import { ModelName } from "./api.ts";
import { ModelRollout, RolloutFile, Sha256, VersionName } from "./repository.ts";

/** Models one rollout may name. */
export const MAX_ROLLOUT_MODELS = 256;
/** Bytes of the rollout file's text kept with its history entry. */
export const MAX_ROLLOUT_SOURCE = 64 * 1024;

/**
 * The checks a rollout gets beyond its file's schema: it names at least one model and at most
 * {@link MAX_ROLLOUT_MODELS}, and no canary names its model's stable version.
 */
function checkRollout(b: RolloutFile, ctx: z.RefinementCtx): void {
  const names = Object.keys(b.models);
  if (names.length === 0) ctx.addIssue({ code: "custom", path: ["models"], message: "name at least one model" });
  if (names.length > MAX_ROLLOUT_MODELS) {
    ctx.addIssue({ code: "custom", path: ["models"], message: `at most ${MAX_ROLLOUT_MODELS} models a rollout` });
  }
  for (const [model, entry] of Object.entries(b.models)) {
    if (entry.canary?.version === entry.version) {
      ctx.addIssue({
        code: "custom",
        path: ["models", model, "canary", "version"],
        message: "a canary's version must differ from the stable version",
      });
    }
  }
}

/** A rollout file as `floodgate rollout apply` checks it before sending it. */
export const CheckedRolloutFile = RolloutFile.superRefine(checkRollout);

/** `POST /v1/admin/rollouts`: the parsed rollout file, and its text (kept in the history). */
export const RolloutApply = RolloutFile.extend({
  source: z
    .string()
    .max(MAX_ROLLOUT_SOURCE)
    .optional()
    .describe("The rollout file as written (YAML), kept in the history for people."),
}).superRefine(checkRollout);
export type RolloutApply = z.infer<typeof RolloutApply>;

/** `POST /v1/admin/rollouts/undo` and `…/revert`: the model. */
export const RolloutModelBody = z.strictObject({ model: ModelName });

/** One entry of the rollout history. */
export const RolloutEntry = z.object({
  id: z.number().int().min(1).describe("The entry's number: entries are numbered in the order they were applied."),
  applied_at: z.string().describe("When it was applied (ISO 8601)."),
  by: z.string().describe("Who applied it: `admin`."),
  kind: z
    .enum(["apply", "undo"])
    .describe("`apply`: a rollout file; `undo`: a model's previous entry applied again (`rollout undo`)."),
  models: z.record(ModelName, ModelRollout).describe("What it set, per model (defaults filled in)."),
  source: z.string().nullable().describe("The rollout file's text, when it was sent."),
});
export type RolloutEntry = z.infer<typeof RolloutEntry>;

export const RolloutHistory = z.object({
  rollouts: z.array(RolloutEntry).describe("Newest first."),
});
export type RolloutHistory = z.infer<typeof RolloutHistory>;

/** Why a canary was reverted: its failure rate, a load that failed everywhere, or an operator. */
export const RevertReason = z.enum(["failure_rate", "load_failed", "operator"]);
export type RevertReason = z.infer<typeof RevertReason>;

/** A version's figures over its window: attempts that ran to a result, and those that failed. */
export const VersionWindow = z.object({
  jobs: z.number().int().min(0).describe("Attempts that ended with a result, plus loads that failed."),
  failed: z.number().int().min(0).describe("Of those, the failures (a failed load counts as one)."),
  failure_pct: z.number().min(0).max(100).describe("failed / jobs, percent (0 without jobs)."),
  since: z.string().describe("When the version became desired: the window's start (ISO 8601)."),
});
export type VersionWindow = z.infer<typeof VersionWindow>;

/** A canary that was ended, with the figures that ended it. */
export const RevertRecord = z.object({
  at: z.string().describe("When (ISO 8601)."),
  version: VersionName,
  reason: RevertReason,
  jobs: z.number().int().min(0),
  failed: z.number().int().min(0),
  failure_pct: z.number().min(0).max(100),
});
export type RevertRecord = z.infer<typeof RevertRecord>;

const AgentCounts = z.object({
  loading: z.number().int().min(0),
  serving: z.number().int().min(0),
  failed: z.number().int().min(0),
});

/** One model's rollout as `GET /v1/admin/rollouts/status` shows it. */
export const ModelRolloutStatus = z.object({
  stable: z.object({ version: VersionName, digest: Sha256 }),
  canary: z
    .object({
      version: VersionName,
      digest: Sha256,
      percent: z.number(),
      max_failure_pct: z.number(),
      min_jobs: z.number().int(),
    })
    .optional(),
  rollout_id: z.number().int().describe("The history entry the desired versions come from."),
  since: z.string().describe("When the desired versions last changed (an apply, an undo or a revert)."),
  agents: z.record(z.string(), AgentCounts).describe("Per version the agents report, how many load, serve, failed."),
  agent_versions: z.array(
    z.object({
      agent_id: z.string(),
      version: z.string(),
      state: z.enum(["loading", "serving", "failed"]),
      message: z.string().optional(),
    }),
  ),
  window: z.record(VersionName, VersionWindow).describe("The desired versions' figures since each became desired."),
  reverts: z.array(RevertRecord).describe("The model's reverts, newest first (the last 20)."),
});
export type ModelRolloutStatus = z.infer<typeof ModelRolloutStatus>;

export const RolloutStatus = z.object({ models: z.record(ModelName, ModelRolloutStatus) });
export type RolloutStatus = z.infer<typeof RolloutStatus>;

export const RevertAnswer = z.object({ model: ModelName, revert: RevertRecord });
export type RevertAnswer = z.infer<typeof RevertAnswer>;
