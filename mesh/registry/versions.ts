/**
 * Where the registry reads a model's versions: the model repository keeps them, one actor per
 * model name on the `VERSIONS` namespace. The one place the registry reaches it, so what it
 * asks is written once: a ready version's record, or nothing.
 *
 * Called by RegistryActor when a rollout is applied or undone.
 */
import { fail, type Failure } from "../../shared/errors.ts";
import type { ModelRollout, VersionRecord } from "../../shared/repository.ts";
import type { ReadModel } from "./ledger.ts";
import { actor } from "../remote.ts";

/** What the registry asks of a model's versions actor. */
export interface VersionReader {
  /** A ready version's record; `null` when the version is unknown or not ready. */
  record(version: string): Promise<VersionRecord | null>;
}

/**
 * A model's ready version, or why it cannot be used: `version_not_found` (unknown, or not every
 * piece stored yet).
 */
export async function readyVersion(
  env: Env,
  model: string,
  version: string,
): Promise<{ ok: true; record: VersionRecord } | Failure> {
  const record = await actor<VersionReader>(env.VERSIONS, model).record(version);
  if (!record || record.state !== "ready") {
    return fail("version_not_found", `model ${model} has no ready version ${JSON.stringify(version)}`);
  }
  return { ok: true, record };
}

/**
 * Every version a rollout names, read: each model's stable (and canary) must be ready, else the
 * first refusal.
 */
export async function readRollout(
  env: Env,
  models: Record<string, ModelRollout>,
): Promise<{ ok: true; models: ReadModel[] } | Failure> {
  const read = await Promise.all(
    Object.entries(models).map(async ([model, entry]): Promise<({ ok: true } & ReadModel) | Failure> => {
      const stable = await readyVersion(env, model, entry.version);
      if (!stable.ok) return stable;
      if (!entry.canary) return { ok: true, model, stable: stable.record };
      const canary = await readyVersion(env, model, entry.canary.version);
      return canary.ok ? { ok: true, model, stable: stable.record, canary: canary.record } : canary;
    }),
  );
  const out: ReadModel[] = [];
  for (const r of read) {
    if (!r.ok) return r;
    out.push(r.canary ? { model: r.model, stable: r.stable, canary: r.canary } : { model: r.model, stable: r.stable });
  }
  return { ok: true, models: out };
}
