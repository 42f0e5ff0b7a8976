import { describe, expect, it } from "vitest";
import { preset } from "./chaos.ts";
import { check, verdictLine } from "./checker.ts";
import { planFaults } from "./faults.ts";
import type { HistoryEvent, SeenAttempt, SeenJob } from "./history.ts";

const T = 1_000_000;
const ACC = "acc_1";

function attempt(epoch: number, outcome: string, at: number, over: Partial<SeenAttempt> = {}): SeenAttempt {
  return {
    epoch,
    agent: "agt_a",
    outcome,
    reason: outcome === "lease_expired" ? "worker_lost" : null,
    started_at: at,
    ended_at: outcome === "running" ? null : at + 500,
    ...over,
  };
}

function job(op: number, status: string, attempts: SeenAttempt[], over: Partial<SeenJob> = {}): SeenJob {
  const last = attempts.at(-1)?.epoch ?? 0;
  return {
    status,
    tier: "api",
    op,
    created_at: T,
    attempts,
    result:
      status === "succeeded"
        ? `succeeded:outputs/job_${op}/${last}/last.png#aa`
        : ["failed", "cancelled", "expired"].includes(status)
          ? `${status}:`
          : null,
    output_epochs: status === "succeeded" ? [last] : [],
    error: status === "failed" ? "runner_crashed" : null,
    ...over,
  };
}

/** A small history: `n` jobs submitted, run once and listed at the end; `edit` changes it. */
function history(n: number, edit: (events: HistoryEvent[]) => void = () => {}): HistoryEvent[] {
  const events: HistoryEvent[] = [
    {
      t: T,
      type: "run",
      seed: 1,
      jobs: n,
      mode: "test",
      max_attempts: 3,
      tiers: [{ name: "api", slo_s: 120 }],
      accounts: [{ id: ACC, tier: "api" }],
      expect_stale: false,
    },
  ];
  const listing: { id: string; op: number | null }[] = [];
  for (let op = 0; op < n; op++) {
    const id = `job_${op}`;
    events.push(
      {
        t: T + op,
        type: "submit.send",
        op,
        try: 1,
        copy: 0,
        account: ACC,
        tier: "api",
        key: `k${op}`,
        fault: null,
        timeout_ms: 30_000,
      },
      { t: T + op + 1, type: "submit.ok", op, try: 1, copy: 0, job: id, status: "queued" },
      {
        t: T + 5_000,
        type: "observe",
        via: "list",
        job: id,
        seen: job(op, "succeeded", [attempt(1, "succeeded", T + 1_000)]),
      },
    );
    listing.push({ id, op });
  }
  events.push({ t: T + 6_000, type: "listing", account: ACC, jobs: listing });
  events.push({
    t: T + 6_001,
    type: "end",
    drained: true,
    fault_window_ms: 5_000,
    submit_ms: 1_000,
    duration_ms: 6_000,
  });
  edit(events);
  return events;
}

/** The last `observe` of a job (its final state, as listed). */
function finalOf(events: HistoryEvent[], id: string): Extract<HistoryEvent, { type: "observe" }> {
  const found = events.filter((e) => e.type === "observe" && e.job === id).at(-1);
  if (found?.type !== "observe") throw new Error(`no observation of ${id}`);
  return found;
}

function listingOf(events: HistoryEvent[]): Extract<HistoryEvent, { type: "listing" }> {
  const found = events.find((e) => e.type === "listing");
  if (found?.type !== "listing") throw new Error("no listing");
  return found;
}

/** A client's read of job_0 at T + 2 s, before its final listing. */
function seenEarlier(events: HistoryEvent[], seen: SeenJob): void {
  events.splice(3, 0, { t: T + 2_000, type: "observe", via: "get", job: "job_0", seen });
}

/** The edge refused job_0's lease at epoch 1 as stale, seen at `t`. */
function refusal(t: number, what: string): HistoryEvent {
  return { t, type: "stale.refused", agent: "agt_a", job: "job_0", epoch: 1, what };
}

/** Makes op 0 a poison job that ended `status` after `attempts`. */
function poison(attempts: SeenAttempt[], status = "failed"): (events: HistoryEvent[]) => void {
  return (events) => {
    const send = events.find((e) => e.type === "submit.send" && e.op === 0);
    if (send?.type === "submit.send") send.fault = "poison";
    finalOf(events, "job_0").seen = job(0, status, attempts);
  };
}

function crashed(epoch: number): SeenAttempt {
  return attempt(epoch, "failed", T + epoch * 1_000, { reason: "runner_crashed" });
}

/** A history whose drain ended `drain` with job_0 still running. */
function openAtEnd(drain: "no_progress" | "cap"): ReturnType<typeof check> {
  return check(
    history(3, (events) => {
      finalOf(events, "job_0").seen = job(0, "running", [attempt(1, "running", T + 1_000)]);
      const end = events.find((e) => e.type === "end");
      if (end?.type === "end") Object.assign(end, { drained: false, drain });
    }),
  );
}

describe("chaos checker", () => {
  it("a clean history passes and its verdict line has the counts", () => {
    const v = check(history(3));
    expect(v.ok).toBe(true);
    expect(v).toMatchObject({ accepted: 3, lost: 0, duplicated: 0, stuck: 0, split: 0, stale_accepted: 0 });
    expect(verdictLine(v)).toMatch(/^lost 0, duplicated 0, stuck 0, split 0, stale accepted 0, stale refused 0, /);
  });

  it("an accepted job missing from its account's jobs at the end is lost", () => {
    const v = check(
      history(3, (events) => {
        const listing = listingOf(events);
        listing.jobs = listing.jobs.filter((j) => j.id !== "job_1");
      }),
    );
    expect(v.ok).toBe(false);
    expect(v.lost).toBe(1);
    expect(v.problems.join("\n")).toContain("job_1");
  });

  it("a history that never reached its end fails: every accepted job counts as lost", () => {
    const v = check(history(2, (events) => events.splice(events.findIndex((e) => e.type === "listing"))));
    expect(v.ok).toBe(false);
    expect(v.lost).toBe(2);
    expect(v.problems.join("\n")).toContain("no end");
  });

  it("a job seen with two different results is duplicated", () => {
    const v = check(
      history(2, (events) => {
        const other = job(0, "succeeded", [attempt(1, "succeeded", T + 1_000)], {
          result: "succeeded:outputs/job_0/1/last.png#bb",
        });
        seenEarlier(events, other);
      }),
    );
    expect(v.duplicated).toBe(1);
    expect(v.ok).toBe(false);
  });

  it("a job seen terminal and later running again is duplicated", () => {
    const v = check(
      history(1, (events) => {
        finalOf(events, "job_0").seen = job(0, "running", [attempt(1, "running", T + 1_000)]);
        seenEarlier(events, job(0, "succeeded", [attempt(1, "succeeded", T + 1_000)]));
      }),
    );
    expect(v.duplicated).toBe(1);
    // Still running at the end: a stuck lease as well.
    expect(v.stuck_running).toBe(1);
  });

  it("a job still running or queued at the end is stuck", () => {
    const v = check(
      history(3, (events) => {
        finalOf(events, "job_0").seen = job(0, "running", [attempt(1, "running", T + 1_000)]);
        finalOf(events, "job_2").seen = job(2, "queued", []);
      }),
    );
    expect(v).toMatchObject({ ok: false, stuck: 2, stuck_running: 1, stuck_queued: 1 });
  });

  it("open jobs left when nothing moved for the drain's quiet period are stuck; left at the drain cap while moving, they are slow, not stuck", () => {
    expect(openAtEnd("no_progress")).toMatchObject({ ok: false, stuck: 1, still_moving: 0 });
    const slow = openAtEnd("cap");
    expect(slow).toMatchObject({ ok: true, stuck: 0, still_moving: 1, lost: 0 });
    expect(verdictLine(slow)).toContain("still moving at the drain cap 1");
  });

  it("one Idempotency-Key answered with two job ids, or listed twice, is a split submit", () => {
    const answered = check(
      history(2, (events) => {
        events.splice(3, 0, { t: T + 3, type: "submit.ok", op: 0, try: 1, copy: 1, job: "job_x", status: "queued" });
      }),
    );
    expect(answered.split).toBe(1);
    expect(answered.ok).toBe(false);
    const listed = check(history(2, (events) => listingOf(events).jobs.push({ id: "job_y", op: 1 })));
    expect(listed.split).toBe(1);
    expect(listed.ok).toBe(false);
  });

  it("a result from an epoch that was not the job's last is a stale result accepted", () => {
    const v = check(
      history(1, (events) => {
        finalOf(events, "job_0").seen = job(0, "succeeded", [
          attempt(1, "succeeded", T + 1_000),
          attempt(2, "lease_expired", T + 2_000),
        ]);
      }),
    );
    expect(v.stale_accepted).toBe(1);
    expect(v.ok).toBe(false);
  });

  it("a result whose outputs name another epoch than the winning attempt is a stale result accepted", () => {
    const v = check(
      history(1, (events) => {
        finalOf(events, "job_0").seen = job(0, "succeeded", [
          attempt(1, "lease_expired", T + 1_000),
          attempt(2, "succeeded", T + 2_000),
        ]);
        finalOf(events, "job_0").seen.output_epochs = [1];
      }),
    );
    expect(v.stale_accepted).toBe(1);
  });

  it("an attempt seen ended that later shows as the success is a stale result accepted", () => {
    const v = check(
      history(1, (events) => {
        seenEarlier(events, job(0, "queued", [attempt(1, "lease_expired", T + 1_000)]));
      }),
    );
    expect(v.stale_accepted).toBe(1);
  });

  it("a result accepted at an epoch the edge had refused as stale before is a stale result accepted", () => {
    expect(check(history(1, (events) => events.splice(1, 0, refusal(T + 1_200, "upload")))).stale_accepted).toBe(1);
    // A refusal after the result was accepted (a renewal that crossed the completion) is not.
    const after = check(history(1, (events) => events.splice(4, 0, refusal(T + 1_600, "renewal"))));
    expect(after).toMatchObject({ ok: true, stale_accepted: 0, stale_refused: 1 });
  });

  it("a renewal refused at every heartbeat of the same lease counts once", () => {
    const v = check(
      history(1, (events) =>
        events.push(refusal(T + 2_000, "renewal"), refusal(T + 7_000, "renewal"), refusal(T + 12_000, "renewal")),
      ),
    );
    expect(v.stale_refused).toBe(1);
    expect(v.stale_refused_by).toEqual({ renewal: 1 });
  });

  it("a run with zombies or partitions but no stale refusal fails: the fence was never exercised", () => {
    const v = check(
      history(1, (events) => {
        const run = events[0];
        if (run?.type === "run") run.expect_stale = true;
      }),
    );
    expect(v.ok).toBe(false);
    expect(v.problems.join("\n")).toContain("never exercised");
  });

  it("a poison job must end failed with a reason after exactly max_attempts spent attempts", () => {
    expect(check(history(2, poison([crashed(1), crashed(2), crashed(3)])))).toMatchObject({
      ok: true,
      poison: { jobs: 1, as_expected: 1 },
    });
    expect(check(history(2, poison([crashed(1), crashed(2)]))).ok).toBe(false);
    expect(check(history(2, poison([crashed(1), attempt(2, "succeeded", T + 2_000)], "succeeded"))).ok).toBe(false);
  });

  it("the requeue delay after a kill runs from the kill to the lost attempt's end", () => {
    const v = check(
      history(1, (events) => {
        events.splice(1, 0, { t: T + 1_200, type: "fault", kind: "kill", agent: "agt_a" });
        finalOf(events, "job_0").seen = job(0, "succeeded", [
          attempt(1, "lease_expired", T + 1_000, { ended_at: T + 11_200 }),
          attempt(2, "succeeded", T + 12_000, { agent: "agt_b" }),
        ]);
      }),
    );
    expect(v.requeue_after_kill).toEqual({ leases: 1, max_s: 10, p50_s: 10, redispatch_max_s: 10.8 });
    expect(v.spent).toEqual({ max: 1, mean: 1 });
  });
});

describe("chaos fault plan", () => {
  const { faults: mix, window_ms: window } = preset("quick");

  it("the same seed gives the same plan, another seed another", () => {
    expect(planFaults(7, window, mix)).toEqual(planFaults(7, window, mix));
    expect(planFaults(8, window, mix)).not.toEqual(planFaults(7, window, mix));
  });

  it("every fault starts and ends inside the window; the edge restarts twice, the second with SIGKILL", () => {
    const plan = planFaults(7, window, mix);
    for (const f of plan) expect(f.at_ms + f.duration_ms).toBeLessThanOrEqual(window);
    expect(plan.filter((f) => f.kind === "edge").map((f) => f.harsh)).toEqual([false, true]);
    expect(plan.filter((f) => f.kind === "zombie" || f.kind === "stall").map((f) => f.duration_ms)).toEqual([
      mix.stop_ms,
      mix.stop_ms,
    ]);
    // Past a lease (30 s): a stopped agent's leases go back while it sleeps.
    expect(mix.stop_ms).toBeGreaterThan(30_000);
    expect(plan.filter((f) => f.kind === "kill").length).toBeGreaterThanOrEqual(10);
  });
});
