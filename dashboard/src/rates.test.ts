import { describe, expect, it } from "vitest";
import type { LiveFrame } from "../../shared/api.ts";
import { HISTORY, modelRates, remember, waitOverSlo } from "./rates.ts";

function frame(at: number, succeeded: number, failed: number, refused = 0): LiveFrame {
  return {
    at,
    queues: [
      {
        model: "m",
        shard: 0,
        tier: "plus",
        depth: 1,
        running: 0,
        oldest_wait_s: 3,
        max_wait_over_slo: 0.2,
        drain_per_s: 1,
      },
      {
        model: "m",
        shard: 1,
        tier: "plus",
        depth: 2,
        running: 0,
        oldest_wait_s: 9,
        max_wait_over_slo: 0.6,
        drain_per_s: 1,
      },
    ],
    counters: [{ model: "m", enqueued: 0, completed: succeeded + failed, succeeded, failed, refused }],
    agents: [],
  };
}

describe("rates from the live frames", () => {
  it("jobs per second, failure rate and refusals come from the counters' differences over the last minute", () => {
    let h: LiveFrame[] = [];
    // 120 s of frames; the window is the last 60 s, in which 60 jobs finished and 6 failed.
    for (let s = 0; s <= 120; s++)
      h = remember(
        h,
        frame(s * 1000, s <= 60 ? 0 : s - 60 - Math.floor((s - 60) / 10), s <= 60 ? 0 : Math.floor((s - 60) / 10), s),
      );
    const r = modelRates(h, "m");
    expect(r.jobsPerS).toBeCloseTo(1, 5);
    expect(r.failureRate).toBeCloseTo(0.1, 5);
    expect(r.refusedPerMin).toBeCloseTo(60, 5);
  });

  it("a counter that went down (a shard restarted) gives no rate, not a negative one", () => {
    const h = [frame(0, 50, 5), frame(1000, 1, 0)];
    expect(modelRates(h, "m")).toEqual({ jobsPerS: null, failureRate: null, refusedPerMin: 0 });
  });

  it("the history keeps the last hour of frames and no more", () => {
    let h: LiveFrame[] = [];
    for (let i = 0; i < HISTORY + 5; i++) h = remember(h, frame(i, 0, 0));
    expect(h).toHaveLength(HISTORY);
    expect(h[0]!.at).toBe(5);
  });

  it("a tier's wait/SLO is the largest of its shards'", () => {
    expect(waitOverSlo(frame(0, 0, 0), "m", "plus")).toBe(0.6);
    expect(waitOverSlo(frame(0, 0, 0), "m", "free")).toBe(0);
  });
});
