/**
 * How a shard's lanes follow its model's rollout: which jobs are routed to the canary at
 * enqueue, which lanes an agent may take from, and which version a lease names. Pure; the
 * decisions of docs/architecture.md, "Scheduling" (versions and canaries).
 *
 * A lane is the jobs of a tier pinned to one version, or (`null`) the unpinned ones. A job its
 * owner pinned (`"version"` at submit) stays in that version's lane for life. An unpinned job
 * of a model with a canary is routed, at enqueue, to the canary's lane with the canary's share
 * of the jobs, drawn from its id so a retried submit of the same id lands the same way; routed
 * jobs go back to the unpinned lane when the canary is no longer the canary.
 *
 * Called by SchedulerCore and its queues.
 */
import type { Lane } from "./store.ts";

/** What a shard knows of its model's rollout: the versions its unpinned jobs run on. */
export interface LaneDesired {
  /** The version unpinned jobs run on. */
  stable: string;
  /** During a canary: its version and its share of the unpinned jobs (percent). */
  canary?: { version: string; percent: number } | undefined;
  /** Grows with every change of the model's desired versions, so an older one never wins. */
  revision: number;
}

/**
 * A number in [0, 1) drawn from a job id: FNV-1a over its characters, then murmur3's finaliser
 * so that every character moves the high bits too (ids differ mostly in their random middle).
 */
export function idFraction(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 2 ** 32;
}

/**
 * The lane of a new job: its pinned version, else the canary's with the canary's share (drawn
 * from the id), else the unpinned lane. `routed` says the lane was chosen here, not by its owner.
 */
export function laneAtEnqueue(
  id: string,
  pinned: string | undefined,
  desired: LaneDesired | undefined,
): { lane: Lane; routed: boolean } {
  if (pinned !== undefined) return { lane: pinned, routed: false };
  const canary = desired?.canary;
  if (canary && canary.percent > 0 && idFraction(id) * 100 < canary.percent) {
    return { lane: canary.version, routed: true };
  }
  return { lane: null, routed: false };
}

/**
 * Whether a routed job in `lane` must go back to the unpinned lane: its lane is no longer the
 * canary's (the canary was reverted, promoted or replaced).
 */
export function leavesLane(lane: Lane, desired: LaneDesired | undefined): boolean {
  return lane !== null && lane !== desired?.canary?.version;
}

/** Which lanes an agent may take from: those of the versions it serves, and maybe the unpinned one. */
export interface Reach {
  versions: readonly string[];
  /** Whether it may take unpinned jobs. */
  unpinned: boolean;
}

/**
 * An agent's reach: every version it serves (jobs pinned or routed there), and the unpinned
 * lane only when it serves a version other than the canary — or names none (an agent with a
 * fixed runner serves "any version"). An agent serving only the canary takes only the canary's
 * share.
 */
export function reachOf(versions: readonly string[] | undefined, desired: LaneDesired | undefined): Reach {
  const list = versions ?? [];
  const canary = desired?.canary?.version;
  return { versions: list, unpinned: list.length === 0 || list.some((v) => v !== canary) };
}

/** Whether an agent with `reach` may take jobs of `lane`. */
export function reaches(reach: Reach, lane: Lane): boolean {
  return lane === null ? reach.unpinned : reach.versions.includes(lane);
}

/**
 * The version a lease names: its lane's (pinned or routed); for an unpinned job the stable one
 * when the agent serves it, else another non-canary version it serves (it is switching over),
 * else none (an agent that named no versions runs what its runner serves).
 */
export function leaseVersion(
  lane: Lane,
  versions: readonly string[] | undefined,
  desired: LaneDesired | undefined,
): string | null {
  if (lane !== null) return lane;
  const list = versions ?? [];
  if (desired && list.includes(desired.stable)) return desired.stable;
  return list.find((v) => v !== desired?.canary?.version) ?? null;
}
