/**
 * The fault plan of a chaos run: drawn up front from a seed, bounded in time. Every fault starts
 * and ends inside the window; which agent a fault hits is drawn from the same seed when it fires
 * (`pick`, a number in [0, 1) the run maps onto the agents it has then).
 */
import { rng } from "../../shared/rng.ts";

export type FaultKind =
  /** `kill -9` of an agent and its runner; a new agent starts (same id or a new one). */
  | "kill"
  /** Resets an agent's connections (its WebSocket and uploads); it reconnects at once. */
  | "cut"
  /** Resets an agent's connections and refuses new ones for `duration_ms`, past the reconnect grace. */
  | "partition"
  /** SIGSTOP of an agent and its runner for `duration_ms`, past its lease; then SIGCONT. */
  | "stall"
  /** SIGSTOP of an agent holding leases (its runner goes on) for `duration_ms`; then SIGCONT. */
  | "zombie"
  /** The edge process stops (SIGTERM, or SIGKILL when `harsh`) and starts again on its state. */
  | "edge";

export interface PlannedFault {
  at_ms: number;
  kind: FaultKind;
  duration_ms: number;
  harsh: boolean;
  /** Chooses the agent when the fault fires. */
  pick: number;
  /** Whether a killed agent's replacement keeps its id (a restarted machine) or is a new one. */
  same_id: boolean;
}

export interface FaultMix {
  /** Mean interval between kills (ms); each interval is drawn from [½, 1½] of it. 0: none. */
  kill_every_ms: number;
  /** Mean interval between connection cuts (ms). 0: none. */
  cut_every_ms: number;
  partitions: number;
  partition_ms: number;
  stalls: number;
  zombies: number;
  /** How long a stall or zombie lasts (ms): longer than a lease. */
  stop_ms: number;
  /** Edge restarts; the first is SIGTERM, the others SIGKILL. */
  edge_restarts: number;
  /** Where in the window (shares, first and last) each kind of one-off fault goes, when not the default. */
  at?: Partial<Record<"zombie" | "stall" | "partition" | "edge", [number, number]>>;
}

const AT: Record<"zombie" | "stall" | "partition" | "edge", [number, number]> = {
  zombie: [0.08, 0.3],
  stall: [0.45, 0.7],
  partition: [0.2, 0.8],
  edge: [0.6, 0.9],
};

/** Draws the faults of a run of `window_ms` from `seed`, in time order. */
export function planFaults(seed: number, windowMs: number, mix: FaultMix): PlannedFault[] {
  const draw = rng(seed);
  const out: PlannedFault[] = [];
  const add = (at: number, kind: FaultKind, duration = 0, harsh = false): void => {
    if (at < 0 || at + duration > windowMs) return;
    out.push({ at_ms: Math.round(at), kind, duration_ms: duration, harsh, pick: draw(), same_id: draw() < 0.5 });
  };
  const periodic = (every: number, kind: FaultKind): void => {
    if (every <= 0) return;
    for (let at = every * (0.5 + draw()); at < windowMs; at += every * (0.5 + draw())) add(at, kind);
  };
  periodic(mix.kill_every_ms, "kill");
  periodic(mix.cut_every_ms, "cut");
  // One-off faults spread over the window, each at a jittered share of it.
  const spread = (n: number, kind: keyof typeof AT, duration: number, harsh: (i: number) => boolean) => {
    const [from, to] = mix.at?.[kind] ?? AT[kind];
    for (let i = 0; i < n; i++) {
      const share = n === 1 ? (from + to) / 2 : from + ((to - from) * i) / (n - 1);
      const latest = windowMs - duration;
      add(Math.min(latest, windowMs * share + (draw() - 0.5) * 0.05 * windowMs), kind, duration, harsh(i));
    }
  };
  spread(mix.zombies, "zombie", mix.stop_ms, () => false);
  spread(mix.stalls, "stall", mix.stop_ms, () => false);
  spread(mix.partitions, "partition", mix.partition_ms, () => false);
  spread(mix.edge_restarts, "edge", 0, (i) => i > 0);
  return out.sort((a, b) => a.at_ms - b.at_ms);
}
