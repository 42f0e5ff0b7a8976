/**
 * Where the registry reads a model's versions: the model repository keeps them, one actor per
 * model name on the `VERSIONS` namespace. The one place the registry reaches it, so what it
 * asks is written once: a ready version's record, or nothing.
 *
 * Called by RegistryActor when a rollout is applied or undone.
 */
import { fail, type Failure } from "../../shared/errors.ts";
import type { VersionRecord } from "../../shared/repository.ts";
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
