import { describe, expect, it } from "vitest";
import { newJobId } from "../../shared/ids.ts";
import { idFraction, laneAtEnqueue, leaseVersion, leavesLane, reachOf, reaches, type LaneDesired } from "./versions.ts";

const ROUTE = { modelNumber: 3, shard: 1 };
const CANARY: LaneDesired = { stable: "v1", canary: { version: "v2", percent: 10 }, revision: 2 };
const STABLE_ONLY: LaneDesired = { stable: "v1", revision: 3 };

describe("canary routing at enqueue", () => {
  it("routes the canary's share of unpinned jobs to its lane: 10% ± 1% over 20,000 ids", () => {
    const n = 20_000;
    let routed = 0;
    for (let i = 0; i < n; i++) {
      // Ids minted in bursts within the same milliseconds, as a batch submit mints them.
      const id = newJobId(ROUTE, 1_800_000_000_000 + Math.floor(i / 50));
      const out = laneAtEnqueue(id, undefined, CANARY);
      expect(out.lane).toBe(out.routed ? "v2" : null);
      if (out.routed) routed++;
    }
    expect(routed / n).toBeGreaterThan(0.09);
    expect(routed / n).toBeLessThan(0.11);
  });

  it("the draw comes from the job id: the same id lands the same way every time", () => {
    for (let i = 0; i < 200; i++) {
      const id = newJobId(ROUTE);
      const first = laneAtEnqueue(id, undefined, CANARY);
      for (let k = 0; k < 3; k++) expect(laneAtEnqueue(id, undefined, CANARY)).toEqual(first);
      expect(idFraction(id)).toBeGreaterThanOrEqual(0);
      expect(idFraction(id)).toBeLessThan(1);
    }
  });

  it("a job its owner pinned stays in its version's lane and is never routed", () => {
    for (let i = 0; i < 200; i++) {
      const id = newJobId(ROUTE);
      expect(laneAtEnqueue(id, "v9", CANARY)).toEqual({ lane: "v9", routed: false });
      expect(laneAtEnqueue(id, "v1", CANARY)).toEqual({ lane: "v1", routed: false });
    }
  });

  it("without a canary, or at 0%, nothing is routed; at 100% everything unpinned is", () => {
    for (let i = 0; i < 200; i++) {
      const id = newJobId(ROUTE);
      expect(laneAtEnqueue(id, undefined, undefined)).toEqual({ lane: null, routed: false });
      expect(laneAtEnqueue(id, undefined, STABLE_ONLY)).toEqual({ lane: null, routed: false });
      expect(laneAtEnqueue(id, undefined, { ...CANARY, canary: { version: "v2", percent: 0 } }).routed).toBe(false);
      expect(laneAtEnqueue(id, undefined, { ...CANARY, canary: { version: "v2", percent: 100 } })).toEqual({
        lane: "v2",
        routed: true,
      });
    }
  });

  it("a routed lane is left once its version is no longer the canary; the unpinned lane never is", () => {
    expect(leavesLane("v2", CANARY)).toBe(false);
    expect(leavesLane("v2", STABLE_ONLY)).toBe(true);
    expect(leavesLane("v2", { ...CANARY, canary: { version: "v3", percent: 10 } })).toBe(true);
    expect(leavesLane(null, STABLE_ONLY)).toBe(false);
  });
});

describe("which lanes an agent takes from, and the version its lease names", () => {
  it("an agent serving the stable version takes unpinned jobs and its own lanes, not the canary's", () => {
    const reach = reachOf(["v1"], CANARY);
    expect([null, "v1", "v2"].map((l) => reaches(reach, l))).toEqual([true, true, false]);
    expect(leaseVersion(null, ["v1"], CANARY)).toBe("v1");
  });

  it("an agent serving only the canary takes only the canary's lane", () => {
    const reach = reachOf(["v2"], CANARY);
    expect([null, "v1", "v2"].map((l) => reaches(reach, l))).toEqual([false, false, true]);
    expect(leaseVersion("v2", ["v2"], CANARY)).toBe("v2");
  });

  it("an agent serving both takes all three, and runs unpinned jobs on the stable version", () => {
    const reach = reachOf(["v2", "v1"], CANARY);
    expect([null, "v1", "v2"].map((l) => reaches(reach, l))).toEqual([true, true, true]);
    expect(leaseVersion(null, ["v2", "v1"], CANARY)).toBe("v1");
  });

  it("during a switch, an agent still serving an old version runs unpinned jobs on it", () => {
    const next: LaneDesired = { stable: "v3", canary: { version: "v2", percent: 10 }, revision: 4 };
    expect(reaches(reachOf(["v2", "v1"], next), null)).toBe(true);
    expect(leaseVersion(null, ["v2", "v1"], next)).toBe("v1");
  });

  it("an agent that names no versions (a fixed runner) takes unpinned jobs and names none", () => {
    const reach = reachOf([], CANARY);
    expect([null, "v1", "v2"].map((l) => reaches(reach, l))).toEqual([true, false, false]);
    expect(leaseVersion(null, [], CANARY)).toBeNull();
    expect(leaseVersion(null, undefined, undefined)).toBeNull();
  });

  it("without a rollout, an unpinned lease names the first version the agent serves", () => {
    expect(leaseVersion(null, ["v7", "v8"], undefined)).toBe("v7");
    expect(reaches(reachOf(["v7"], undefined), null)).toBe(true);
  });
});
