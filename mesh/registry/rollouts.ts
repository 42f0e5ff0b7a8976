/**
 * The registry's decisions about rollouts, free of any runtime: what a model's desired versions
 * become when a rollout is applied, undone or its canary reverted; the canary analysis (when a
 * canary is reverted by itself, and why); which loads failed anew in an agent's report; and the
 * status admins read. RegistryActor stores and sends what these decide; tested in plain Node
 * (rollouts.test.ts).
 *
 * A model's desired versions are the last rollout entry applied to it, less any revert since.
 * Each change gets the next revision, so a shard or an agent never takes an older state over a
 * newer one. A desired version's figures (attempts that ran to a result, and failures; a load
 * that failed counts as a failed job) are counted from when it became desired: a version that
 * stays desired across a change keeps them.
 */
import type { z } from "zod";
import { ModelConfigBody, type ModelConfig } from "../../shared/api.ts";
import type { ModelRollout, VersionManifest } from "../../shared/repository.ts";
import type { ModelRolloutStatus, RevertReason, RevertRecord } from "../../shared/rollouts.ts";
import type { AgentDesired, VersionState } from "../../shared/wire.ts";
import type { LaneDesired } from "../scheduler/versions.ts";

/** A model's desired versions, as the registry keeps them and puts in its snapshot. */
export interface ModelDesired {
  model: string;
  stable: { version: string; digest: string };
  canary?: { version: string; digest: string; percent: number; max_failure_pct: number; min_jobs: number } | undefined;
  /** Grows by one with every change of this model's desired versions. */
  revision: number;
  /** The history entry they come from. */
  rollout_id: number;
  /** When they last changed (ms). */
  since: number;
}

/** One model's entry of what `agent.desired` carries. */
export type WireDesired = z.infer<typeof AgentDesired>["models"][number];

/** A purged version as `agent.desired` names it. */
export type WirePurged = NonNullable<z.infer<typeof AgentDesired>["purged"]>[number];

/** What `agent.desired` carries, less its envelope. */
export type DesiredBody = Pick<z.infer<typeof AgentDesired>, "models" | "purged">;

/** A version's figures over its window. */
export interface Figures {
  jobs: number;
  failed: number;
}

/** An agent's report of one version of a model, as the registry keeps it. */
export interface AgentVersionRow {
  agent_id: string;
  model: string;
  version: string;
  state: VersionState["state"];
  message: string | null;
}

/**
 * A model's desired versions after `entry` is applied (by a rollout file or an undo), given the
 * digests of its versions' records and what was desired before.
 */
export function desiredAfterApply(
  model: string,
  entry: ModelRollout,
  digests: { stable: string; canary?: string | undefined },
  held: ModelDesired | undefined,
  rolloutId: number,
  now: number,
): ModelDesired {
  const canary = entry.canary;
  return {
    model,
    stable: { version: entry.version, digest: digests.stable },
    ...(canary && digests.canary !== undefined
      ? {
          canary: {
            version: canary.version,
            digest: digests.canary,
            percent: canary.percent,
            max_failure_pct: canary.max_failure_pct,
            min_jobs: canary.min_jobs,
          },
        }
      : {}),
    revision: (held?.revision ?? 0) + 1,
    rollout_id: rolloutId,
    since: now,
  };
}

/** A model's desired versions once its canary is reverted: the stable alone. */
export function desiredAfterRevert(held: ModelDesired, now: number): ModelDesired {
  const { canary: _canary, ...rest } = held;
  return { ...rest, revision: held.revision + 1, since: now };
}

/**
 * A model's configuration once a rollout sets it from its stable version's manifest: the
 * manifest's input schema, expected run time and outputs (none when it names none), the rest as
 * it was (or the defaults, for a model made by the rollout). `undefined` when nothing changes.
 */
export function modelBodyFrom(prev: ModelConfig | undefined, manifest: VersionManifest): ModelConfigBody | undefined {
  let prevBody: Partial<ModelConfigBody> = {};
  if (prev) {
    const { name: _n, number: _k, updated_at: _u, ...rest } = prev;
    prevBody = rest;
  }
  const { outputs: _o, ...kept } = prevBody;
  const body = ModelConfigBody.parse({
    ...kept,
    input_schema: manifest.input_schema,
    expected_runtime_s: manifest.expected_runtime_s,
    ...(manifest.outputs ? { outputs: manifest.outputs } : {}),
  });
  return prev && JSON.stringify(prevBody) === JSON.stringify(body) ? undefined : body;
}

/** The versions a model's desired state names (stable first). */
export function desiredVersions(d: ModelDesired): string[] {
  return d.canary ? [d.stable.version, d.canary.version] : [d.stable.version];
}

/** What a scheduler shard needs of a model's desired versions. */
export function laneDesired(d: ModelDesired): LaneDesired {
  return {
    stable: d.stable.version,
    ...(d.canary ? { canary: { version: d.canary.version, percent: d.canary.percent } } : {}),
    revision: d.revision,
  };
}

/** What an agent is told of a model's desired versions (`agent.desired`). */
export function wireDesired(d: ModelDesired): WireDesired {
  return {
    model: d.model,
    stable: { version: d.stable.version, digest: d.stable.digest },
    ...(d.canary ? { canary: { version: d.canary.version, digest: d.canary.digest, percent: d.canary.percent } } : {}),
  };
}

/** failed / jobs in percent, to two decimals; 0 without jobs. */
export function failurePct(f: Figures): number {
  return f.jobs === 0 ? 0 : Math.round((f.failed / f.jobs) * 10_000) / 100;
}

/**
 * Whether a model's canary must be reverted now, and why: it failed to load on some agent and
 * serves on none (`load_failed`, at once, whatever the figures), or it has ended at least
 * `min_jobs` jobs and more than `max_failure_pct` of them failed (`failure_rate`). `states`
 * are the canary's states as the model's agents report them.
 */
export function canaryVerdict(
  d: ModelDesired,
  figures: Figures,
  states: readonly VersionState["state"][],
): RevertReason | undefined {
  const c = d.canary;
  if (!c) return undefined;
  if (states.includes("failed") && !states.includes("serving")) return "load_failed";
  // Compared exactly (no rounding): failed / jobs > max_failure_pct / 100.
  if (figures.jobs >= c.min_jobs && figures.failed * 100 > c.max_failure_pct * figures.jobs) return "failure_rate";
  return undefined;
}

/**
 * The loads that failed anew in an agent's report: versions it now says `failed` that it did
 * not say `failed` before (each counts once as a failed job of that version).
 */
export function newlyFailed(
  before: readonly Pick<AgentVersionRow, "model" | "version" | "state">[],
  after: readonly VersionState[],
): { model: string; version: string }[] {
  const was = new Set(before.filter((r) => r.state === "failed").map((r) => `${r.model}\n${r.version}`));
  const seen = new Set<string>();
  return after.flatMap((s) => {
    const key = `${s.model}\n${s.version}`;
    if (s.state !== "failed" || was.has(key) || seen.has(key)) return [];
    seen.add(key);
    return [{ model: s.model, version: s.version }];
  });
}

function stateKey(r: { model: string; version: string; state: string; message?: string | null | undefined }): string {
  return `${r.model}\n${r.version}\n${r.state}\n${r.message ?? ""}`;
}

/** Whether an agent's version states differ from what the registry holds for it. */
export function statesChanged(
  before: readonly Pick<AgentVersionRow, "model" | "version" | "state" | "message">[],
  after: readonly VersionState[],
): boolean {
  const a = new Set(before.map(stateKey));
  const b = new Set(after.map(stateKey));
  return a.size !== b.size || [...a].some((k) => !b.has(k));
}

/**
 * What `rollout undo MODEL` applies again: among the history entries naming the model, newest
 * first, the one before the newest (so a second undo goes back again, as `kubectl rollout
 * undo` does); `undefined` when there is none.
 */
export function undoTarget(
  entries: readonly { id: number; models: Record<string, ModelRollout> }[],
  model: string,
): { id: number; entry: ModelRollout } | undefined {
  const naming = entries.filter((e) => e.models[model] !== undefined);
  const previous = naming[1];
  const entry = previous?.models[model];
  return previous && entry ? { id: previous.id, entry } : undefined;
}

/** A revert's record, as `rollout status` shows it. */
export function revertRecord(at: number, version: string, reason: RevertReason, f: Figures): RevertRecord {
  return {
    at: new Date(at).toISOString(),
    version,
    reason,
    jobs: f.jobs,
    failed: f.failed,
    failure_pct: failurePct(f),
  };
}

/** One model's rollout status, from what the registry holds. */
export function modelStatus(
  d: ModelDesired,
  windows: readonly { version: string; jobs: number; failed: number; since: number }[],
  agents: readonly AgentVersionRow[],
  reverts: readonly RevertRecord[],
): ModelRolloutStatus {
  const counts: ModelRolloutStatus["agents"] = {};
  for (const a of agents) {
    const c = (counts[a.version] ??= { loading: 0, serving: 0, failed: 0 });
    c[a.state] += 1;
  }
  const window: ModelRolloutStatus["window"] = {};
  for (const w of windows) {
    window[w.version] = {
      jobs: w.jobs,
      failed: w.failed,
      failure_pct: failurePct(w),
      since: new Date(w.since).toISOString(),
    };
  }
  return {
    stable: d.stable,
    ...(d.canary ? { canary: d.canary } : {}),
    rollout_id: d.rollout_id,
    since: new Date(d.since).toISOString(),
    agents: counts,
    agent_versions: agents.map((a) => ({
      agent_id: a.agent_id,
      version: a.version,
      state: a.state,
      ...(a.message === null ? {} : { message: a.message }),
    })),
    window,
    reverts: [...reverts],
  };
}
