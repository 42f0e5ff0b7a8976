/**
 * The model repository's contracts: what a model author pushes (a version's manifest and its
 * files, cut into content-addressed pieces), what the edge keeps of a version, the rollout file
 * an operator applies, and what agents are told to serve. Imported by the edge, the registry,
 * the scheduler, the CLI and the agent; docs/models.md explains them with a worked example.
 *
 * A version is immutable: `model` and `version` name it, and its digest — the SHA-256 of the
 * canonical JSON of its manifest and file list ({@link versionDigest}) — is what it is. The
 * same name with another digest is refused.
 */
import { z } from "zod";
import { InputSchema, ModelName } from "./api.ts";
import { OutputsConfig } from "./outputs.ts";

/** Bytes in every piece but a file's last: files are cut at this size. */
export const PIECE_BYTES = 8 * 1024 * 1024;
/** Files a version may hold. */
export const MAX_VERSION_FILES = 1024;
/** Pieces a version may hold in all (8 TiB at 8 MiB each: far beyond any checkpoint). */
export const MAX_VERSION_PIECES = 1_048_576;

export const VersionName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/, "a version is 1–64 of A-Z, a-z, 0-9, '.', '_', '+', '-'");

export const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, "a sha256 is 64 lowercase hex digits");

/** The runners a version can name: `demo` (gpu-agent/runners/demo.ts) or `python` (gpu-agent/python). */
export const RunnerKind = z.enum(["demo", "python"]);
export type RunnerKind = z.infer<typeof RunnerKind>;

/** A version's `manifest.json`, as its author writes it. */
export const VersionManifest = z
  .strictObject({
    format: z.literal(1),
    model: ModelName,
    version: VersionName,
    runner: RunnerKind,
    /** `module:Class` of the model's class (python runner). */
    entry: z
      .string()
      .regex(/^[A-Za-z_][\w.]*:[A-Za-z_]\w*$/, "entry is 'module:Class'")
      .optional(),
    /** The weights file the python runner loads (a file of this version). */
    weights: z.string().min(1).max(255).optional(),
    input_schema: InputSchema,
    resources: z
      .strictObject({
        /** GPUs one replica needs; 0 runs on the CPU. */
        gpus: z.number().int().min(0).max(8).default(1),
        /** GPU memory one replica needs (GiB). */
        vram_gib: z.number().min(0).max(1024).default(0),
      })
      .default({ gpus: 1, vram_gib: 0 }),
    /** Jobs one replica runs together. */
    max_batch: z.number().int().min(1).max(256).default(1),
    /** Expected service time of one job (seconds). */
    expected_runtime_s: z.number().positive().max(86400).default(10),
    /** What every successful job produces (shared/outputs.ts). */
    outputs: OutputsConfig.optional(),
    /** Free configuration, handed to the runner. */
    config: z.record(z.string(), z.unknown()).default({}),
  })
  .superRefine((m, ctx) => {
    if (m.runner === "python" && m.entry === undefined)
      ctx.addIssue({ code: "custom", path: ["entry"], message: "a python version names its entry, 'module:Class'" });
  });
export type VersionManifest = z.infer<typeof VersionManifest>;

/** A file of a version: its path inside the version, its size, and its pieces in order. */
export const VersionFile = z.strictObject({
  path: z
    .string()
    .min(1)
    .max(255)
    .regex(/^(?!\/)(?!.*(^|\/)\.\.?(\/|$))[A-Za-z0-9._+\-/]+$/, "a relative path without '.' or '..' parts"),
  size: z.number().int().min(0),
  sha256: Sha256,
  pieces: z.array(Sha256),
});
export type VersionFile = z.infer<typeof VersionFile>;

/** What a push sends first: the manifest and the file list (`manifest.json` itself is not a file). */
export const VersionPush = z.strictObject({
  manifest: VersionManifest,
  piece_bytes: z.literal(PIECE_BYTES),
  files: z.array(VersionFile).max(MAX_VERSION_FILES),
});
export type VersionPush = z.infer<typeof VersionPush>;

/** A version as the edge keeps and shows it. */
export const VersionRecord = VersionPush.extend({
  digest: Sha256,
  /** `pending` until every piece is stored; then `ready` and immutable. */
  state: z.enum(["pending", "ready"]),
  bytes: z.number().int().min(0),
  created_at: z.string(),
  /** Who pushed it: `admin` or the fingerprint of the key. */
  created_by: z.string(),
});
export type VersionRecord = z.infer<typeof VersionRecord>;

/** The answer to a push's first step: the version, and the pieces the store still lacks. */
export const VersionPushAnswer = z.object({
  version: VersionRecord,
  missing: z.array(Sha256),
});
export type VersionPushAnswer = z.infer<typeof VersionPushAnswer>;

/** A version as listings show it: its record without the file list. */
export const VersionSummary = z.object({
  model: ModelName,
  version: VersionName,
  digest: Sha256,
  state: VersionRecord.shape.state,
  /** The files' bytes, summed. */
  bytes: z.number().int().min(0),
  /** Distinct pieces. */
  pieces: z.number().int().min(0),
  created_at: z.string(),
  created_by: z.string(),
});
export type VersionSummary = z.infer<typeof VersionSummary>;

/**
 * A version purged from the fleet's caches (`POST /v1/admin/models/{model}/versions/{version}/purge`):
 * agents delete it from their caches once nothing on their host serves it. Its record stays in
 * the repository; a later rollout may name it again, and agents fetch it anew.
 */
export const VersionPurge = z.object({
  model: ModelName,
  version: VersionName,
  /** When it was purged (ISO 8601). */
  purged_at: z.string(),
  purged_by: z.string(),
});
export type VersionPurge = z.infer<typeof VersionPurge>;

/** The answer to storing a piece: its name and size (bytes). */
export const PieceStored = z.object({ sha256: Sha256, size: z.number().int().min(0).max(PIECE_BYTES) });
export type PieceStored = z.infer<typeof PieceStored>;

/** Canonical JSON: keys sorted at every level, no spaces. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The SHA-256 (hex) of a version's canonical manifest and file list: what the version is. */
export async function versionDigest(push: VersionPush): Promise<string> {
  const bytes = new TextEncoder().encode(canonicalJson(push));
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...hash].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Every distinct piece of a version, in first-use order. */
export function piecesOf(files: readonly VersionFile[]): string[] {
  return [...new Set(files.flatMap((f) => f.pieces))];
}

// ---- rollouts ----

export const Canary = z.strictObject({
  version: VersionName,
  /** Share of the model's unpinned jobs routed to the canary (percent). */
  percent: z.number().min(0).max(100),
  /** The canary is reverted when its failure rate passes this (percent)… */
  max_failure_pct: z.number().min(0).max(100).default(20),
  /** …once it has ended at least this many jobs (failed loads count as failed jobs). */
  min_jobs: z.number().int().min(1).max(1_000_000).default(20),
});
export type Canary = z.infer<typeof Canary>;

/** One model's entry of a rollout file. */
export const ModelRollout = z.strictObject({ version: VersionName, canary: Canary.optional() });
export type ModelRollout = z.infer<typeof ModelRollout>;

/** A rollout file (YAML), as `floodgate rollout apply` reads it. */
export const RolloutFile = z.strictObject({ models: z.record(ModelName, ModelRollout) });
export type RolloutFile = z.infer<typeof RolloutFile>;

/**
 * What a model's agents should serve now: the stable version and, during a canary, the canary
 * (with its share of jobs). Derived from the last rollout applied and any automatic revert.
 */
export const DesiredVersions = z.strictObject({
  model: ModelName,
  stable: VersionName,
  canary: z.strictObject({ version: VersionName, percent: z.number().min(0).max(100) }).optional(),
});
export type DesiredVersions = z.infer<typeof DesiredVersions>;
