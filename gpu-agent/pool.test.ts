import { describe, expect, it } from "vitest";
import type { RunnerLike } from "./runner/like.ts";
import { Replica, routeLease } from "./pool.ts";

const runner = (alive = true): RunnerLike => ({
  maxBatch: 2,
  models: [],
  run: async () => ({ frames: [], outputs: [] }),
  cancel: () => {},
  close: async () => {},
  alive,
  exited: new Promise(() => {}),
});

let ids = 1;
function replica(model: string | undefined, version: string | undefined, state: Replica["state"] = "serving"): Replica {
  const r = new Replica(ids++, { model, version, gpus: [], start: async () => runner() });
  r.state = state;
  r.runner = state === "serving" ? runner() : undefined;
  r.maxBatch = 2;
  return r;
}

const opts = (stable: Record<string, string> = {}, reserved: Replica[] = []) => ({
  capacity: (r: Replica) => r.maxBatch,
  stable: (m: string) => stable[m],
  reserved: new Set(reserved),
});

describe("routing a lease to a replica", () => {
  it("a lease runs on a replica of the version it names, the least busy first", () => {
    const a1 = replica("m", "v1");
    const b1 = replica("m", "v2");
    const b2 = replica("m", "v2");
    b1.running.set("j0", false);
    const r = routeLease({ model: "m", version: "v2" }, false, [a1, b1, b2], opts());
    expect(r).toEqual({ kind: "run", replica: b2 });
    expect(routeLease({ model: "m", version: "v1" }, false, [a1, b1, b2], opts())).toEqual({
      kind: "run",
      replica: a1,
    });
  });

  it("a lease naming no version runs on the model's stable here, else on any version of it served", () => {
    const old = replica("m", "v1");
    const stable = replica("m", "v2");
    expect(routeLease({ model: "m", version: null }, false, [old, stable], opts({ m: "v2" }))).toEqual({
      kind: "run",
      replica: stable,
    });
    expect(routeLease({ model: "m", version: null }, false, [old], opts())).toEqual({ kind: "run", replica: old });
  });

  it("a lease waits while its version's replicas are full or restarting, and goes back when none serves its version", () => {
    const full = replica("m", "v1");
    full.running.set("a", false);
    full.running.set("b", false);
    const restarting = replica("m", "v1", "starting");
    expect(routeLease({ model: "m", version: "v1" }, false, [full, restarting], opts())).toEqual({
      kind: "wait",
      on: [full, restarting],
    });
    const draining = replica("m", "v0", "draining");
    expect(routeLease({ model: "m", version: "v0" }, false, [draining, full], opts())).toEqual({ kind: "release" });
    expect(routeLease({ model: "other", version: "v1" }, false, [full], opts())).toEqual({ kind: "release" });
  });

  it("a job retried alone takes only an idle replica, and nothing joins one it runs on or waits for", () => {
    const busy = replica("m", "v1");
    busy.running.set("a", false);
    const idle = replica("m", "v1");
    expect(routeLease({ model: "m", version: "v1" }, true, [busy, idle], opts())).toEqual({
      kind: "run",
      replica: idle,
    });
    idle.running.set("solo", true);
    // The solo replica takes nothing more; the other one still has room.
    expect(routeLease({ model: "m", version: "v1" }, false, [busy, idle], opts())).toEqual({
      kind: "run",
      replica: busy,
    });
    expect(routeLease({ model: "m", version: "v1" }, false, [busy, idle], opts({}, [busy]))).toMatchObject({
      kind: "wait",
    });
  });

  it("the fixed runner of --runner serves every lease, whatever it names", () => {
    const fixed = replica(undefined, undefined);
    expect(routeLease({ model: "anything", version: "7" }, false, [fixed], opts())).toEqual({
      kind: "run",
      replica: fixed,
    });
    fixed.state = "starting";
    fixed.runner = undefined;
    expect(routeLease({ model: "anything", version: null }, false, [fixed], opts())).toMatchObject({ kind: "wait" });
  });
});
