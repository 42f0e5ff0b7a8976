import { describe, expect, it } from "vitest";
import type { AdminJobView } from "../../shared/api.ts";
import { timeline } from "./timeline.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const iso = (s: number) => new Date(T0 + s * 1000).toISOString();

function job(over: Partial<AdminJobView>): AdminJobView {
  return {
    id: "job_x",
    model: "demo",
    tier: "plus",
    status: "queued",
    phase: "waiting",
    created_at: iso(0),
    metadata: null,
    deadline: null,
    version: null,
    attempts: [],
    queue: null,
    progress: null,
    outputs: null,
    error: null,
    timings: { created_at: iso(0), started_at: null, finished_at: null, queued_s: null, running_s: null },
    ...over,
  };
}

describe("a job's events in the inspector", () => {
  it("a retried job lists each attempt's agent, version and outcome, then how it ended, in time order", () => {
    const events = timeline(
      job({
        status: "failed",
        error: { code: "oom", message: "CUDA out of memory" },
        attempts: [
          {
            n: 1,
            version: "v1",
            epoch: 1,
            started_at: iso(2),
            ended_at: iso(5),
            executing_s: 3,
            outcome: "failed",
            reason: "oom",
            agent: "agt_a",
            pool: "p",
          },
          {
            n: 2,
            version: "v1",
            epoch: 2,
            started_at: iso(6),
            ended_at: iso(9),
            executing_s: 3,
            outcome: "failed",
            reason: "oom",
            agent: "agt_b",
            pool: "p",
          },
        ],
        timings: { created_at: iso(0), started_at: iso(2), finished_at: iso(9), queued_s: 2, running_s: 7 },
      }),
    );
    expect(events.map((e) => [(e.at - T0) / 1000, e.what])).toEqual([
      [0, "created in tier plus"],
      [2, "attempt 1 leased to agt_a (p) version v1"],
      [5, "attempt 1 failed: oom"],
      [6, "attempt 2 leased to agt_b (p) version v1"],
      [9, "attempt 2 failed: oom"],
      [9, "job failed (oom: CUDA out of memory)"],
    ]);
  });

  it("a queued job has only its creation", () => {
    expect(timeline(job({})).map((e) => e.what)).toEqual(["created in tier plus"]);
  });
});
