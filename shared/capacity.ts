/**
 * The demand signal: from what a model's shards already count (queued and running jobs per tier,
 * the oldest wait, the grant rate, the measured run time) and the agents that serve the model
 * (their slots), how many agents keep every tier within its SLO, and how long until the first
 * SLO breach if nothing changes. Pure: the admin capacity route, the provisioner's decisions and
 * the burst benchmark run the same math.
 *
 * The model (docs/architecture.md, "Capacity"): a slot starts one job every `cost_s` seconds.
 * The pick serves tiers by wait/SLO, so within the `headroom` a tier's oldest job has left
 * (`slo_s − oldest wait`), the queued jobs of that tier and of every tier with a tighter SLO
 * must start. Over that headroom, `cost_s · queued / headroom` slots clear them; the work that
 * keeps arriving takes `grant rate · cost_s` slots more (Little's law); what runs now keeps its
 * slots until it ends.
 */
import { z } from "zod";

/** One tier of one shard as the demand signal reads it (in-memory counts, no query per job). */
export const TierLoad = z.object({
  tier: z.string(),
  /** The tier's waiting-time objective (s). */
  slo_s: z.number().positive(),
  queued: z.number().int().nonnegative(),
  running: z.number().int().nonnegative(),
  /** How long the tier's oldest queued job has waited (s); 0 with none queued. */
  oldest_wait_s: z.number().nonnegative(),
  /** Grants per second, a decayed average over about a minute. */
  drain_per_s: z.number().nonnegative(),
});
export type TierLoad = z.infer<typeof TierLoad>;

/** One shard's load: its tiers, and the service time of one job it measured (s). */
export const ShardLoad = z.object({
  cost_s: z.number().positive(),
  tiers: z.array(TierLoad),
});
export type ShardLoad = z.infer<typeof ShardLoad>;

/** One model's capacity, as `GET /v1/admin/capacity` shows it. */
export const ModelCapacity = z.object({
  /** Connected agents whose token serves the model. */
  agents_connected: z.number().int().nonnegative(),
  /** Agents that keep every tier within its SLO: 0 when nothing is queued, running or arriving. */
  agents_needed: z.number().int().nonnegative(),
  /** Jobs running now (each holds one slot). */
  slots_busy: z.number().int().nonnegative(),
  /** Slots of the connected agents, together. */
  slots_total: z.number().int().nonnegative(),
  queued: z.number().int().nonnegative(),
  /** Seconds until the first queued job passes its tier's SLO at the present capacity; null when none will. */
  first_breach_s: z.number().nonnegative().nullable(),
});
export type ModelCapacity = z.infer<typeof ModelCapacity>;

export const CapacityView = z.object({ models: z.record(z.string(), ModelCapacity) });
export type CapacityView = z.infer<typeof CapacityView>;

/** An agent serving the model, as the demand signal counts it. */
export interface AgentSlots {
  slots: number;
}

/** Tiers of several shards of one model, merged by name (counts add up; the oldest wait is the largest). */
export function mergeLoads(loads: readonly ShardLoad[]): { cost_s: number; tiers: TierLoad[] } {
  const tiers = new Map<string, TierLoad>();
  let costSum = 0;
  let costWeight = 0;
  for (const load of loads) {
    // Shards weigh their measured run time by the work they hold, so an idle shard's stale
    // estimate does not dilute a busy one's.
    const w = load.tiers.reduce((n, t) => n + t.queued + t.running, 0) + 1e-9;
    costSum += load.cost_s * w;
    costWeight += w;
    for (const t of load.tiers) {
      const held = tiers.get(t.tier);
      tiers.set(
        t.tier,
        held
          ? {
              tier: t.tier,
              slo_s: Math.min(held.slo_s, t.slo_s),
              queued: held.queued + t.queued,
              running: held.running + t.running,
              oldest_wait_s: Math.max(held.oldest_wait_s, t.oldest_wait_s),
              drain_per_s: held.drain_per_s + t.drain_per_s,
            }
          : { ...t },
      );
    }
  }
  return { cost_s: costWeight > 0 ? costSum / costWeight : 1, tiers: [...tiers.values()] };
}

/**
 * Slots needed to keep every tier within its SLO: the running jobs' slots or the steady arrival
 * rate's (whichever is more), plus the slots that clear each tier's backlog (and that of every
 * tier with a tighter SLO) within the headroom its oldest job has left, less `startupS` (how
 * long a new agent takes to serve, when the answer sizes a pool that has to start them). A
 * headroom shorter than one job's run time counts as one run time: no number of slots starts
 * work sooner than now.
 */
export function slotsNeeded(costS: number, tiers: readonly TierLoad[], startupS = 0): number {
  const byUrgency = [...tiers].sort((a, b) => a.slo_s - b.slo_s);
  let ahead = 0;
  let backlog = 0;
  for (const t of byUrgency) {
    ahead += t.queued;
    if (t.queued === 0) continue;
    // New agents help only a tier whose headroom outlasts their start-up; a tighter one is sized
    // on its own headroom (more agents than its backlog cannot start it sooner).
    const left = t.slo_s - t.oldest_wait_s;
    const headroom = Math.max(costS, left - startupS > costS ? left - startupS : left);
    backlog = Math.max(backlog, (costS * ahead) / headroom);
  }
  const running = tiers.reduce((n, t) => n + t.running, 0);
  // The grant rate is a decayed average that lingers for minutes after the work stops: with
  // nothing queued or running there is nothing to serve now (the pools' stable window keeps
  // agents over the gaps between bursts).
  if (running === 0 && ahead === 0) return 0;
  const arriving = tiers.reduce((n, t) => n + t.drain_per_s, 0) * costS;
  const steady = Math.max(running, arriving);
  // A rounding guard: 2.0000001 slots of float noise is 2.
  return Math.max(0, Math.ceil(steady + backlog - 1e-6));
}

/**
 * Seconds until the first queued job passes its SLO with `slots` serving: a tier whose backlog
 * (with every tighter tier's) takes longer to start than its oldest job's headroom breaches when
 * that headroom runs out. `null` when every tier's backlog starts in time.
 */
export function firstBreachS(costS: number, tiers: readonly TierLoad[], slots: number): number | null {
  const byUrgency = [...tiers].sort((a, b) => a.slo_s - b.slo_s);
  let ahead = 0;
  let first: number | null = null;
  for (const t of byUrgency) {
    ahead += t.queued;
    if (t.queued === 0) continue;
    const headroom = Math.max(0, t.slo_s - t.oldest_wait_s);
    const clears = slots > 0 ? (costS * ahead) / slots : Number.POSITIVE_INFINITY;
    if (clears > headroom) first = first === null ? headroom : Math.min(first, headroom);
  }
  return first === null ? null : Math.round(first * 10) / 10;
}

/**
 * One model's capacity from its shards' loads and its connected agents. Agents needed are slots
 * needed over the slots of an agent that serves the model (their mean; 1 when none is connected);
 * `startupS` as for {@link slotsNeeded} (the pools' decisions pass their agents' start-up time).
 *
 * @example
 * demand([{ cost_s: 10, tiers: [{ tier: "api", slo_s: 60, queued: 30, running: 0, oldest_wait_s: 0, drain_per_s: 0 }] }], [])
 * // → { agents_needed: 5, agents_connected: 0, first_breach_s: 60, … }
 */
export function demand(loads: readonly ShardLoad[], agents: readonly AgentSlots[], startupS = 0): ModelCapacity {
  const { cost_s, tiers } = mergeLoads(loads);
  const slotsTotal = agents.reduce((n, a) => n + Math.max(0, a.slots), 0);
  const perAgent = agents.length > 0 ? Math.max(1, slotsTotal / agents.length) : 1;
  const needed = slotsNeeded(cost_s, tiers, startupS);
  return {
    agents_connected: agents.length,
    agents_needed: Math.max(0, Math.ceil(needed / perAgent - 1e-6)),
    slots_busy: tiers.reduce((n, t) => n + t.running, 0),
    slots_total: slotsTotal,
    queued: tiers.reduce((n, t) => n + t.queued, 0),
    first_breach_s: firstBreachS(cost_s, tiers, slotsTotal),
  };
}
