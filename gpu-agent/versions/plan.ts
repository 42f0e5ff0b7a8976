/**
 * What an agent serving the rollout does next, decided from what it is told to serve
 * (`agent.desired`), the versions it knows (fetching, ready in its cache, failed) and the
 * replicas it runs. Pure: the version manager (./manager.ts) calls {@link plan} whenever any
 * of these changes, carries out the actions and reports the states.
 *
 * The rules (docs/models.md, "What an agent does"):
 * - Every desired version (stable and canary) is fetched; the stable is started first, the
 *   canary beside it when the GPUs allow.
 * - A version asking `resources.gpus: N` runs as floor(budget / N) replicas of N GPUs each, the
 *   budget being the agent's GPUs (split evenly between models whose versions need GPUs); with a
 *   canary, the stable leaves room for one canary replica when it can still run one of its own.
 *   `gpus: 0` runs one replica on the CPU.
 * - A switch keeps the old version serving until the new one serves (some replicas serving, none
 *   still starting); then the old drains (takes no new jobs, finishes its own) and stops, and its
 *   GPUs go to the new one. When the new one cannot start a single replica for lack of free GPUs,
 *   just enough old replicas drain first to make room for one.
 * - A version that fails (to fetch, verify or load) is reported `failed` and its replicas drain;
 *   the model falls back to the version that last served here as its stable, restarted if its
 *   replicas were drained to make room.
 * - A version no longer desired, of a model whose stable serves (or of a model no longer in
 *   `agent.desired` at all), drains.
 */
import type { VersionState } from "../../shared/wire.ts";

/** A version named by `agent.desired`. */
export interface Wanted {
  version: string;
  digest: string;
}

/** One model's entry of `agent.desired`. */
export interface DesiredModel {
  model: string;
  stable: Wanted;
  canary?: Wanted & { percent: number };
}

/** A version this agent knows of. */
export interface KnownVersion {
  model: string;
  version: string;
  digest: string;
  /** `fetching` its record and pieces, `ready` in the cache (its manifest known), or `failed`. */
  phase: "fetching" | "ready" | "failed";
  /** While fetching, how far it got; once failed, why. */
  message?: string;
  /** Once ready: GPUs one replica needs (`resources.gpus`). */
  gpus?: number;
}

/** A runner process serving one version on some GPUs. */
export interface ReplicaView {
  id: number;
  model: string;
  version: string;
  gpus: readonly number[];
  /** `starting` (or restarting after a crash), `serving` (takes jobs), `draining` (takes none, stops when idle). */
  state: "starting" | "serving" | "draining";
}

export interface PlanInput {
  /** The indices of the GPUs this agent serves with (`--gpus`; pretend ones in tests). */
  gpus: readonly number[];
  desired: readonly DesiredModel[];
  known: readonly KnownVersion[];
  replicas: readonly ReplicaView[];
  /** Per model, the version that last served here as its desired stable: the one to fall back on. */
  lastStable: ReadonlyMap<string, string>;
}

export type Action =
  | { kind: "fetch"; model: string; version: string; digest: string }
  | { kind: "start"; model: string; version: string; gpus: number[] }
  | { kind: "drain"; replica: number; reason: string };

export interface Plan {
  actions: Action[];
  /** What to report in `agent.hello` / `agent.heartbeat` `versions`. */
  states: VersionState[];
  /** Per model, the version its unpinned leases run on here (the stable, or what it fell back to). */
  stable: Map<string, string>;
  /** Replicas wanted per version (`model@version`). */
  targets: Map<string, number>;
}

/** The key of a model version in maps. */
export function versionKey(model: string, version: string): string {
  return `${model}@${version}`;
}

/** Longest `message` a version state carries (shared/wire.ts VersionState). */
const MESSAGE_MAX = 512;

const clip = (s: string): string => (s.length > MESSAGE_MAX ? `${s.slice(0, MESSAGE_MAX - 1)}…` : s);

/** How many replicas of `perReplica` GPUs fit in `gpus` GPUs (a CPU version: one). */
export function replicasFor(gpus: number, perReplica: number): number {
  return perReplica === 0 ? 1 : Math.floor(gpus / perReplica);
}

/** Decides the next actions and the states to report. */
export function plan(input: PlanInput): Plan {
  const known = new Map(input.known.map((k) => [versionKey(k.model, k.version), k]));
  const replicasOf = (model: string, version: string): ReplicaView[] =>
    input.replicas.filter((r) => r.model === model && r.version === version);
  const live = (model: string, version: string): ReplicaView[] =>
    replicasOf(model, version).filter((r) => r.state !== "draining");
  const actions: Action[] = [];
  const targets = new Map<string, number>();
  const stable = new Map<string, string>();
  /** Why a desired stable cannot run here at all (reported as a failure). */
  const blocked = new Map<string, string>();
  const desiredModels = new Set(input.desired.map((d) => d.model));

  // Fetch what is desired and not known (or known with another digest and not running).
  for (const d of input.desired) {
    for (const w of [d.stable, d.canary]) {
      if (!w) continue;
      const k = known.get(versionKey(d.model, w.version));
      if (!k || (k.digest !== w.digest && replicasOf(d.model, w.version).length === 0)) {
        actions.push({ kind: "fetch", model: d.model, version: w.version, digest: w.digest });
      }
    }
  }
  const usable = (model: string, version: string | undefined): KnownVersion | undefined => {
    if (version === undefined) return undefined;
    const k = known.get(versionKey(model, version));
    return k && k.phase !== "failed" ? k : undefined;
  };

  // The GPUs are split evenly between the models whose stable needs some.
  const stableGpus = (d: DesiredModel): number | undefined => {
    const k = usable(d.model, d.stable.version) ?? usable(d.model, input.lastStable.get(d.model));
    return k?.phase === "ready" ? k.gpus : undefined;
  };
  const gpuModels = input.desired.filter((d) => (stableGpus(d) ?? 0) > 0).length;
  const budget = gpuModels > 0 ? Math.floor(input.gpus.length / gpuModels) : input.gpus.length;
  const tooBig = (k: KnownVersion | undefined): boolean => k?.phase === "ready" && (k.gpus ?? 0) > budget;
  const tooBigWhy = (k: KnownVersion): string =>
    `needs ${k.gpus ?? 0} GPU(s) per replica; this agent has ${budget} for it (${input.gpus.length} in all)`;

  // Per model: the effective stable (the desired one, else the last one that served here) and
  // the canary, and how many replicas of each.
  const wanted = new Set<string>();
  const order: { model: string; version: string }[] = [];
  for (const d of input.desired) {
    const desiredKey = versionKey(d.model, d.stable.version);
    const desiredStable = known.get(desiredKey);
    if (desiredStable && tooBig(desiredStable)) blocked.set(desiredKey, tooBigWhy(desiredStable));
    const fallback = usable(d.model, input.lastStable.get(d.model));
    let s = d.stable.version;
    if (
      (desiredStable?.phase === "failed" || tooBig(desiredStable)) &&
      fallback?.phase === "ready" &&
      !tooBig(fallback)
    ) {
      s = fallback.version;
    }
    stable.set(d.model, s);
    const sk = usable(d.model, s);
    const c = d.canary && d.canary.version !== s ? usable(d.model, d.canary.version) : undefined;
    if (sk) wanted.add(versionKey(d.model, s));
    if (c) wanted.add(versionKey(d.model, c.version));
    if (sk?.phase !== "ready") continue;
    const nS = sk.gpus ?? 0;
    if (nS > budget) continue;
    let tS = replicasFor(budget, nS);
    let tC = 0;
    if (c?.phase === "ready") {
      const nC = c.gpus ?? 0;
      if (nC === 0 || nS === 0 ? nC <= budget : budget >= nS + nC) {
        tC = 1;
        if (nS > 0) tS = replicasFor(budget - nC, nS);
      }
      targets.set(versionKey(d.model, c.version), tC);
    }
    targets.set(versionKey(d.model, s), tS);
    order.push({ model: d.model, version: s });
    if (tC > 0 && c) order.push({ model: d.model, version: c.version });
  }

  // A model's stable serves once some of its replicas serve and none is still starting.
  const serves = (model: string): boolean => {
    const s = stable.get(model);
    if (s === undefined) return false;
    const rs = live(model, s);
    return rs.some((r) => r.state === "serving") && !rs.some((r) => r.state === "starting");
  };
  const draining = new Set<number>();
  const drain = (r: ReplicaView, reason: string): void => {
    if (r.state === "draining" || draining.has(r.id)) return;
    draining.add(r.id);
    actions.push({ kind: "drain", replica: r.id, reason });
  };
  for (const r of input.replicas) {
    if (r.state === "draining") continue;
    const key = versionKey(r.model, r.version);
    const k = known.get(key);
    if (k?.phase === "failed") drain(r, `${key} failed`);
    else if (!desiredModels.has(r.model)) drain(r, `${r.model} is no longer desired`);
    else if (!wanted.has(key) && serves(r.model)) drain(r, `${versionKey(r.model, stable.get(r.model) ?? "")} serves`);
  }

  // Start what fits on the free GPUs; make room for a wanted version that has no replica.
  const held = new Set(input.replicas.flatMap((r) => r.gpus));
  const free = input.gpus.filter((g) => !held.has(g));
  const surplus = (r: ReplicaView): boolean => {
    const key = versionKey(r.model, r.version);
    if (!wanted.has(key)) return true;
    return live(r.model, r.version).length > (targets.get(key) ?? 0);
  };
  for (const { model, version } of order) {
    const key = versionKey(model, version);
    const n = known.get(key)?.gpus ?? 0;
    const target = targets.get(key) ?? 0;
    let count = live(model, version).length;
    while (count < target && free.length >= n) {
      actions.push({ kind: "start", model, version, gpus: free.splice(0, n) });
      count++;
    }
    if (count > 0 || target === 0) continue;
    // None can start: drain the fewest replicas it takes to make room for one (unless replicas
    // draining already will), those of versions no longer wanted first, this model's first.
    let coming =
      free.length + input.replicas.filter((r) => r.state === "draining").reduce((a, r) => a + r.gpus.length, 0);
    const candidates = input.replicas
      .filter((r) => r.state !== "draining" && !draining.has(r.id) && r.gpus.length > 0 && surplus(r))
      .sort(
        (a, b) =>
          Number(wanted.has(versionKey(a.model, a.version))) - Number(wanted.has(versionKey(b.model, b.version))) ||
          Number(a.model !== model) - Number(b.model !== model) ||
          b.id - a.id,
      );
    const victims: ReplicaView[] = [];
    const taken = new Map<string, number>();
    for (const r of candidates) {
      if (coming >= n) break;
      const rk = versionKey(r.model, r.version);
      // A wanted version gives up only its replicas beyond its target.
      if (wanted.has(rk)) {
        const spare = live(r.model, r.version).length - (targets.get(rk) ?? 0) - (taken.get(rk) ?? 0);
        if (spare <= 0) continue;
        taken.set(rk, (taken.get(rk) ?? 0) + 1);
      }
      victims.push(r);
      coming += r.gpus.length;
    }
    if (coming >= n) for (const r of victims) drain(r, `making room for ${key}`);
  }

  return { actions, states: states(input, known, stable, targets, blocked, draining, desiredModels), stable, targets };
}

function states(
  input: PlanInput,
  known: ReadonlyMap<string, KnownVersion>,
  stable: ReadonlyMap<string, string>,
  targets: ReadonlyMap<string, number>,
  blocked: ReadonlyMap<string, string>,
  draining: ReadonlySet<number>,
  desiredModels: ReadonlySet<string>,
): VersionState[] {
  const named = new Set(
    input.desired.flatMap((d) => [d.stable, d.canary].flatMap((w) => (w ? [versionKey(d.model, w.version)] : []))),
  );
  const out: VersionState[] = [];
  const seen = new Set<string>();
  const add = (model: string, version: string): void => {
    const key = versionKey(model, version);
    if (seen.has(key)) return;
    seen.add(key);
    const k = known.get(key);
    const rs = input.replicas.filter(
      (r) => r.model === model && r.version === version && r.state !== "draining" && !draining.has(r.id),
    );
    const serving = rs.filter((r) => r.state === "serving").length;
    if (k?.phase === "failed") {
      if (named.has(key)) out.push({ model, version, state: "failed", message: clip(k.message ?? "failed") });
      return;
    }
    if (serving > 0) {
      out.push({ model, version, state: "serving" });
      return;
    }
    if (!named.has(key) && stable.get(model) !== version) return;
    const why = blocked.get(key);
    if (k === undefined || k.phase === "fetching") {
      out.push({ model, version, state: "loading", message: clip(k?.message ?? "fetching") });
    } else if (rs.length > 0) {
      out.push({ model, version, state: "loading", message: `starting ${rs.length} runner(s)` });
    } else if (why !== undefined) {
      // The stable cannot run here at all: as good as a failed load.
      out.push({ model, version, state: "failed", message: clip(why) });
    } else if ((targets.get(key) ?? 0) > 0) {
      const n = k.gpus ?? 0;
      out.push({ model, version, state: "loading", message: `waiting for ${n} free GPU(s)` });
    }
  };
  for (const d of input.desired) {
    const s = stable.get(d.model);
    if (s !== undefined) add(d.model, s);
    add(d.model, d.stable.version);
    if (d.canary) add(d.model, d.canary.version);
  }
  // Versions kept serving while their replacement loads.
  for (const r of input.replicas) if (desiredModels.has(r.model)) add(r.model, r.version);
  return out;
}
