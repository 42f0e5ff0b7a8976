/**
 * The agent's configuration: every flag also from an environment variable, parsed once by one
 * zod schema. Flags win over the environment.
 */
import { z } from "zod";
import { PeerAddr } from "../shared/swarm.ts";
import { parseGpuSelection } from "./gpu.ts";

export const RUNNERS = ["demo", "synthetic", "python"] as const;
/** Sizes of the python runner's reference model (gpu-agent/python/floodgate_runner/reference). */
export const MODEL_SIZES = ["tiny", "small", "large"] as const;

export const AgentConfig = z.strictObject({
  /** The edge's base URL (http or https); the agent connects to <url>/v1/agent/connect. */
  url: z.url({ protocol: /^https?$/ }),
  /** An agent token minted by an admin (POST /v1/admin/agent-tokens). */
  token: z.string().min(20, "the agent token looks too short"),
  /**
   * Jobs run at once by the `--runner` runner (its max_batch when absent). An agent serving the
   * rollout runs each replica's `max_batch` instead.
   */
  slots: z.coerce.number().int().min(1).max(256).optional(),
  /** Jobs staged beyond the slots so the GPU never waits between jobs. */
  prefetch: z.coerce.number().int().min(0).max(64).default(1),
  /** A name for people (admin listings); the host name when absent. */
  name: z.string().min(1).max(128).optional(),
  /**
   * Serve this one runner and ignore rollouts (tests, benchmarks, a machine set up by hand).
   * Absent: serve what the rollout says (`agent.desired`) for the models the token allows.
   */
  runner: z.enum(RUNNERS).optional(),
  /** The GPUs this agent serves with: `all` it sees, or indices such as `0,1`. */
  gpus: z
    .string()
    .default("all")
    .transform((text, ctx) => {
      const parsed = parseGpuSelection(text);
      if (!parsed.ok) {
        ctx.addIssue({ code: "custom", message: parsed.message });
        return z.NEVER;
      }
      return parsed.gpus;
    }),
  /** The model `--runner python` serves (built in: `reference`); the other runners ignore it. */
  model: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "a model name is 1–64 of a-z, 0-9, '.', '_', '-'")
    .default("reference"),
  /** The reference model's size with `--runner python`: tiny (tests, CPU), small, large (loads a GPU). */
  model_size: z.enum(MODEL_SIZES).default("tiny"),
  /**
   * The Python interpreter for the python runner; absent: the first of python3 on the PATH and
   * /usr/bin/python3 that can import torch (gpu-agent/python-runner.ts).
   */
  python: z.string().min(1).optional(),
  /**
   * Where the agent keeps its identity and caches (model versions and their pieces under
   * `versions/` and `pieces/`); `.floodgate/agent` when absent. Agents on one host may share it:
   * each takes an identity of its own (gpu-agent/identity.ts), and versions are fetched once.
   */
  cache_dir: z.string().min(1).default(".floodgate/agent"),
  /**
   * Evict the cache (least recently used versions the agents of the host do not serve) when it
   * holds more than this many GiB (absent: no limit of its own; the disk marks still apply).
   */
  cache_high_gib: z.coerce.number().positive().max(1_000_000).optional(),
  /** …down to this many GiB (default: 80% of --cache-high-gib); needs --cache-high-gib. */
  cache_low_gib: z.coerce.number().min(0).max(1_000_000).optional(),
  /** Evict the cache when the disk holding it is fuller than this percent… */
  disk_high_pct: z.coerce.number().min(1).max(100).default(90),
  /** …down to this percent. */
  disk_low_pct: z.coerce.number().min(0).max(100).default(80),
  /** Above this share of any GPU's memory in use, the agent takes no new work. */
  max_vram_pct: z.coerce.number().min(1).max(100).default(95),
  /**
   * Seconds a drain (the first SIGTERM) may take: past it the agent gives the jobs still running
   * back, without spending their attempts, and exits. Supervisors wait this plus
   * {@link DRAIN_EXIT_MARGIN_S} before they kill (packaging/: TimeoutStopSec,
   * terminationGracePeriodSeconds, docker's --stop-timeout).
   */
  drain_timeout_s: z.coerce.number().int().min(1).max(86_400).default(600),
  /**
   * Where peers reach this agent's piece server (`HOST:PORT`), announced to each version's
   * swarm. Absent: the agent downloads from peers and the origin but serves nothing.
   */
  peer_addr: PeerAddr.optional(),
  /** The port the piece server listens on (default: the port of --peer-addr); needs --peer-addr. */
  peer_port: z.coerce.number().int().min(1).max(65535).optional(),
  /** Uploads to peers, at most this many MiB/s in all (absent: no limit). */
  max_upload_mibps: z.coerce.number().positive().max(1_000_000).optional(),
  /** Downloads of pieces from peers and the origin, at most this many MiB/s in all (absent: no limit). */
  max_download_mibps: z.coerce.number().positive().max(1_000_000).optional(),
  /**
   * The machine may be taken back at short notice (GPUs lent by a training cluster, spot VMs):
   * the edge offers urgent jobs to steady agents first, and SIGTERM gives the running jobs back
   * after `preempt_grace_s` without spending their attempts. The flag takes no value; the
   * variable is `1`/`true` or `0`/`false`.
   */
  preemptible: z
    .union([z.boolean(), z.enum(["1", "true", "0", "false"]).transform((v) => v === "1" || v === "true")])
    .default(false),
  /** Seconds a preemptible agent's jobs may run on after SIGTERM before they are given back. */
  preempt_grace_s: z.coerce.number().min(0).max(3600).default(20),
});
export type AgentConfig = z.infer<typeof AgentConfig>;

/**
 * Seconds an agent needs after its drain deadline to give leases back, stop its runner and close
 * its socket; a supervisor's stop timeout is `drain_timeout_s` plus this.
 */
export const DRAIN_EXIT_MARGIN_S = 30;

/** The cache's eviction marks in bytes and percent (gpu-agent/versions/evict.ts), from the flags. */
export function evictionMarks(
  c: Pick<AgentConfig, "cache_high_gib" | "cache_low_gib" | "disk_high_pct" | "disk_low_pct">,
): { highBytes?: number; lowBytes?: number; diskHighPct: number; diskLowPct: number } {
  const GiB = 1024 ** 3;
  return {
    ...(c.cache_high_gib === undefined
      ? {}
      : {
          highBytes: Math.round(c.cache_high_gib * GiB),
          lowBytes: Math.round((c.cache_low_gib ?? c.cache_high_gib * 0.8) * GiB),
        }),
    diskHighPct: c.disk_high_pct,
    diskLowPct: c.disk_low_pct,
  };
}

/** How a flag is shown in `floodgate agent --help`, and the variable that stands in for it. */
interface FlagDoc {
  env: string;
  /** A switch that takes no value (`--preemptible`). */
  boolean?: true;
  /** The value's placeholder in the help (`URL`, `N`). */
  arg: string;
  help: string;
}

/** Every flag of `floodgate agent`: its variable and its help line, in the order shown. */
export const AGENT_FLAGS: Record<keyof AgentConfig, FlagDoc> = {
  url: { env: "FLOODGATE_URL", arg: "URL", help: "the edge, e.g. https://floodgate.example.com" },
  token: { env: "FLOODGATE_AGENT_TOKEN", arg: "TOKEN", help: "an agent token (POST /v1/admin/agent-tokens)" },
  slots: {
    env: "FLOODGATE_SLOTS",
    arg: "N",
    help: "jobs the --runner runner runs at once (default: its max_batch; serving the rollout, each replica runs its version's max_batch)",
  },
  prefetch: { env: "FLOODGATE_PREFETCH", arg: "N", help: "jobs staged beyond the slots (default 1)" },
  name: { env: "FLOODGATE_AGENT_NAME", arg: "NAME", help: "shown to admins (default: the host name)" },
  runner: {
    env: "FLOODGATE_RUNNER",
    arg: "KIND",
    help: "demo | synthetic | python: serve this one runner and ignore rollouts (default: serve what the rollout says for the token's models)",
  },
  gpus: {
    env: "FLOODGATE_GPUS",
    arg: "LIST",
    help: "the GPUs to serve with: all (default) or indices such as 0,1; each runner gets CUDA_VISIBLE_DEVICES of its own",
  },
  model: { env: "FLOODGATE_MODEL", arg: "NAME", help: "the model of --runner python (default reference)" },
  model_size: {
    env: "FLOODGATE_MODEL_SIZE",
    arg: "SIZE",
    help: "the reference model's size with --runner python: tiny | small | large (default tiny)",
  },
  python: {
    env: "FLOODGATE_PYTHON",
    arg: "PATH",
    help: "the interpreter for python runners (default: the first of python3 on the PATH and /usr/bin/python3 that can import torch)",
  },
  cache_dir: {
    env: "FLOODGATE_CACHE_DIR",
    arg: "DIR",
    help: "identities and model versions, shareable by the agents of one host (default .floodgate/agent)",
  },
  cache_high_gib: {
    env: "FLOODGATE_CACHE_HIGH_GIB",
    arg: "GIB",
    help: "evict least recently used versions no agent of the host serves when the cache passes this size (default: no size limit)",
  },
  cache_low_gib: {
    env: "FLOODGATE_CACHE_LOW_GIB",
    arg: "GIB",
    help: "…until the cache is down to this size (default: 80% of --cache-high-gib)",
  },
  disk_high_pct: {
    env: "FLOODGATE_DISK_HIGH_PCT",
    arg: "PCT",
    help: "evict the same way when the cache's disk is fuller than this (default 90)",
  },
  disk_low_pct: {
    env: "FLOODGATE_DISK_LOW_PCT",
    arg: "PCT",
    help: "…until it is down to this (default 80)",
  },
  max_vram_pct: {
    env: "FLOODGATE_MAX_VRAM_PCT",
    arg: "PCT",
    help: "take no new work above this GPU memory use (default 95)",
  },
  drain_timeout_s: {
    env: "FLOODGATE_DRAIN_TIMEOUT_S",
    arg: "S",
    help: "on SIGTERM, finish running jobs for at most this long, then give them back (default 600)",
  },
  peer_addr: {
    env: "FLOODGATE_PEER_ADDR",
    arg: "HOST:PORT",
    help: "where peers reach this agent to fetch weight pieces (default: it serves none, and only downloads)",
  },
  peer_port: {
    env: "FLOODGATE_PEER_PORT",
    arg: "PORT",
    help: "the port the piece server listens on (default: the port of --peer-addr)",
  },
  max_upload_mibps: {
    env: "FLOODGATE_MAX_UPLOAD_MIBPS",
    arg: "MIBPS",
    help: "limit uploads of pieces to peers to this many MiB/s (default: no limit)",
  },
  max_download_mibps: {
    env: "FLOODGATE_MAX_DOWNLOAD_MIBPS",
    arg: "MIBPS",
    help: "limit downloads of pieces, from peers and the origin, to this many MiB/s (default: no limit)",
  },
  preemptible: {
    env: "FLOODGATE_PREEMPTIBLE",
    arg: "",
    boolean: true,
    help: "this machine may be taken back at short notice: urgent jobs go to steady agents first; on reclaim its jobs go back without spending attempts",
  },
  preempt_grace_s: {
    env: "FLOODGATE_PREEMPT_GRACE_S",
    arg: "S",
    help: "with --preemptible, seconds the running jobs may finish after SIGTERM before they are given back (default 20)",
  },
};

/** The flag spelling of a configuration key (`cache_dir` → `cache-dir`). */
export function flagName(key: string): string {
  return key.replaceAll("_", "-");
}

/** `parseArgs` options for every flag of `floodgate agent`, plus `--help`. */
export function agentArgOptions(): Record<string, { type: "string" } | { type: "boolean"; short?: string }> {
  const out: Record<string, { type: "string" } | { type: "boolean"; short?: string }> = {};
  for (const [key, doc] of Object.entries(AGENT_FLAGS)) {
    out[flagName(key)] = doc.boolean ? { type: "boolean" } : { type: "string" };
  }
  out.help = { type: "boolean", short: "h" };
  return out;
}

/** The options section of `floodgate agent --help`, rendered from {@link AGENT_FLAGS}. */
export function agentFlagsHelp(): string {
  const rows = Object.entries(AGENT_FLAGS).map(([key, f]) => [
    `--${flagName(key)}${f.arg ? ` ${f.arg}` : ""}`,
    f.help,
    f.env,
  ]);
  const width = Math.max(...rows.map((r) => (r[0] ?? "").length)) + 2;
  return rows.map(([flag = "", help, env]) => `  ${flag.padEnd(width)}${help} (${env})`).join("\n");
}

/** Merges flags over the environment and parses; an error names the flag and its variable. */
export function parseAgentConfig(
  flags: Record<string, unknown>,
  env: Record<string, string | undefined>,
): { ok: true; config: AgentConfig } | { ok: false; message: string } {
  const raw: Record<string, unknown> = {};
  for (const [key, doc] of Object.entries(AGENT_FLAGS)) {
    const flag = flags[flagName(key)] ?? flags[key];
    const value = flag ?? env[doc.env];
    if (value !== undefined && value !== "") raw[key] = value;
  }
  const parsed = AgentConfig.safeParse(raw);
  if (parsed.success) {
    const c = parsed.data;
    if (c.peer_port !== undefined && c.peer_addr === undefined) {
      return { ok: false, message: "--peer-port needs --peer-addr (where peers reach that port)" };
    }
    if (c.cache_low_gib !== undefined && c.cache_high_gib === undefined) {
      return { ok: false, message: "--cache-low-gib needs --cache-high-gib (the size that starts eviction)" };
    }
    if (c.cache_low_gib !== undefined && c.cache_high_gib !== undefined && c.cache_low_gib >= c.cache_high_gib) {
      return { ok: false, message: "--cache-low-gib must be below --cache-high-gib" };
    }
    if (c.disk_low_pct >= c.disk_high_pct) {
      return { ok: false, message: "--disk-low-pct must be below --disk-high-pct" };
    }
    return { ok: true, config: parsed.data };
  }
  const issue = parsed.error.issues[0];
  const key = String(issue?.path[0] ?? "");
  const envName = AGENT_FLAGS[key as keyof AgentConfig]?.env;
  const missing = raw[key] === undefined;
  return {
    ok: false,
    message: missing
      ? `--${flagName(key)} is required (or set ${envName})`
      : `--${flagName(key)}${envName ? ` / ${envName}` : ""}: ${issue?.message}`,
  };
}
