/**
 * Reads the fleet for the demand signal: every model's shards' loads (in-memory counts, no
 * query per job) and every connected agent as its actor sees it, merged by
 * shared/capacity.ts. Called by the edge's capacity route and by the PoolsActor's alarm.
 */
import { demand, type CapacityView, type ShardLoad } from "../shared/capacity.ts";
import { schedulerName } from "../shared/ids.ts";
import type { AgentActor } from "./agent-actor.ts";
import type { RegistryActor } from "./registry-actor.ts";
import { actor, eachLimited } from "./remote.ts";
import type { SchedulerActor } from "./scheduler-actor.ts";

/** Agents' actors asked at once. */
const AGENTS_AT_ONCE = 32;

/** A connected agent, as the fleet reading keeps it. */
export interface FleetAgent {
  agent_id: string;
  pool: string;
  models: string[];
  slots: number;
  running: number;
  preemptible: boolean;
}

/** The demand signal of every model, the connected agents it counted, and each model's shard loads. */
export async function readFleet(
  env: Env,
): Promise<{ view: CapacityView; agents: FleetAgent[]; loads: Map<string, ShardLoad[]> }> {
  const registry = actor<RegistryActor>(env.REGISTRY, "global");
  const [{ models }, known] = await Promise.all([registry.snapshot(), registry.agents()]);
  const agents: FleetAgent[] = [];
  const loads = Promise.all(
    models.map(async (m) => {
      const all = await Promise.all(
        Array.from(
          { length: m.shards },
          async (_, shard) =>
            await actor<SchedulerActor>(env.SCHEDULER, schedulerName({ modelNumber: m.number, shard }))
              .load()
              .catch(() => null),
        ),
      );
      return all.filter((l): l is ShardLoad => l !== null);
    }),
  );
  await eachLimited(known, AGENTS_AT_ONCE, async (a) => {
    const info = await actor<AgentActor>(env.AGENT, a.agent_id)
      .info()
      .catch(() => ({ connected: false as const }));
    if (!info.connected) return;
    agents.push({
      agent_id: info.agent_id,
      pool: info.pool,
      models: info.models,
      slots: info.slots,
      running: info.running,
      preemptible: info.preemptible,
    });
  });
  const byModel = await loads;
  const view: CapacityView = { models: {} };
  const loadsOf = new Map<string, ShardLoad[]>();
  models.forEach((m, i) => {
    const l = byModel[i] ?? [];
    loadsOf.set(m.name, l);
    view.models[m.name] = demand(
      l,
      agents.filter((a) => a.models.includes(m.name)),
    );
  });
  return { view, agents, loads: loadsOf };
}
