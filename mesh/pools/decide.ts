/**
 * How many agents each pool should have, decided from the demand signal (shared/capacity.ts):
 * pure, run by the PoolsActor's alarm and by the burst benchmark's simulated provisioner.
 *
 * - A model's agents needed are split over the pools that serve it, lowest `priority` first,
 *   each up to its `max` (so cloud on-demand can grow before a training cluster, or after).
 * - A pool grows at once to the mean need over its short burst window (rounded up), by at most
 *   `step_up` a decision: a launch-day spike is met within seconds, while one noisy reading is
 *   not (the need moves with measured run times and grant rates).
 * - It shrinks only to the mean need over its stable window (rounded up), only `cooldown_s`
 *   after it last grew, by at most `step_down` a decision and one decision per burst window, and never
 *   below `min` (0: scale to zero). Only idle agents are named for removal: a busy agent is
 *   never removed, so the pool keeps at least its busy agents.
 */
import type { PoolSpec } from "../../shared/pools.ts";

/** A connected agent of a pool as the decision sees it. */
export interface PoolAgent {
  id: string;
  /** Leases it holds. */
  running: number;
}

/** What a pool's decisions remember between alarms (ms times). */
export interface PoolState {
  desired: number;
  lastUpAt: number;
  lastDownAt: number;
  /** The pool's target at each decision over its stable window. */
  needs: { at: number; n: number }[];
}

/** A change of a pool's desired count: what its provisioner or webhook is told. */
export interface PoolChange {
  desired: number;
  remove: string[];
  reason: string;
}

/** A new pool's state: it starts at the agents it has (within its bounds), so applying shrinks nothing at once. */
export function initialState(spec: PoolSpec, connected: number, now: number): PoolState {
  return { desired: Math.min(spec.max, Math.max(spec.min, connected)), lastUpAt: now, lastDownAt: now, needs: [] };
}

/**
 * Splits each model's agents needed over the pools serving it: lowest priority first (then by
 * name), each pool up to its max. Answers each pool's target before its min applies.
 */
export function targets(
  pools: ReadonlyMap<string, PoolSpec>,
  needs: Readonly<Record<string, number>>,
): Map<string, number> {
  const order = [...pools].sort(([a, x], [b, y]) => x.priority - y.priority || a.localeCompare(b));
  const alloc = new Map<string, number>(order.map(([name]) => [name, 0]));
  for (const [model, need] of Object.entries(needs)) {
    let left = Math.max(0, need);
    for (const [name, spec] of order) {
      if (left === 0) break;
      if (!spec.models.includes(model)) continue;
      const held = alloc.get(name) ?? 0;
      const take = Math.min(left, Math.max(0, spec.max - held));
      alloc.set(name, held + take);
      left -= take;
    }
  }
  return alloc;
}

/** The mean need over the window, rounded up: a noisy need's maximum would hold a pool too high. */
function meanSince(needs: readonly { at: number; n: number }[], since: number): number {
  let sum = 0;
  let count = 0;
  for (const x of needs) {
    if (x.at < since) continue;
    sum += x.n;
    count++;
  }
  return count === 0 ? 0 : Math.ceil(sum / count - 1e-9);
}

/**
 * One decision for one pool: its new state, and the change to ask for when its desired count
 * moves (or idle agents are to go). `agents` are its connected agents.
 */
export function decide(
  spec: PoolSpec,
  state: PoolState,
  target: number,
  agents: readonly PoolAgent[],
  now: number,
): { state: PoolState; change?: PoolChange } {
  const windowMs = spec.window_s * 1000;
  const burstMs = spec.burst_window_s * 1000;
  const needs = [...state.needs.filter((x) => x.at > now - windowMs), { at: now, n: target }];
  const next: PoolState = { ...state, needs };
  const cur = state.desired;
  const burst = Math.min(spec.max, Math.max(spec.min, meanSince(needs, now - burstMs)));
  if (burst > cur) {
    const desired = Math.min(burst, cur + spec.step_up);
    return {
      state: { ...next, desired, lastUpAt: now },
      change: { desired, remove: [], reason: `need ${burst} over the last ${spec.burst_window_s} s; had ${cur}` },
    };
  }
  if (cur > spec.max) {
    return shrink(spec, next, cur, spec.max, agents, now, `above max ${spec.max}`);
  }
  const stable = Math.max(spec.min, meanSince(needs, now - windowMs));
  const cooled = now - state.lastUpAt >= spec.cooldown_s * 1000 && now - state.lastDownAt >= burstMs;
  if (stable < cur && cooled) {
    return shrink(
      spec,
      next,
      cur,
      Math.max(stable, cur - spec.step_down),
      agents,
      now,
      `need at most ${stable} over the last ${spec.window_s} s; had ${cur}`,
    );
  }
  return { state: next };
}

/** Shrinks towards `to`, naming only idle agents for removal and never going below the busy ones. */
function shrink(
  _spec: PoolSpec,
  next: PoolState,
  cur: number,
  to: number,
  agents: readonly PoolAgent[],
  now: number,
  reason: string,
): { state: PoolState; change?: PoolChange } {
  const idle = agents
    .filter((a) => a.running === 0)
    .map((a) => a.id)
    .sort();
  const excess = Math.max(0, agents.length - to);
  const remove = idle.slice(0, excess);
  // Busy agents stay: the pool keeps every connected agent not named for removal.
  const desired = Math.max(to, agents.length - remove.length);
  if (desired >= cur && remove.length === 0) return { state: next };
  return {
    state: { ...next, desired, lastDownAt: now },
    change: { desired, remove, reason },
  };
}
