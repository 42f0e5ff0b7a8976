/**
 * The Worker's cache of the registry snapshot (models, tiers, desired versions) and of each model's compiled input
 * validator. A submit reads only this cache; the registry actor is asked at most once per
 * `CONFIG_CACHE_S` per isolate, and at once after this isolate changed the configuration.
 */
import { Validator, type Schema } from "@cfworker/json-schema";
import { shardSpan, type ModelConfig } from "../shared/api.ts";
import { FloodgateError } from "../shared/errors.ts";
import { parseJobId, type JobRoute } from "../shared/ids.ts";
import type { TierConfig } from "../shared/slo.ts";
import { actor, laneDesired, type LaneDesired, type RegistryActor } from "../mesh/index.ts";

interface Cached {
  until: number;
  tiers: TierConfig[];
  byName: Map<string, ModelConfig>;
  byNumber: Map<number, ModelConfig>;
  /** Per model with a rollout, what its shards route by (sent with every enqueue). */
  lanes: Map<string, LaneDesired>;
}

let cached: Cached | undefined;
/** When this isolate last read the registry because a job id named a model or shard it did not know (ms). */
let missReadAt = 0;
/**
 * At most one such read per isolate in this time (ms): a model registered a moment ago is found
 * at once, and a flood of made-up ids costs the registry one read a second per isolate.
 */
const MISS_READ_MS = 1_000;
let inflight: Promise<Cached> | undefined;
const validators = new Map<string, { updatedAt: string; validator: Validator }>();

export function registryStub(env: Env) {
  return actor<RegistryActor>(env.REGISTRY, "global");
}

/** Drops the cached snapshot, after this isolate changed the configuration. */
export function invalidateRegistry(): void {
  cached = undefined;
}

export async function registry(env: Env): Promise<Cached> {
  const now = Date.now();
  if (cached && cached.until > now) return cached;
  inflight ??= (async () => {
    try {
      const snap = await registryStub(env).snapshot();
      const next: Cached = {
        until: Date.now() + Number(env.CONFIG_CACHE_S) * 1000,
        tiers: snap.tiers,
        byName: new Map(snap.models.map((m) => [m.name, m])),
        byNumber: new Map(snap.models.map((m) => [m.number, m])),
        lanes: new Map(snap.desired.map((d) => [d.model, laneDesired(d)])),
      };
      cached = next;
      return next;
    } finally {
      inflight = undefined;
    }
  })();
  return inflight;
}

function routeIn(snap: Cached, route: JobRoute): boolean {
  const model = snap.byNumber.get(route.modelNumber);
  return model !== undefined && route.shard < shardSpan(model);
}

/**
 * The scheduler shard of a job id, checked against the registry: a malformed id, or one naming a
 * model or shard that does not exist, is `404 job_not_found` before any scheduler is asked (so a
 * made-up id never creates a scheduler). A model's shard span only grows and models are never
 * removed, so a shard once known stays valid.
 */
export async function jobRoute(env: Env, id: string): Promise<JobRoute> {
  const route = parseJobId(id);
  if (!route) throw new FloodgateError("job_not_found", `no job ${id}`);
  if (routeIn(await registry(env), route)) return route;
  if (Date.now() - missReadAt >= MISS_READ_MS) {
    missReadAt = Date.now();
    invalidateRegistry();
    if (routeIn(await registry(env), route)) return route;
  }
  throw new FloodgateError("job_not_found", `no job ${id}`);
}

export async function modelByName(env: Env, name: string): Promise<ModelConfig> {
  const m = (await registry(env)).byName.get(name);
  if (!m)
    throw new FloodgateError("model_not_found", `no model ${JSON.stringify(name)}; GET /v1/admin/models lists them`);
  return m;
}

/** Checks a job input against its model's JSON Schema; 400 names the first offending field. */
export function validateInput(model: ModelConfig, input: unknown, at = "input"): void {
  let entry = validators.get(model.name);
  if (!entry || entry.updatedAt !== model.updated_at) {
    // @cfworker/json-schema interprets schemas without generating code: workerd forbids
    // `new Function`, which compiling validators need.
    entry = { updatedAt: model.updated_at, validator: new Validator(model.input_schema as Schema, "2020-12", false) };
    validators.set(model.name, entry);
  }
  const result = entry.validator.validate(input);
  if (!result.valid) {
    const leaf = result.errors.at(-1) ?? result.errors[0];
    const where = leaf ? leaf.instanceLocation.replace(/^#\/?/, "").replaceAll("/", ".") : "";
    throw new FloodgateError(
      "invalid_input",
      `${at}${where ? `.${where}` : ""}: ${leaf?.error ?? "does not match the model's input schema"}`,
    );
  }
}

/** Whether a JSON Schema can be used as a model's input schema. */
export function checkSchema(schema: unknown): string | undefined {
  try {
    const v = new Validator(schema as Schema, "2020-12", false);
    v.validate({});
    return undefined;
  } catch (err) {
    return String(err);
  }
}
