/**
 * The agent's runner processes, as replicas: in fixed mode (`--runner`) one replica that serves
 * every lease; otherwise, per version served, the replicas the version manager
 * (versions/manager.ts) starts, each its own runner process on its own GPUs. The pool routes a
 * lease to a replica of the version it names ({@link routeLease}), restarts a runner that
 * exited without being asked, and stops a draining replica once its last job ended. Used by
 * gpu-agent/agent.ts.
 */
import { EventEmitter } from "node:events";
import type { RunnerLike } from "./runner/like.ts";

/** What a replica serves, where, and how its runner is started. */
export interface ReplicaSpec {
  /** The version served; both absent for the fixed runner, which serves every lease. */
  model?: string;
  version?: string;
  /** The GPU indices its runner sees (`CUDA_VISIBLE_DEVICES`); empty on the CPU. */
  gpus: readonly number[];
  /** Starts its runner process, ready for jobs (for a version: its hello checked and the version loaded). */
  start: (replica: Replica) => Promise<RunnerLike>;
}

/** One runner process of the pool, and the jobs it runs. */
export class Replica {
  readonly id: number;
  readonly model: string | undefined;
  readonly version: string | undefined;
  readonly gpus: readonly number[];
  readonly start: (replica: Replica) => Promise<RunnerLike>;
  /**
   * `starting` (first start, or a restart after its runner exited), `serving` (takes jobs),
   * `draining` (takes none; stops when its jobs ended), `stopped`.
   */
  state: "starting" | "serving" | "draining" | "stopped" = "starting";
  /** Its runner; undefined while it (re)starts. */
  runner: RunnerLike | undefined;
  /** Its runner's `max_batch`, kept across restarts. */
  maxBatch = 0;
  /** Jobs running (or uploading) on it, by job id; `true` for a job running alone (a solo retry). */
  readonly running = new Map<string, boolean>();

  constructor(id: number, spec: ReplicaSpec) {
    this.id = id;
    this.model = spec.model;
    this.version = spec.version;
    this.gpus = spec.gpus;
    this.start = spec.start;
  }

  /** The fixed runner of an agent started with `--runner`. */
  get fixed(): boolean {
    return this.version === undefined;
  }

  /** `model@version#id`, or `runner` for the fixed one. */
  get name(): string {
    return this.fixed ? "runner" : `${this.model}@${this.version}#${this.id}`;
  }
}

/** Where a staged lease goes now. */
export type Route =
  | { kind: "run"; replica: Replica }
  /** Not now: these replicas of its version are busy or restarting (a solo retry reserves them). */
  | { kind: "wait"; on: Replica[] }
  /** No replica here serves its version (any more): give it back. */
  | { kind: "release" };

/**
 * The replica a lease runs on: one of the version the lease names (for a lease without one,
 * the model's stable here, else any version of the model served here), alive and serving, with
 * a free slot, the least busy first. A job retried alone after a crash takes only an idle
 * replica, and nothing joins a replica while one runs there; replicas in `reserved` (waited on by
 * such a retry) take nothing else. The fixed runner serves every lease.
 */
export function routeLease(
  lease: { model: string; version: string | null },
  solo: boolean,
  replicas: readonly Replica[],
  opts: {
    capacity: (r: Replica) => number;
    stable: (model: string) => string | undefined;
    reserved: ReadonlySet<Replica>;
  },
): Route {
  let candidates = replicas.filter((r) => r.fixed && r.state !== "stopped");
  if (candidates.length === 0) {
    const mine = replicas.filter((r) => r.model === lease.model && (r.state === "starting" || r.state === "serving"));
    const version =
      lease.version ?? opts.stable(lease.model) ?? mine.find((r) => r.state === "serving")?.version ?? mine[0]?.version;
    candidates = mine.filter((r) => r.version === version);
  }
  if (candidates.length === 0) return { kind: "release" };
  const ready = candidates.filter(
    (r) =>
      r.state === "serving" &&
      r.runner?.alive === true &&
      !opts.reserved.has(r) &&
      ![...r.running.values()].some(Boolean) &&
      (solo ? r.running.size === 0 : r.running.size < opts.capacity(r)),
  );
  if (ready.length === 0) return { kind: "wait", on: candidates };
  return { kind: "run", replica: ready.reduce((a, b) => (b.running.size < a.running.size ? b : a)) };
}

/** Before a runner that exited is started again (ms): its jobs are reported as they settle. */
const RESTART_DELAY_MS = 200;

export class RunnerPool extends EventEmitter<{
  /** A replica started, stopped, crashed or was restarted: its jobs may move, the slots change. */
  changed: [];
  /** A replica's runner could not be started again after it exited. */
  failed: [replica: Replica, err: Error];
}> {
  readonly replicas: Replica[] = [];
  private nextId = 1;
  private closed = false;
  private readonly log: (line: string) => void;

  constructor(log: (line: string) => void) {
    super();
    this.log = log;
  }

  /**
   * Adds a replica and starts its runner: resolves once it serves; rejects (the replica gone) if
   * it could not start.
   */
  async add(spec: ReplicaSpec): Promise<Replica> {
    const replica = new Replica(this.nextId++, spec);
    this.replicas.push(replica);
    let runner: RunnerLike;
    try {
      runner = await spec.start(replica);
    } catch (err) {
      this.remove(replica);
      throw err;
    }
    if (this.closed || replica.state !== "starting") {
      // Drained or closed while it started: it never serves.
      await runner.close();
      this.remove(replica);
      return replica;
    }
    this.serve(replica, runner);
    return replica;
  }

  private serve(replica: Replica, runner: RunnerLike): void {
    replica.runner = runner;
    replica.maxBatch = runner.maxBatch;
    if (replica.state === "starting") replica.state = "serving";
    void this.watch(replica, runner);
    this.emit("changed");
  }

  private remove(replica: Replica): void {
    replica.state = "stopped";
    const i = this.replicas.indexOf(replica);
    if (i >= 0) this.replicas.splice(i, 1);
    this.emit("changed");
  }

  private async watch(replica: Replica, runner: RunnerLike): Promise<void> {
    const { reason } = await runner.exited;
    if (replica.runner !== runner || this.closed || replica.state === "stopped") return;
    replica.runner = undefined;
    if (replica.state === "draining") {
      this.log(`${replica.name} exited (${reason}) while draining`);
      this.remove(replica);
      return;
    }
    this.log(`${replica.fixed ? "runner" : replica.name} exited (${reason}); starting a new one`);
    replica.state = "starting";
    this.emit("changed");
    // Jobs in flight were rejected by the runner host and are reported as they settle.
    await new Promise((res) => setTimeout(res, RESTART_DELAY_MS));
    if (this.closed || replica.state !== "starting") {
      if (!this.closed) this.remove(replica);
      return;
    }
    try {
      this.serve(replica, await replica.start(replica));
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      this.log(`could not restart the ${replica.fixed ? "runner" : `runner of ${replica.name}`}: ${e.message}`);
      // Told first, so that the version is failed before its GPUs count as free.
      this.emit("failed", replica, e);
      if (!replica.fixed) this.remove(replica);
    }
  }

  /** The replica takes no new jobs, finishes its own, then its runner stops. */
  drain(replica: Replica): void {
    if (replica.state === "draining" || replica.state === "stopped") return;
    replica.state = "draining";
    this.emit("changed");
    this.settle(replica);
  }

  /** Called when a job on the replica ended: a draining replica whose jobs all ended stops. */
  settle(replica: Replica): void {
    if (replica.state !== "draining" || replica.running.size > 0) return;
    const runner = replica.runner;
    if (!runner) return; // still starting: `add` stops it
    replica.runner = undefined;
    this.remove(replica);
    void runner.close().catch(() => undefined);
  }

  /** Slots of the replicas that take jobs (`max_batch` summed), fixed or not. */
  slots(): number {
    return this.replicas.reduce(
      (a, r) => a + (r.state === "serving" || (r.state === "starting" && r.maxBatch > 0) ? r.maxBatch : 0),
      0,
    );
  }

  /** Stops every runner. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.replicas.map(async (r) => await r.runner?.close()));
  }
}
