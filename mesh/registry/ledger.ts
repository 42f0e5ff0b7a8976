/**
 * The registry's rollout bookkeeping on its store: what an apply, an undo, a revert, a canary
 * analysis, an agent's version report and `rollout status` read and write, each synchronous
 * (no await between its reads and writes, so each is one event of the actor and one commit).
 * The decisions themselves are ./rollouts.ts's; telling shards and agents of a change is the
 * actor's (mesh/registry-actor.ts), which calls these.
 */
import type { ModelConfig } from "../../shared/api.ts";
import { fail, type Failure } from "../../shared/errors.ts";
import { MAX_MODEL_NUMBER } from "../../shared/ids.ts";
import type { ModelRollout, VersionManifest, VersionRecord } from "../../shared/repository.ts";
import type { RevertReason, RevertRecord, RolloutEntry, RolloutStatus } from "../../shared/rollouts.ts";
import type { VersionState } from "../../shared/wire.ts";
import {
  canaryVerdict,
  desiredAfterApply,
  desiredAfterRevert,
  desiredVersions,
  modelBodyFrom,
  modelStatus,
  newlyFailed,
  revertRecord,
  statesChanged,
} from "./rollouts.ts";
import type { RegistryStore, RolloutRow } from "./store.ts";

/** Reverts `rollout status` shows per model. */
const STATUS_REVERTS = 20;

/** A history row as the rollout routes answer it. */
export function entryOf(r: RolloutRow): RolloutEntry {
  return {
    id: r.id,
    applied_at: new Date(r.applied_at).toISOString(),
    by: r.by,
    kind: r.kind === "undo" ? "undo" : "apply",
    models: JSON.parse(r.models) as Record<string, ModelRollout>,
    source: r.source,
  };
}

/** A model of a rollout with its versions' records, read from the model repository. */
export interface ReadModel {
  model: string;
  stable: VersionRecord;
  canary?: VersionRecord;
}

/**
 * Records an applied rollout whose versions were read: refused when it would make more models
 * than a job id can name; else one history entry, each model's configuration from its stable
 * version's manifest (made when absent) and its desired versions.
 */
export function recordRollout(
  store: RegistryStore,
  models: Record<string, ModelRollout>,
  read: readonly ReadModel[],
  how: { source: string | null; by: string; kind: "apply" | "undo"; now: number },
): { ok: true; entry: RolloutEntry } | Failure {
  const fresh = Object.keys(models).filter((m) => !store.model(m)).length;
  if (fresh > 0 && store.nextModelNumber() + fresh - 1 > MAX_MODEL_NUMBER) {
    return fail("conflict", "the registry holds the most models a job id can name");
  }
  const { source, by, kind, now } = how;
  const id = store.addRollout({ applied_at: now, by, kind, models, source });
  for (const r of read) {
    const entry = models[r.model] as ModelRollout;
    configureFrom(store, r.model, r.stable.manifest, now);
    const digests = { stable: r.stable.digest, canary: r.canary?.digest };
    const d = desiredAfterApply(r.model, entry, digests, store.desired(r.model), id, now);
    store.setDesired(d, desiredVersions(d), now);
  }
  return { ok: true, entry: entryOf({ id, applied_at: now, by, kind, models: JSON.stringify(models), source }) };
}

/** Sets a model's configuration from a version's manifest (made when absent; kept when the same). */
function configureFrom(store: RegistryStore, name: string, manifest: VersionManifest, now: number): void {
  const held = store.model(name);
  const body = modelBodyFrom(held ? (JSON.parse(held.config) as ModelConfig) : undefined, manifest);
  if (!body) return;
  const number = held?.number ?? store.nextModelNumber();
  const config: ModelConfig = { ...body, name, number, updated_at: new Date(now).toISOString() };
  store.putModel({ name, number, config: JSON.stringify(config), updated_at: config.updated_at });
}

/**
 * Ends a model's canary: the revert recorded with the canary's figures, the desired versions
 * left with the stable alone. The caller tells the shards and agents.
 */
export function recordRevert(
  store: RegistryStore,
  model: string,
  reason: RevertReason,
  now: number,
): { ok: true; revert: RevertRecord } | Failure {
  const d = store.desired(model);
  if (!d?.canary) return fail("conflict", `model ${model} has no canary to revert`);
  const version = d.canary.version;
  const figures = store.window(model, version) ?? { jobs: 0, failed: 0 };
  store.addRevert({ model, at: now, version, reason, ...figures });
  const next = desiredAfterRevert(d, now);
  store.setDesired(next, desiredVersions(next), now);
  return { ok: true, revert: revertRecord(now, version, reason, figures) };
}

/** A model's canary analysis: why its canary must be reverted now, or undefined. */
export function verdictOf(store: RegistryStore, model: string): RevertReason | undefined {
  const d = store.desired(model);
  if (!d?.canary) return undefined;
  const figures = store.window(model, d.canary.version) ?? { jobs: 0, failed: 0 };
  return canaryVerdict(d, figures, store.versionStates(model, d.canary.version));
}

/**
 * Keeps an agent's version states: a load that failed counts as a failed job of a desired
 * version, once per agent in the version's window. Answers the models to analyse (none when
 * nothing changed).
 */
export function recordAgentVersions(store: RegistryStore, agentId: string, states: VersionState[]): Set<string> {
  const before = store.agentVersions(agentId);
  if (!statesChanged(before, states)) return new Set();
  store.setAgentVersions(
    agentId,
    states.map((s) => ({ model: s.model, version: s.version, state: s.state, message: s.message ?? null })),
  );
  for (const f of newlyFailed(before, states)) {
    if (store.noteLoadFailure(f.model, f.version, agentId)) store.addFigures(f.model, f.version, 1, 1);
  }
  return new Set([...before.map((r) => r.model), ...states.map((s) => s.model)]);
}

/** Every model with a rollout: desired versions, agents' versions, windows and reverts. */
export function rolloutStatusOf(store: RegistryStore): RolloutStatus {
  const models: RolloutStatus["models"] = {};
  for (const d of store.allDesired()) {
    const reverts = store
      .reverts(d.model, STATUS_REVERTS)
      .map((r) => revertRecord(r.at, r.version, r.reason as RevertReason, { jobs: r.jobs, failed: r.failed }));
    models[d.model] = modelStatus(d, store.windows(d.model), store.modelAgentVersions(d.model), reverts);
  }
  return { models };
}
