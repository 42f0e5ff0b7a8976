/**
 * The agent's configuration: every flag also from an environment variable, parsed once by one
 * zod schema. Flags win over the environment.
 */
import { z } from "zod";

export const RUNNERS = ["demo", "synthetic", "python"] as const;
/** Sizes of the python runner's reference model (gpu-agent/python/floodgate_runner/reference). */
export const MODEL_SIZES = ["tiny", "small", "large"] as const;

export const AgentConfig = z.strictObject({
  /** The edge's base URL (http or https); the agent connects to <url>/v1/agent/connect. */
  url: z.url({ protocol: /^https?$/ }),
  /** An agent token minted by an admin (POST /v1/admin/agent-tokens). */
  token: z.string().min(20, "the agent token looks too short"),
  /** Jobs run at once (the runner's max_batch when absent). */
  slots: z.coerce.number().int().min(1).max(256).optional(),
  /** Jobs staged beyond the slots so the GPU never waits between jobs. */
  prefetch: z.coerce.number().int().min(0).max(64).default(1),
  /** A name for people (admin listings); the host name when absent. */
  name: z.string().min(1).max(128).optional(),
  runner: z.enum(RUNNERS).default("demo"),
  /** The model the python runner serves (built in: `reference`); the other runners ignore it. */
  model: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "a model name is 1–64 of a-z, 0-9, '.', '_', '-'")
    .default("reference"),
  /** The reference model's size: tiny (tests, CPU), small, large (loads a GPU). */
  model_size: z.enum(MODEL_SIZES).default("tiny"),
  /**
   * The Python interpreter for the python runner; absent: the first of python3 on the PATH and
   * /usr/bin/python3 that can import torch (gpu-agent/python-runner.ts).
   */
  python: z.string().min(1).optional(),
  /** Where the agent keeps its id and caches; `.floodgate/agent` when absent. */
  cache_dir: z.string().min(1).default(".floodgate/agent"),
  /** Above this share of any GPU's memory in use, the agent takes no new work. */
  max_vram_pct: z.coerce.number().min(1).max(100).default(95),
});
export type AgentConfig = z.infer<typeof AgentConfig>;

/** Flag names and the environment variables that stand in for them. */
export const ENV_OF: Record<keyof AgentConfig, string> = {
  url: "FLOODGATE_URL",
  token: "FLOODGATE_AGENT_TOKEN",
  slots: "FLOODGATE_SLOTS",
  prefetch: "FLOODGATE_PREFETCH",
  name: "FLOODGATE_AGENT_NAME",
  runner: "FLOODGATE_RUNNER",
  model: "FLOODGATE_MODEL",
  model_size: "FLOODGATE_MODEL_SIZE",
  python: "FLOODGATE_PYTHON",
  cache_dir: "FLOODGATE_CACHE_DIR",
  max_vram_pct: "FLOODGATE_MAX_VRAM_PCT",
};

/** Merges flags over the environment and parses; an error names the flag and its variable. */
export function parseAgentConfig(
  flags: Record<string, unknown>,
  env: Record<string, string | undefined>,
): { ok: true; config: AgentConfig } | { ok: false; message: string } {
  const raw: Record<string, unknown> = {};
  for (const [key, envName] of Object.entries(ENV_OF)) {
    const flag = flags[key.replaceAll("_", "-")] ?? flags[key];
    const value = flag ?? env[envName];
    if (value !== undefined && value !== "") raw[key] = value;
  }
  const parsed = AgentConfig.safeParse(raw);
  if (parsed.success) return { ok: true, config: parsed.data };
  const issue = parsed.error.issues[0];
  const key = String(issue?.path[0] ?? "");
  const envName = ENV_OF[key as keyof AgentConfig];
  const missing = raw[key] === undefined;
  return {
    ok: false,
    message: missing
      ? `--${key.replaceAll("_", "-")} is required (or set ${envName})`
      : `--${key.replaceAll("_", "-")}${envName ? ` / ${envName}` : ""}: ${issue?.message}`,
  };
}
