import { describe, expect, it } from "vitest";
import { LeaseTable } from "./leases.ts";

const lease = (agent: string, epoch: number, deadline: number) => ({
  agent,
  epoch,
  deadline,
  grantedAt: deadline - 30_000,
  files: false,
});

describe("lease table", () => {
  it("a message names the current lease only with the job's epoch and, when it says who sent it, its holder", () => {
    const t = new LeaseTable();
    t.set("job_a", lease("agt_1", 3, 1_000));
    expect(t.current({ job_id: "job_a", epoch: 3 })).toBeDefined();
    expect(t.current({ job_id: "job_a", epoch: 3 }, "agt_1")).toBeDefined();
    expect(t.current({ job_id: "job_a", epoch: 3 }, "agt_2")).toBeUndefined();
    expect(t.current({ job_id: "job_a", epoch: 2 }, "agt_1")).toBeUndefined();
    expect(t.current({ job_id: "job_b", epoch: 3 })).toBeUndefined();
  });

  it("a new grant of a job replaces its old lease, and each agent counts only what it holds", () => {
    const t = new LeaseTable();
    t.set("job_a", lease("agt_1", 1, 1_000));
    t.set("job_b", lease("agt_1", 1, 1_000));
    t.set("job_a", lease("agt_2", 2, 2_000));
    expect([t.count("agt_1"), t.count("agt_2"), t.size]).toEqual([1, 1, 2]);
    expect(t.heldBy("agt_1")).toEqual(["job_b"]);
    expect(t.end("job_b")?.agent).toBe("agt_1");
    expect(t.count("agt_1")).toBe(0);
    expect(t.end("job_b")).toBeUndefined();
  });

  it("expired leases come earliest first and bounded; the next deadline is the earliest", () => {
    const t = new LeaseTable();
    t.set("job_a", lease("agt_1", 1, 3_000));
    t.set("job_b", lease("agt_1", 1, 1_000));
    t.set("job_c", lease("agt_2", 1, 2_000));
    t.set("job_d", lease("agt_2", 1, 9_000));
    expect(t.expired(3_000, 10)).toEqual(["job_b", "job_c", "job_a"]);
    expect(t.expired(3_000, 2)).toEqual(["job_b", "job_c"]);
    expect(t.nextDeadline()).toBe(1_000);
    expect(new LeaseTable().nextDeadline()).toBeUndefined();
  });
});
