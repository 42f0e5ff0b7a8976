import { describe, expect, it } from "vitest";
import { PoolSpec } from "../../shared/pools.ts";
import { decide, initialState, targets, type PoolAgent, type PoolState } from "./decide.ts";

function spec(over: Record<string, unknown> = {}): PoolSpec {
  return PoolSpec.parse({
    models: ["demo"],
    max: 10,
    command: "./scale.sh",
    window_s: 60,
    burst_window_s: 5,
    cooldown_s: 30,
    step_up: 4,
    step_down: 2,
    ...over,
  });
}

const T0 = 1_000_000;

function idle(n: number, prefix = "agt_idle"): PoolAgent[] {
  return Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, running: 0 }));
}

describe("pool decisions", () => {
  it("a model's need fills the lowest-priority pool first, up to its max, then the next", () => {
    const pools = new Map([
      ["training", spec({ priority: 200, max: 100 })],
      ["cloud", spec({ priority: 10, max: 5 })],
      ["other", spec({ models: ["sdxl"] })],
    ]);
    expect(Object.fromEntries(targets(pools, { demo: 8, sdxl: 2 }))).toEqual({ cloud: 5, training: 3, other: 2 });
  });

  it("a burst grows the pool at once, by at most step_up a decision, never past max", () => {
    const s = spec();
    let state: PoolState = initialState(s, 0, T0);
    const first = decide(s, state, 9, [], T0);
    expect(first.change).toMatchObject({ desired: 4, remove: [] });
    state = first.state;
    const second = decide(s, state, 9, [], T0 + 2000);
    expect(second.change?.desired).toBe(8);
    const third = decide(s, second.state, 50, [], T0 + 4000);
    expect(third.change?.desired).toBe(10);
  });

  it("no shrink before the cooldown since the last growth, and then only to the mean need over the stable window", () => {
    const s = spec();
    const grown = decide(s, initialState(s, 0, T0), 4, [], T0).state;
    expect(grown.desired).toBe(4);
    // Need falls to 0 but the cooldown (30 s) has not passed.
    expect(decide(s, grown, 0, idle(4), T0 + 10_000).change).toBeUndefined();
    // Past the cooldown, the stable window (60 s) saw needs of 4 and 0: a mean of 2.
    expect(decide(s, grown, 0, idle(4), T0 + 40_000).change).toMatchObject({ desired: 2 });
  });

  it("idleness shrinks the pool gradually to its min, naming only idle agents", () => {
    const s = spec({ min: 1 });
    let state = decide(s, initialState(s, 0, T0), 5, [], T0).state;
    state = decide(s, state, 5, [], T0 + 1).state;
    expect(state.desired).toBe(5);
    let t = T0 + 61_000;
    const agents = [...idle(4), { id: "agt_busy", running: 1 }];
    const removed = new Set<string>();
    const seen: number[] = [];
    for (let i = 0; i < 10; i++) {
      const out = decide(
        s,
        state,
        0,
        agents.filter((a) => !removed.has(a.id)),
        t,
      );
      if (out.change) {
        for (const id of out.change.remove) removed.add(id);
        seen.push(out.change.desired);
      }
      state = out.state;
      t += 6_000;
    }
    expect(seen).toEqual([3, 1]);
    expect([...removed].sort()).toEqual(["agt_idle0", "agt_idle1", "agt_idle2", "agt_idle3"]);
    expect(state.desired).toBe(1);
  });

  it("a pool whose agents are all busy keeps them however idle the model looks", () => {
    const s = spec({ cooldown_s: 0 });
    const state: PoolState = { desired: 3, lastUpAt: T0, lastDownAt: T0, needs: [] };
    const busy = [
      { id: "a", running: 1 },
      { id: "b", running: 2 },
      { id: "c", running: 1 },
    ];
    expect(decide(s, state, 0, busy, T0 + 120_000).change).toBeUndefined();
  });

  it("scale to zero: a pool with min 0 and no need for its window goes to 0", () => {
    const s = spec({ cooldown_s: 0, step_down: 10 });
    const state: PoolState = { desired: 2, lastUpAt: T0, lastDownAt: T0, needs: [] };
    const out = decide(s, state, 0, idle(2), T0 + 120_000);
    expect(out.change).toMatchObject({ desired: 0, remove: ["agt_idle0", "agt_idle1"] });
  });

  it("a new pool starts at the agents it has, within its bounds", () => {
    expect(initialState(spec({ min: 2 }), 0, T0).desired).toBe(2);
    expect(initialState(spec({ max: 3 }), 7, T0).desired).toBe(3);
    expect(initialState(spec(), 4, T0).desired).toBe(4);
  });
});
