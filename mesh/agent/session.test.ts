import { describe, expect, it } from "vitest";
import { Session } from "./session.ts";

const ref = (job: string, epoch: number) => ({ job_id: job, epoch });
const p = { phase: "sampling" as const, step: 3, total: 10, at: 1 };

describe("agent session", () => {
  it("a session that woke up does not know its agent's leases until a heartbeat lists them all", () => {
    const s = new Session();
    expect(s.holds(ref("job_a", 1))).toBe("unknown");
    s.add([ref("job_a", 1)]);
    expect(s.holds(ref("job_a", 1))).toBe("held");
    expect(s.holds(ref("job_b", 1))).toBe("unknown");
    s.sync([ref("job_a", 1)], []);
    expect(s.holds(ref("job_b", 1))).toBe("stale");
  });

  it("a lease of an older epoch than the one held is stale, whatever the session knows", () => {
    const s = new Session();
    s.add([ref("job_a", 3)]);
    expect(s.holds(ref("job_a", 2))).toBe("stale");
  });

  it("a heartbeat's sync forgets the leases the shards answered stale, with their progress, and keeps one it did not name", () => {
    const s = new Session();
    s.add([ref("job_a", 1), ref("job_b", 1), ref("job_c", 1)]);
    s.progress(ref("job_b", 1), p);
    // job_c was pushed after the agent sent its heartbeat: not named, so neither renewed nor stale.
    s.sync([ref("job_a", 1)], [ref("job_b", 1)]);
    expect(s.holds(ref("job_b", 1))).toBe("stale");
    expect(s.latest("job_b", 1)).toBeUndefined();
    expect(s.holds(ref("job_c", 1))).toBe("held");
    expect(s.leases()).toEqual([ref("job_a", 1), ref("job_c", 1)]);
  });

  it("a hello's sync forgets the leases held before the hello came that were not renewed, and keeps those added since", () => {
    const s = new Session();
    s.add([ref("job_a", 1), ref("job_b", 1)]);
    const since = s.mark();
    // Pushed to the new connection while its hello was with the shards.
    s.add([ref("job_c", 1)]);
    s.sync([ref("job_a", 1)], [], since);
    expect(s.holds(ref("job_b", 1))).toBe("stale");
    expect(s.leases()).toEqual([ref("job_a", 1), ref("job_c", 1)]);
    // The agent may still have got it on its old connection: once a heartbeat's shard renews it, it is held again.
    s.sync([ref("job_b", 1)], []);
    expect(s.holds(ref("job_b", 1))).toBe("held");
  });

  it("progress is kept for the lease held, newest first, and only for its epoch", () => {
    const s = new Session();
    s.add([ref("job_a", 2)]);
    s.progress(ref("job_a", 1), { ...p, step: 9 });
    expect(s.latest("job_a", 2)).toBeUndefined();
    s.progress(ref("job_a", 2), p);
    s.progress(ref("job_a", 2), { ...p, step: 4 });
    expect(s.latest("job_a", 2)).toMatchObject({ step: 4, epoch: 2 });
    expect(s.latest("job_a", 1)).toBeUndefined();
    // A new grant of the job forgets the old attempt's progress.
    s.add([ref("job_a", 3)]);
    expect(s.latest("job_a", 3)).toBeUndefined();
  });

  it("a dropped lease is stale from then on; dropping another epoch changes nothing", () => {
    const s = new Session();
    s.add([ref("job_a", 2)]);
    s.drop(ref("job_a", 1));
    expect(s.holds(ref("job_a", 2))).toBe("held");
    s.drop(ref("job_a", 2));
    s.sync([], []);
    expect(s.holds(ref("job_a", 2))).toBe("stale");
  });

  it("a watch holds until unwatched", () => {
    const s = new Session();
    s.watch("job_a");
    expect(s.isWatched("job_a")).toBe(true);
    s.unwatch("job_a");
    expect(s.isWatched("job_a")).toBe(false);
  });

  it("a lease that ended here stays stale: a late message about it is not checked with its shard, nor re-added", () => {
    const s = new Session();
    s.add([ref("job_a", 2)]);
    s.drop(ref("job_a", 2));
    expect(s.holds(ref("job_a", 2))).toBe("stale");
    expect(s.holds(ref("job_a", 1))).toBe("stale");
    // The shard, asked before the ending reached it, may still say the lease is the agent's.
    s.add([ref("job_a", 2)]);
    expect(s.holds(ref("job_a", 2))).toBe("stale");
    // A newer grant of the same job is the agent's again.
    expect(s.holds(ref("job_a", 3))).toBe("unknown");
    s.add([ref("job_a", 3)]);
    expect(s.holds(ref("job_a", 3))).toBe("held");
  });
});
