/**
 * Which scheduler shards an agent deals with: every shard of every model its token allows (a
 * model's shard span is in its configuration: draining shards included), each with the versions of that model the agent
 * said it serves; and leases grouped by the shard that holds them (a job id names its shard).
 * Written once here, for every loop an agent's actor runs over shards.
 *
 * Called by the AgentActor and its frame handler.
 */
import { shardSpan, type ModelConfig } from "../../shared/api.ts";
import { parseJobId, schedulerName } from "../../shared/ids.ts";
import type { VersionState } from "../../shared/wire.ts";

/** One shard an agent deals with. */
export interface ShardRoute {
  /** The scheduler actor's name (`m<model number>.s<shard>`). */
  name: string;
  model: string;
  /** The versions of the model the agent serves now; empty: none said. */
  versions: string[];
}

/**
 * The shards of the models an agent's token allows. With `versions` (its hello's or last
 * heartbeat's), only the models of which it serves a version, when it listed any.
 */
export function shardsServed(
  models: readonly ModelConfig[],
  tokenModels: readonly string[],
  versions: readonly VersionState[] = [],
): ShardRoute[] {
  const serving = versions.filter((v) => v.state === "serving");
  const loaded = new Set(serving.map((v) => v.model));
  return models
    .filter((m) => tokenModels.includes(m.name) && (versions.length === 0 || loaded.has(m.name)))
    .flatMap((m) =>
      Array.from({ length: shardSpan(m) }, (_, shard) => ({
        name: schedulerName({ modelNumber: m.number, shard }),
        model: m.name,
        versions: serving.filter((v) => v.model === m.name).map((v) => v.version),
      })),
    );
}

/** Items naming jobs, grouped by the shard that holds each job; ids that name no shard are left out. */
export function byShard<T extends { job_id: string }>(items: readonly T[]): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const route = parseJobId(item.job_id);
    if (!route) continue;
    const name = schedulerName(route);
    const group = out.get(name);
    if (group) group.push(item);
    else out.set(name, [item]);
  }
  return out;
}
