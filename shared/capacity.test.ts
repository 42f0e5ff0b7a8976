import { describe, expect, it } from "vitest";
import { demand, firstBreachS, mergeLoads, slotsNeeded, type TierLoad } from "./capacity.ts";

function tier(name: string, slo: number, over: Partial<TierLoad> = {}): TierLoad {
  return { tier: name, slo_s: slo, queued: 0, running: 0, oldest_wait_s: 0, drain_per_s: 0, ...over };
}

describe("demand signal", () => {
  it("a model with nothing queued, running or arriving needs no agents (scale to zero)", () => {
    const out = demand([{ cost_s: 10, tiers: [tier("api", 120), tier("free", 1800)] }], []);
    expect(out).toMatchObject({ agents_needed: 0, queued: 0, slots_busy: 0, first_breach_s: null });
  });

  it("a backlog needs the slots that start it within its tier's SLO", () => {
    // 30 jobs of 10 s each within 60 s: 5 slots.
    expect(slotsNeeded(10, [tier("api", 60, { queued: 30 })])).toBe(5);
  });

  it("a tier's headroom shrinks as its oldest job waits, so the same backlog needs more slots", () => {
    const fresh = slotsNeeded(10, [tier("api", 60, { queued: 30 })]);
    const old = slotsNeeded(10, [tier("api", 60, { queued: 30, oldest_wait_s: 45 })]);
    expect(old).toBeGreaterThan(fresh);
    expect(old).toBe(20);
  });

  it("tighter tiers are served first, so a looser tier's backlog counts the tighter ones ahead of it", () => {
    const tiers = [tier("api", 60, { queued: 30 }), tier("free", 600, { queued: 300 })];
    // api: 30 in 60 s → 5; free: 330 in 600 s → 5.5 → 6.
    expect(slotsNeeded(10, tiers)).toBe(6);
  });

  it("running jobs and the steady arrival rate keep their slots besides the backlog", () => {
    expect(slotsNeeded(10, [tier("api", 60, { running: 4 })])).toBe(4);
    expect(slotsNeeded(10, [tier("api", 60, { running: 1, drain_per_s: 0.8 })])).toBe(8);
    expect(slotsNeeded(10, [tier("api", 60, { running: 4, queued: 30 })])).toBe(9);
  });

  it("a grant rate that lingers after the work stopped needs no slot: nothing is queued or running", () => {
    expect(slotsNeeded(10, [tier("api", 60, { drain_per_s: 0.05 })])).toBe(0);
  });

  it("agents needed count each agent's slots", () => {
    const out = demand([{ cost_s: 10, tiers: [tier("api", 60, { queued: 30 })] }], [{ slots: 2 }, { slots: 2 }]);
    expect(out.agents_needed).toBe(3);
    expect(out.agents_connected).toBe(2);
    expect(out.slots_total).toBe(4);
  });

  it("with no agents the first breach is the oldest job's headroom", () => {
    expect(firstBreachS(10, [tier("api", 60, { queued: 1, oldest_wait_s: 20 })], 0)).toBe(40);
  });

  it("no breach is foreseen while the slots start every backlog in time", () => {
    expect(firstBreachS(10, [tier("api", 60, { queued: 30 })], 5)).toBeNull();
    expect(firstBreachS(10, [tier("api", 60, { queued: 30 })], 4)).toBe(60);
  });

  it("shards of one model add up by tier, the oldest wait being the largest", () => {
    const merged = mergeLoads([
      { cost_s: 10, tiers: [tier("api", 60, { queued: 3, oldest_wait_s: 5 })] },
      { cost_s: 10, tiers: [tier("api", 60, { queued: 4, oldest_wait_s: 9, running: 2 })] },
    ]);
    expect(merged.tiers).toEqual([tier("api", 60, { queued: 7, running: 2, oldest_wait_s: 9 })]);
    expect(merged.cost_s).toBeCloseTo(10);
  });
});
