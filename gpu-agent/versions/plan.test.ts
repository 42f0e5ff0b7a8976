import { describe, expect, it } from "vitest";
import {
  type Action,
  type DesiredModel,
  type KnownVersion,
  plan,
  type PlanInput,
  type ReplicaView,
  replicasFor,
  versionKey,
} from "./plan.ts";

const D = (n: number): string => n.toString(16).padStart(64, "0");

/** An agent's world as the manager would keep it, moved along by the plan's actions. */
class World {
  gpus: number[];
  desired: DesiredModel[] = [];
  known = new Map<string, KnownVersion>();
  replicas: ReplicaView[] = [];
  lastStable = new Map<string, string>();
  /** Versions ready once fetched, and what one replica of each needs. */
  sizes = new Map<string, number>();
  private next = 1;

  constructor(gpus: number) {
    this.gpus = Array.from({ length: gpus }, (_, i) => i);
  }

  input(): PlanInput {
    return {
      gpus: this.gpus,
      desired: this.desired,
      known: [...this.known.values()],
      replicas: this.replicas,
      lastStable: this.lastStable,
    };
  }

  want(model: string, stable: string, canary?: string): void {
    this.desired = [
      ...this.desired.filter((d) => d.model !== model),
      {
        model,
        stable: { version: stable, digest: D(stable.length) },
        ...(canary ? { canary: { version: canary, digest: D(canary.length), percent: 10 } } : {}),
      },
    ];
  }

  /** Plans once and carries out the actions: fetches end at once (ready, or failed if told). */
  step(fail: { fetch?: string[] } = {}): Action[] {
    const p = plan(this.input());
    for (const a of p.actions) {
      if (a.kind === "fetch") {
        const key = versionKey(a.model, a.version);
        this.known.set(
          key,
          fail.fetch?.includes(key)
            ? { model: a.model, version: a.version, digest: a.digest, phase: "failed", message: "bad piece" }
            : { model: a.model, version: a.version, digest: a.digest, phase: "ready", gpus: this.sizes.get(key) ?? 0 },
        );
      } else if (a.kind === "start") {
        this.replicas.push({ id: this.next++, model: a.model, version: a.version, gpus: a.gpus, state: "starting" });
      } else {
        const r = this.replicas.find((x) => x.id === a.replica);
        if (r) r.state = "draining";
      }
    }
    return p.actions;
  }

  /** Every starting replica of this version says it loaded (or fails to). */
  loaded(model: string, version: string, ok = true): void {
    for (const r of this.replicas) {
      if (r.model !== model || r.version !== version || r.state !== "starting") continue;
      if (ok) r.state = "serving";
      else {
        this.known.set(versionKey(model, version), {
          ...this.known.get(versionKey(model, version))!,
          phase: "failed",
          message: "runner.load_failed: model_error",
        });
      }
    }
    if (ok && this.desired.some((d) => d.model === model && d.stable.version === version)) {
      this.lastStable.set(model, version);
    }
  }

  /** Draining replicas finished their jobs and stopped. */
  drained(): void {
    this.replicas = this.replicas.filter((r) => r.state !== "draining");
  }

  /** Plans until nothing changes, loading what starts (`failing` versions fail their load). */
  settle(failing: string[] = []): void {
    for (let i = 0; i < 50; i++) {
      const actions = this.step();
      const starting = this.replicas.filter((r) => r.state === "starting");
      for (const r of starting) this.loaded(r.model, r.version, !failing.includes(versionKey(r.model, r.version)));
      const drains = this.replicas.some((r) => r.state === "draining");
      this.drained();
      if (actions.length === 0 && starting.length === 0 && !drains) return;
    }
    throw new Error("the plan did not settle");
  }

  serving(model: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.replicas) {
      if (r.model === model && r.state === "serving") out[r.version] = (out[r.version] ?? 0) + 1;
    }
    return out;
  }

  states(): Record<string, string> {
    return Object.fromEntries(plan(this.input()).states.map((s) => [versionKey(s.model, s.version), s.state]));
  }
}

describe("replicas per GPU count", () => {
  it("a version asking gpus: N runs floor(G / N) replicas; gpus: 0 runs one on the CPU", () => {
    expect(replicasFor(8, 2)).toBe(4);
    expect(replicasFor(8, 3)).toBe(2);
    expect(replicasFor(1, 2)).toBe(0);
    expect(replicasFor(0, 0)).toBe(1);
    expect(replicasFor(8, 0)).toBe(1);
  });

  it("an 8-GPU agent starts 4 replicas of a 2-GPU version, each on two GPUs of its own", () => {
    const w = new World(8);
    w.sizes.set("video@v1", 2);
    w.want("video", "v1");
    expect(w.step()).toEqual([{ kind: "fetch", model: "video", version: "v1", digest: D(2) }]);
    const starts = w.step();
    expect(starts).toEqual([
      { kind: "start", model: "video", version: "v1", gpus: [0, 1] },
      { kind: "start", model: "video", version: "v1", gpus: [2, 3] },
      { kind: "start", model: "video", version: "v1", gpus: [4, 5] },
      { kind: "start", model: "video", version: "v1", gpus: [6, 7] },
    ]);
    expect(w.states()).toEqual({ "video@v1": "loading" });
    w.loaded("video", "v1");
    expect(w.states()).toEqual({ "video@v1": "serving" });
    expect(w.step()).toEqual([]);
  });

  it("a CPU version (gpus: 0) runs one replica, even on an agent without GPUs", () => {
    const w = new World(0);
    w.want("demo", "1");
    w.settle();
    expect(w.replicas).toMatchObject([{ model: "demo", version: "1", gpus: [], state: "serving" }]);
  });

  it("a stable needing more GPUs per replica than the agent has is reported failed, with why", () => {
    const w = new World(1);
    w.sizes.set("big@v1", 2);
    w.want("big", "v1");
    w.settle();
    expect(w.replicas).toEqual([]);
    expect(plan(w.input()).states).toEqual([
      {
        model: "big",
        version: "v1",
        state: "failed",
        message: "needs 2 GPU(s) per replica; this agent has 1 for it (1 in all)",
      },
    ]);
  });

  it("the GPUs are split evenly between models whose versions need them", () => {
    const w = new World(8);
    w.sizes.set("a@1", 1);
    w.sizes.set("b@1", 2);
    w.want("a", "1");
    w.want("b", "1");
    w.want("cpu", "1");
    w.settle();
    expect(w.serving("a")).toEqual({ "1": 4 });
    expect(w.serving("b")).toEqual({ "1": 2 });
    expect(w.serving("cpu")).toEqual({ "1": 1 });
    expect(new Set(w.replicas.flatMap((r) => r.gpus)).size).toBe(8);
  });
});

describe("switching versions", () => {
  it("a new stable loads beside the old when the GPUs allow; the old drains only once the new serves", () => {
    const w = new World(4);
    w.sizes.set("m@v1", 1);
    w.sizes.set("m@v2", 2);
    w.want("m", "v1");
    w.settle();
    // v1 on two GPUs only: a later version gets the other two.
    w.replicas = w.replicas.slice(0, 2);
    w.want("m", "v2");
    w.step();
    const starts = w.step();
    expect(starts).toEqual([{ kind: "start", model: "m", version: "v2", gpus: [2, 3] }]);
    // While v2 loads, v1 keeps serving and is still reported.
    expect(w.states()).toEqual({ "m@v2": "loading", "m@v1": "serving" });
    expect(w.step()).toEqual([]);
    w.loaded("m", "v2");
    const drains = w.step();
    expect(drains.map((a) => a.kind)).toEqual(["drain", "drain"]);
    expect(w.states()).toEqual({ "m@v2": "serving" });
    w.drained();
    // The GPUs v1 gave back go to v2.
    expect(w.step()).toEqual([{ kind: "start", model: "m", version: "v2", gpus: [0, 1] }]);
  });

  it("without free GPUs, just enough of the old drains first to make room for one new replica; the rest serve until it does", () => {
    const w = new World(4);
    w.sizes.set("m@v1", 1);
    w.sizes.set("m@v2", 1);
    w.want("m", "v1");
    w.settle();
    expect(w.serving("m")).toEqual({ v1: 4 });
    w.want("m", "v2");
    w.step(); // fetch
    const first = w.step();
    expect(first).toEqual([{ kind: "drain", replica: 4, reason: "making room for m@v2" }]);
    expect(w.step()).toEqual([]); // the room is coming: nothing more drains
    expect(w.serving("m")).toEqual({ v1: 3 });
    w.drained();
    expect(w.step()).toEqual([{ kind: "start", model: "m", version: "v2", gpus: [3] }]);
    w.loaded("m", "v2");
    expect(w.step().map((a) => a.kind)).toEqual(["drain", "drain", "drain"]);
    w.settle();
    expect(w.serving("m")).toEqual({ v2: 4 });
  });

  it("a one-replica agent drains the old version first, then loads the new", () => {
    const w = new World(1);
    w.sizes.set("m@v1", 1);
    w.sizes.set("m@v2", 1);
    w.want("m", "v1");
    w.settle();
    w.want("m", "v2");
    w.step();
    expect(w.step()).toEqual([{ kind: "drain", replica: 1, reason: "making room for m@v2" }]);
    w.settle();
    expect(w.serving("m")).toEqual({ v2: 1 });
  });

  it("a CPU version switches side by side: both run until the new one serves", () => {
    const w = new World(0);
    w.want("demo", "1");
    w.settle();
    w.want("demo", "2");
    w.step();
    expect(w.step()).toEqual([{ kind: "start", model: "demo", version: "2", gpus: [] }]);
    expect(w.serving("demo")).toEqual({ "1": 1 });
    w.loaded("demo", "2");
    expect(w.step()).toEqual([{ kind: "drain", replica: 1, reason: "demo@2 serves" }]);
  });

  it("a version that fails to load leaves the old one serving, and is reported failed", () => {
    const w = new World(0);
    w.want("demo", "1");
    w.settle();
    w.want("demo", "2");
    w.settle(["demo@2"]);
    expect(w.serving("demo")).toEqual({ "1": 1 });
    expect(plan(w.input()).states).toEqual([
      { model: "demo", version: "1", state: "serving" },
      { model: "demo", version: "2", state: "failed", message: "runner.load_failed: model_error" },
    ]);
    expect(plan(w.input()).stable.get("demo")).toBe("1");
  });

  it("a version that fails after the old one drained to make room brings the old one back", () => {
    const w = new World(2);
    w.sizes.set("m@v1", 2);
    w.sizes.set("m@v2", 2);
    w.want("m", "v1");
    w.settle();
    w.want("m", "v2");
    w.settle(["m@v2"]);
    expect(w.serving("m")).toEqual({ v1: 1 });
    expect(w.states()).toEqual({ "m@v1": "serving", "m@v2": "failed" });
  });

  it("a version whose fetch failed (a bad piece) is never started, and the old one keeps serving", () => {
    const w = new World(0);
    w.want("demo", "1");
    w.settle();
    w.want("demo", "2");
    w.step({ fetch: ["demo@2"] });
    w.settle();
    expect(w.serving("demo")).toEqual({ "1": 1 });
    expect(w.states()).toEqual({ "demo@1": "serving", "demo@2": "failed" });
  });

  it("rolling back re-uses the version still known here", () => {
    const w = new World(0);
    w.want("demo", "1");
    w.settle();
    w.want("demo", "2");
    w.settle();
    w.want("demo", "1");
    expect(w.step()).toEqual([{ kind: "start", model: "demo", version: "1", gpus: [] }]);
    w.settle();
    expect(w.serving("demo")).toEqual({ "1": 1 });
  });

  it("a model no longer desired drains at once", () => {
    const w = new World(0);
    w.want("demo", "1");
    w.settle();
    w.desired = [];
    expect(w.step()).toEqual([{ kind: "drain", replica: 1, reason: "demo is no longer desired" }]);
    expect(w.states()).toEqual({});
  });
});

describe("canaries", () => {
  it("a canary loads beside the stable when resources allow: the stable leaves room for one canary replica", () => {
    const w = new World(8);
    w.sizes.set("m@s", 2);
    w.sizes.set("m@c", 2);
    w.want("m", "s", "c");
    w.settle();
    expect(w.serving("m")).toEqual({ s: 3, c: 1 });
    expect(w.states()).toEqual({ "m@s": "serving", "m@c": "serving" });
  });

  it("a canary arriving on a full agent takes one stable replica's GPUs; when reverted, the stable takes them back", () => {
    const w = new World(4);
    w.sizes.set("m@s", 1);
    w.sizes.set("m@c", 1);
    w.want("m", "s");
    w.settle();
    expect(w.serving("m")).toEqual({ s: 4 });
    w.want("m", "s", "c");
    w.settle();
    expect(w.serving("m")).toEqual({ s: 3, c: 1 });
    w.want("m", "s");
    w.settle();
    expect(w.serving("m")).toEqual({ s: 4 });
  });

  it("a canary does not load where it would leave the stable no replica, and is not reported there", () => {
    const w = new World(1);
    w.sizes.set("m@s", 1);
    w.sizes.set("m@c", 1);
    w.want("m", "s", "c");
    w.settle();
    expect(w.serving("m")).toEqual({ s: 1 });
    expect(w.states()).toEqual({ "m@s": "serving" });
  });

  it("a canary that fails to load is reported failed and the stable serves on", () => {
    const w = new World(0);
    w.want("demo", "s", "c");
    w.settle(["demo@c"]);
    expect(w.serving("demo")).toEqual({ s: 1 });
    expect(w.states()).toEqual({ "demo@s": "serving", "demo@c": "failed" });
  });

  it("a promoted canary goes on serving while the old stable drains", () => {
    const w = new World(0);
    w.want("demo", "s", "c");
    w.settle();
    w.want("demo", "c");
    expect(w.step()).toEqual([{ kind: "drain", replica: 1, reason: "demo@c serves" }]);
  });
});
