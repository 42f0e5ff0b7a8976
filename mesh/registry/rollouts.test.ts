import { describe, expect, it } from "vitest";
import type { ModelConfig } from "../../shared/api.ts";
import { OutputsConfig } from "../../shared/outputs.ts";
import { VersionManifest, type ModelRollout } from "../../shared/repository.ts";
import { nodeSql } from "../sql/node.ts";
import { migrate } from "../sql/sql.ts";
import {
  canaryVerdict,
  desiredAfterApply,
  desiredAfterRevert,
  desiredVersions,
  failurePct,
  laneDesired,
  modelBodyFrom,
  modelStatus,
  newlyFailed,
  statesChanged,
  undoTarget,
  wireDesired,
  type ModelDesired,
} from "./rollouts.ts";
import { MIGRATIONS, RegistryStore } from "./store.ts";

const T0 = Date.UTC(2026, 11, 6);
const D1 = "1".repeat(64);
const D2 = "2".repeat(64);
const D3 = "3".repeat(64);

const WITH_CANARY: ModelRollout = {
  version: "v1",
  canary: { version: "v2", percent: 10, max_failure_pct: 20, min_jobs: 20 },
};

function canaryDesired(over: Partial<NonNullable<ModelDesired["canary"]>> = {}): ModelDesired {
  return desiredAfterApply(
    "demo",
    { ...WITH_CANARY, canary: { ...WITH_CANARY.canary!, ...over } },
    { stable: D1, canary: D2 },
    undefined,
    1,
    T0,
  );
}

describe("the canary analysis", () => {
  it("no canary is reverted before it has ended min_jobs jobs, however many of them failed", () => {
    const d = canaryDesired();
    expect(canaryVerdict(d, { jobs: 19, failed: 19 }, ["serving"])).toBeUndefined();
    expect(canaryVerdict(d, { jobs: 0, failed: 0 }, [])).toBeUndefined();
  });

  it("past min_jobs, a canary is reverted once its failure rate passes max_failure_pct, and not at it", () => {
    const d = canaryDesired();
    expect(canaryVerdict(d, { jobs: 20, failed: 4 }, ["serving"])).toBeUndefined();
    expect(canaryVerdict(d, { jobs: 20, failed: 5 }, ["serving"])).toBe("failure_rate");
    expect(canaryVerdict(d, { jobs: 1000, failed: 201 }, ["serving"])).toBe("failure_rate");
    expect(canaryVerdict(canaryDesired({ max_failure_pct: 0 }), { jobs: 20, failed: 1 }, [])).toBe("failure_rate");
    expect(canaryVerdict(canaryDesired({ max_failure_pct: 100 }), { jobs: 20, failed: 20 }, [])).toBeUndefined();
  });

  it("a failed load counts as a failed job of its version: each agent's, once", () => {
    const before = [{ model: "demo", version: "v2", state: "loading" as const }];
    const failed = [{ model: "demo", version: "v2", state: "failed" as const, message: "bad weights" }];
    expect(newlyFailed(before, failed)).toEqual([{ model: "demo", version: "v2" }]);
    // Reported again on the next heartbeat: not a new failure.
    expect(newlyFailed(failed, failed)).toEqual([]);
    expect(newlyFailed([], [...failed, ...failed])).toEqual([{ model: "demo", version: "v2" }]);
    // Figures made of failed loads alone revert the canary once they pass min_jobs.
    const d = canaryDesired({ min_jobs: 2 });
    expect(canaryVerdict(d, { jobs: 1, failed: 1 }, ["serving", "failed"])).toBeUndefined();
    expect(canaryVerdict(d, { jobs: 2, failed: 2 }, ["serving", "failed", "failed"])).toBe("failure_rate");
  });

  it("a canary that failed to load on an agent and serves on none is reverted at once", () => {
    const d = canaryDesired();
    expect(canaryVerdict(d, { jobs: 1, failed: 1 }, ["failed"])).toBe("load_failed");
    expect(canaryVerdict(d, { jobs: 1, failed: 1 }, ["failed", "loading"])).toBe("load_failed");
    expect(canaryVerdict(d, { jobs: 1, failed: 1 }, ["failed", "serving"])).toBeUndefined();
    expect(canaryVerdict(d, { jobs: 0, failed: 0 }, ["loading"])).toBeUndefined();
  });

  it("a model without a canary has nothing to revert", () => {
    const d = desiredAfterRevert(canaryDesired(), T0 + 1);
    expect(canaryVerdict(d, { jobs: 100, failed: 100 }, ["failed"])).toBeUndefined();
  });

  it("failure_pct is failed / jobs in percent, 0 without jobs", () => {
    expect(failurePct({ jobs: 0, failed: 0 })).toBe(0);
    expect(failurePct({ jobs: 3, failed: 1 })).toBe(33.33);
    expect(failurePct({ jobs: 20, failed: 20 })).toBe(100);
  });
});

describe("desired versions", () => {
  it("each change takes the next revision; a revert keeps the stable version and drops the canary", () => {
    const first = desiredAfterApply("demo", { version: "v1" }, { stable: D1 }, undefined, 1, T0);
    expect(first).toEqual({
      model: "demo",
      stable: { version: "v1", digest: D1 },
      revision: 1,
      rollout_id: 1,
      since: T0,
    });
    const second = desiredAfterApply("demo", WITH_CANARY, { stable: D1, canary: D2 }, first, 2, T0 + 5);
    expect(second.revision).toBe(2);
    expect(desiredVersions(second)).toEqual(["v1", "v2"]);
    const reverted = desiredAfterRevert(second, T0 + 9);
    expect(reverted).toEqual({ ...first, revision: 3, rollout_id: 2, since: T0 + 9 });
    expect(laneDesired(second)).toEqual({ stable: "v1", canary: { version: "v2", percent: 10 }, revision: 2 });
    expect(laneDesired(reverted)).toEqual({ stable: "v1", revision: 3 });
    expect(wireDesired(second)).toEqual({
      model: "demo",
      stable: { version: "v1", digest: D1 },
      canary: { version: "v2", digest: D2, percent: 10 },
    });
  });

  it("a version that stays desired keeps its figures; a new one starts empty; one no longer desired loses them", () => {
    const sql = nodeSql();
    migrate(sql, MIGRATIONS);
    const store = new RegistryStore(sql);
    const a = desiredAfterApply("demo", WITH_CANARY, { stable: D1, canary: D2 }, undefined, 1, T0);
    store.setDesired(a, desiredVersions(a), T0);
    store.addFigures("demo", "v1", 10, 1);
    store.addFigures("demo", "v2", 5, 2);
    expect(store.addFigures("demo", "v9", 1, 1)).toBe(false);
    const b = desiredAfterApply(
      "demo",
      { version: "v1", canary: { version: "v3", percent: 5, max_failure_pct: 20, min_jobs: 20 } },
      { stable: D1, canary: D3 },
      a,
      2,
      T0 + 1000,
    );
    store.setDesired(b, desiredVersions(b), T0 + 1000);
    const windows = store.windows("demo").sort((x, y) => x.version.localeCompare(y.version));
    expect(windows).toEqual([
      { version: "v1", jobs: 10, failed: 1, since: T0 },
      { version: "v3", jobs: 0, failed: 0, since: T0 + 1000 },
    ]);
    expect(store.desired("demo")).toEqual(b);
  });
});

/** A registry store with its migrations, and the demo model's history entries, newest first. */
function history() {
  const sql = nodeSql();
  migrate(sql, MIGRATIONS);
  const store = new RegistryStore(sql);
  const entries = () =>
    store
      .rolloutsOf("demo", 2)
      .map((r) => ({ id: r.id, models: JSON.parse(r.models) as Record<string, ModelRollout> }));
  return { store, entries };
}

describe("failed loads", () => {
  it("each agent's failed load of a desired version counts once in its window, however often it fails", () => {
    const sql = nodeSql();
    migrate(sql, MIGRATIONS);
    const store = new RegistryStore(sql);
    const a = desiredAfterApply("demo", WITH_CANARY, { stable: D1, canary: D2 }, undefined, 1, T0);
    store.setDesired(a, desiredVersions(a), T0);
    expect(store.noteLoadFailure("demo", "v2", "agt_a")).toBe(true);
    expect(store.noteLoadFailure("demo", "v2", "agt_a")).toBe(false);
    expect(store.noteLoadFailure("demo", "v2", "agt_b")).toBe(true);
    // A version with no window (not desired) counts nothing.
    expect(store.noteLoadFailure("demo", "v7", "agt_a")).toBe(false);
    // Reverted, then desired again: a new window, where the agent's next failure counts anew.
    const reverted = desiredAfterRevert(a, T0 + 1);
    store.setDesired(reverted, desiredVersions(reverted), T0 + 1);
    const again = desiredAfterApply("demo", WITH_CANARY, { stable: D1, canary: D2 }, reverted, 2, T0 + 2);
    store.setDesired(again, desiredVersions(again), T0 + 2);
    expect(store.noteLoadFailure("demo", "v2", "agt_a")).toBe(true);
  });
});

describe("the rollout history and undo", () => {
  it("undo applies the model's previous entry; a second undo goes back again, as each undo is an entry too", () => {
    const { store, entries } = history();
    store.addRollout({ applied_at: T0, by: "admin", kind: "apply", models: { demo: { version: "v1" } }, source: null });
    // An entry about another model only is not the demo model's.
    store.addRollout({ applied_at: T0, by: "admin", kind: "apply", models: { other: { version: "x" } }, source: null });
    store.addRollout({ applied_at: T0, by: "admin", kind: "apply", models: { demo: WITH_CANARY }, source: "yaml" });
    const first = undoTarget(entries(), "demo");
    expect(first).toEqual({ id: 1, entry: { version: "v1" } });
    store.addRollout({ applied_at: T0, by: "admin", kind: "undo", models: { demo: first!.entry }, source: null });
    expect(undoTarget(entries(), "demo")).toEqual({ id: 3, entry: WITH_CANARY });
    expect(store.rollouts(10).map((r) => [r.id, r.kind])).toEqual([
      [4, "undo"],
      [3, "apply"],
      [2, "apply"],
      [1, "apply"],
    ]);
  });

  it("a model with one entry, or none, has nothing to undo", () => {
    const { store, entries } = history();
    expect(undoTarget(entries(), "demo")).toBeUndefined();
    store.addRollout({ applied_at: T0, by: "admin", kind: "apply", models: { demo: { version: "v1" } }, source: null });
    expect(undoTarget(entries(), "demo")).toBeUndefined();
  });
});

describe("an agent's version states", () => {
  it("only a change is one: the same states in another order are not", () => {
    const rows = [
      { model: "demo", version: "v1", state: "serving" as const, message: null },
      { model: "demo", version: "v2", state: "loading" as const, message: "3/9 pieces" },
    ];
    const same = [
      { model: "demo", version: "v2", state: "loading" as const, message: "3/9 pieces" },
      { model: "demo", version: "v1", state: "serving" as const },
    ];
    expect(statesChanged(rows, same)).toBe(false);
    expect(statesChanged(rows, [same[1]!])).toBe(true);
    expect(statesChanged(rows, [{ ...same[0]!, message: "4/9 pieces" }, same[1]!])).toBe(true);
  });
});

describe("a model's configuration from its stable version's manifest", () => {
  const manifest = VersionManifest.parse({
    format: 1,
    model: "demo",
    version: "v2",
    runner: "demo",
    input_schema: { type: "object", properties: { prompt: { type: "string" } } },
    expected_runtime_s: 4,
  });

  it("a rollout makes a model it names with the manifest's schema and run time and the defaults", () => {
    const body = modelBodyFrom(undefined, manifest);
    expect(body).toMatchObject({
      input_schema: manifest.input_schema,
      expected_runtime_s: 4,
      max_attempts: 3,
      shards: 1,
    });
    expect(body?.outputs).toBeUndefined();
  });

  it("a held model keeps its other settings; the manifest's outputs replace its own; the same manifest changes nothing", () => {
    const held: ModelConfig = {
      name: "demo",
      number: 4,
      updated_at: "2026-01-01T00:00:00.000Z",
      input_schema: { type: "object" },
      max_attempts: 7,
      run_timeout_s: 99,
      queue_ttl_s: 600,
      retention_s: 3600,
      expected_runtime_s: 10,
      shards: 3,
      outputs: OutputsConfig.parse({ required: ["a.png"] }),
    };
    const body = modelBodyFrom(held, manifest)!;
    expect(body).toMatchObject({ max_attempts: 7, run_timeout_s: 99, shards: 3, expected_runtime_s: 4 });
    expect(body.outputs).toBeUndefined();
    const withOutputs = VersionManifest.parse({ ...manifest, outputs: { required: ["b.gif"] } });
    expect(modelBodyFrom(held, withOutputs)?.outputs).toMatchObject({ required: ["b.gif"] });
    expect(modelBodyFrom({ ...body, name: "demo", number: 4, updated_at: "x" }, manifest)).toBeUndefined();
  });
});

describe("rollout status", () => {
  it("counts the agents per version and state, and shows each window's figures and the reverts", () => {
    const d = canaryDesired();
    const status = modelStatus(
      d,
      [
        { version: "v1", jobs: 40, failed: 1, since: T0 },
        { version: "v2", jobs: 4, failed: 1, since: T0 },
      ],
      [
        { agent_id: "agt_a", model: "demo", version: "v1", state: "serving", message: null },
        { agent_id: "agt_a", model: "demo", version: "v2", state: "loading", message: "fetching" },
        { agent_id: "agt_b", model: "demo", version: "v1", state: "serving", message: null },
        { agent_id: "agt_c", model: "demo", version: "v2", state: "failed", message: "bad piece" },
      ],
      [],
    );
    expect(status.agents).toEqual({
      v1: { loading: 0, serving: 2, failed: 0 },
      v2: { loading: 1, serving: 0, failed: 1 },
    });
    expect(status.window.v2).toEqual({ jobs: 4, failed: 1, failure_pct: 25, since: new Date(T0).toISOString() });
    expect(status.canary).toEqual(d.canary);
    expect(status.agent_versions[3]).toEqual({
      agent_id: "agt_c",
      version: "v2",
      state: "failed",
      message: "bad piece",
    });
    expect(status.agent_versions[0]).not.toHaveProperty("message");
  });
});
