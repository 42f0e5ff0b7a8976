import { describe, expect, it } from "vitest";
import type { ModelConfig } from "../../shared/api.ts";
import type { Failure } from "../../shared/errors.ts";
import { newJobId } from "../../shared/ids.ts";
import { DEFAULT_TIERS, type TierConfig } from "../../shared/slo.ts";
import { nodeSql } from "../sql/node.ts";
import type { Sql } from "../sql/sql.ts";
import {
  BACKLOG_SHED,
  DEFAULT_LEASE_TTL_MS,
  FIGURES_MS,
  SchedulerCore,
  type AgentRef,
  type Completion,
  type Lease,
} from "./core.ts";
import { idFraction } from "./versions.ts";

const T0 = Date.UTC(2026, 0, 1);
const AGENT_A: AgentRef = { id: "agent_a", pool: "pool-1", versions: ["v1"] };
const AGENT_B: AgentRef = { id: "agent_b", pool: "pool-1", versions: ["v1"] };

function modelConfig(over: Partial<ModelConfig> = {}): ModelConfig {
  return {
    name: "demo",
    number: 0,
    updated_at: "2026-01-01T00:00:00.000Z",
    input_schema: { type: "object" },
    max_attempts: 3,
    run_timeout_s: 600,
    queue_ttl_s: 86_400,
    retention_s: 7 * 86_400,
    expected_runtime_s: 10,
    shards: 1,
    ...over,
  };
}

/** A clock the tests move by hand (ms). */
class Clock {
  now = T0;
  advance(ms: number): number {
    this.now += ms;
    return this.now;
  }
}

interface Harness {
  sql: Sql;
  core: SchedulerCore;
  clock: Clock;
  /** Enqueues one job now and returns its id. */
  submit(account: string, tier: string): string;
}

function harness(over: Partial<ModelConfig> = {}, tiers: readonly TierConfig[] = DEFAULT_TIERS): Harness {
  const sql = nodeSql();
  const core = new SchedulerCore(sql);
  core.configure({ model: modelConfig(over), tiers: [...tiers] });
  const clock = new Clock();
  return {
    sql,
    core,
    clock,
    submit(account, tier) {
      const id = newJobId({ modelNumber: 0, shard: 0 }, clock.now);
      const [out] = core.enqueue(
        [{ id, account_id: account, tier, body: { model: "demo", input: { prompt: `job ${id}` } } }],
        clock.now,
      );
      expect(out).toMatchObject({ ok: true, id, status: "queued", existed: false });
      return id;
    },
  };
}

function only<T>(xs: readonly T[]): T {
  expect(xs).toHaveLength(1);
  return xs[0]!;
}

function failure(x: { ok: boolean }): Failure {
  expect(x.ok).toBe(false);
  return x as Failure;
}

function depthOf(core: SchedulerCore, tier: string, now: number): { depth: number; running: number } {
  const s = core.stats(now).find((t) => t.tier === tier)!;
  return { depth: s.depth, running: s.running };
}

describe("SchedulerCore: leases and fencing", () => {
  it("a lease bumps the epoch and a result with the old epoch is refused", () => {
    const { core, clock, submit } = harness();
    const id = submit("acc_1", "api");
    const first = only(core.lease(AGENT_A, 1, clock.now));
    expect(first).toMatchObject({ job_id: id, epoch: 1, attempt: 1, model: "demo", version: "v1" });
    expect(first.deadline).toBe(clock.now + DEFAULT_LEASE_TTL_MS);

    clock.advance(DEFAULT_LEASE_TTL_MS);
    expect(core.sweep(clock.now).requeued).toBe(1);
    const second = only(core.lease(AGENT_B, 1, clock.now));
    expect(second).toMatchObject({ job_id: id, epoch: 2, attempt: 2 });

    const zombie = core.complete({ job_id: id, epoch: 1 }, { status: "succeeded", outputs: [{ url: "x" }] }, clock.now);
    expect(failure(zombie).code).toBe("conflict");
    expect(core.renew(AGENT_A.id, [{ job_id: id, epoch: 1 }], clock.now)).toMatchObject({
      renewed: [],
      stale: [{ job_id: id, epoch: 1 }],
    });
    expect(core.store.job(id)).toMatchObject({ status: "running", agent_id: AGENT_B.id, epoch: 2, outputs: null });

    expect(
      core.complete({ job_id: id, epoch: 2 }, { status: "succeeded", outputs: [{ url: "y" }] }, clock.now),
    ).toEqual({
      ok: true,
      status: "succeeded",
    });
    const view = core.view(id, "acc_1", clock.now);
    expect(view.ok && view.job.outputs).toEqual([{ url: "y" }]);
    // Once finished, even the right epoch is refused a second time.
    expect(failure(core.complete({ job_id: id, epoch: 2 }, { status: "succeeded", outputs: [] }, clock.now)).code).toBe(
      "conflict",
    );
  });

  it("renew extends only the leases the agent holds at the epoch it names", () => {
    const { core, clock, submit } = harness();
    const a = submit("acc_1", "api");
    const b = submit("acc_1", "api");
    const [la, lb] = core.lease(AGENT_A, 2, clock.now) as [Lease, Lease];
    clock.advance(10_000);
    const out = core.renew(
      AGENT_A.id,
      [
        { job_id: la.job_id, epoch: la.epoch },
        { job_id: lb.job_id, epoch: lb.epoch + 1 },
        { job_id: "job_unknown", epoch: 1 },
      ],
      clock.now,
    );
    expect(out.renewed).toEqual([{ job_id: la.job_id, epoch: la.epoch }]);
    expect(out.stale.map((r) => r.job_id)).toEqual([lb.job_id, "job_unknown"]);
    expect(core.leaseDeadline(la.job_id)).toBe(clock.now + DEFAULT_LEASE_TTL_MS);
    expect(core.leaseDeadline(lb.job_id)).toBe(T0 + DEFAULT_LEASE_TTL_MS);
    // A renewal writes nothing: the row keeps the grant's deadline, and no commit was made.
    expect(core.store.job(la.job_id)?.lease_deadline).toBe(T0 + DEFAULT_LEASE_TTL_MS);
    // Another agent cannot renew a lease it does not hold.
    expect(core.renew(AGENT_B.id, [{ job_id: a, epoch: 1 }], clock.now).renewed).toEqual([]);
    expect([a, b].sort()).toEqual([la.job_id, lb.job_id].sort());
  });

  it("a lease whose attempt ran past run_timeout_s is not renewed: the job goes back with run_timeout and an attempt spent", () => {
    const { core, clock, submit } = harness({ run_timeout_s: 60, max_attempts: 2 });
    const id = submit("acc_1", "api");
    const first = only(core.lease(AGENT_A, 1, clock.now));
    const ref = { job_id: id, epoch: first.epoch };
    // A hung runner's agent keeps heartbeating: renewed until the attempt has run 60 s.
    clock.advance(59_000);
    expect(core.renew(AGENT_A.id, [ref], clock.now).renewed).toEqual([ref]);
    clock.advance(1_000);
    const out = core.renew(AGENT_A.id, [ref], clock.now);
    expect(out).toMatchObject({ renewed: [], stale: [ref] });
    expect(core.store.job(id)).toMatchObject({ status: "queued", spent: 1, agent_id: null });
    const view = core.view(id, "acc_1", clock.now);
    expect(view.ok && view.job.attempts.at(-1)).toMatchObject({ outcome: "failed", reason: "run_timeout" });
    // The agent's late result is stale; the second attempt times out too and the job fails.
    expect(core.complete(ref, { status: "succeeded", outputs: [] }, clock.now).ok).toBe(false);
    const second = only(core.lease(AGENT_B, 1, clock.now));
    clock.advance(60_000);
    core.renew(AGENT_B.id, [{ job_id: id, epoch: second.epoch }], clock.now);
    expect(core.store.job(id)).toMatchObject({ status: "failed", error_code: "run_timeout" });
  });

  it("the counters count jobs that succeeded and jobs that failed for good, not the attempts retried", () => {
    const { core, clock, submit } = harness({ max_attempts: 2 });
    const [ok, bad] = [submit("acc_1", "api"), submit("acc_1", "api")];
    const oom = { status: "failed", code: "oom", message: "CUDA out of memory" } as const;
    for (const l of core.lease(AGENT_A, 2, clock.now)) {
      core.complete(l, l.job_id === ok ? { status: "succeeded", outputs: [] } : oom, clock.now);
    }
    expect(core.counters).toMatchObject({ completed: 2, succeeded: 1, failed: 0 });
    const retry = only(core.lease(AGENT_A, 1, clock.now));
    expect(retry.job_id).toBe(bad);
    core.complete(retry, oom, clock.now);
    expect(core.store.job(bad)).toMatchObject({ status: "failed" });
    expect(core.counters).toMatchObject({ enqueued: 2, completed: 3, succeeded: 1, failed: 1, refused: 0 });
  });

  it("renewals make no commit, and a shard that wakes up gives every running lease a fresh lease time", () => {
    const { sql, core, clock, submit } = harness();
    const id = submit("acc_1", "api");
    const lease = only(core.lease(AGENT_A, 1, clock.now));
    const commits = core.counters.commits;
    clock.advance(20_000);
    core.renew(AGENT_A.id, [{ job_id: id, epoch: lease.epoch }], clock.now);
    expect(core.counters.commits).toBe(commits);
    // The shard sleeps and wakes 25 s later: the lease lives a TTL from then, still the agent's.
    clock.advance(25_000);
    const woken = new SchedulerCore(sql, clock.now);
    expect(woken.leaseDeadline(id)).toBe(clock.now + DEFAULT_LEASE_TTL_MS);
    expect(woken.renew(AGENT_A.id, [{ job_id: id, epoch: lease.epoch }], clock.now).renewed).toHaveLength(1);
    expect(woken.renew(AGENT_B.id, [{ job_id: id, epoch: lease.epoch }], clock.now).stale).toHaveLength(1);
  });

  it("an expired lease requeues the job keeping its enqueue time and tag with attempts+1", () => {
    const { core, clock, submit } = harness();
    const id = submit("acc_1", "plus");
    const before = core.store.job(id)!;
    clock.advance(5_000);
    core.lease(AGENT_A, 1, clock.now);
    clock.advance(DEFAULT_LEASE_TTL_MS - 1);
    expect(core.sweep(clock.now)).toEqual({ requeued: 0, expired: 0, deleted: 0 });
    clock.advance(1);
    expect(core.sweep(clock.now)).toEqual({ requeued: 1, expired: 0, deleted: 0 });
    const after = core.store.job(id)!;
    expect(after).toMatchObject({
      status: "queued",
      phase: "waiting",
      enqueued_at: before.enqueued_at,
      tag: before.tag,
      spent: 1,
      agent_id: null,
      lease_deadline: null,
      epoch: 1,
    });
    const view = core.view(id, "acc_1", clock.now);
    expect(view.ok && view.job.attempts).toMatchObject([{ n: 1, outcome: "lease_expired", reason: "worker_lost" }]);
    expect(depthOf(core, "plus", clock.now)).toEqual({ depth: 1, running: 0 });
    expect(only(core.lease(AGENT_B, 1, clock.now))).toMatchObject({ job_id: id, epoch: 2, attempt: 2 });
  });

  it("past max_attempts an expired lease fails the job with reason worker_lost", () => {
    const { core, clock, submit } = harness({ max_attempts: 2 });
    const id = submit("acc_1", "api");
    for (let i = 0; i < 2; i++) {
      only(core.lease(AGENT_A, 1, clock.now));
      clock.advance(DEFAULT_LEASE_TTL_MS);
      expect(core.sweep(clock.now).requeued).toBe(1);
    }
    const job = core.store.job(id)!;
    expect(job).toMatchObject({ status: "failed", error_code: "worker_lost", spent: 2, finished_at: clock.now });
    expect(job.error_message).toContain("gave up after 2 attempts");
    expect(depthOf(core, "api", clock.now)).toEqual({ depth: 0, running: 0 });
    expect(core.lease(AGENT_A, 1, clock.now)).toEqual([]);
  });

  it("release with reason drained requeues without spending an attempt", () => {
    const { core, clock, submit } = harness({ max_attempts: 1 });
    const id = submit("acc_1", "api");
    for (const reason of ["drained", "preempted", "drained"] as const) {
      only(core.lease(AGENT_A, 1, clock.now));
      clock.advance(1000);
      expect(core.release(AGENT_A.id, reason, clock.now)).toBe(1);
      expect(core.store.job(id)).toMatchObject({ status: "queued", spent: 0, agent_id: null });
    }
    const view = core.view(id, "acc_1", clock.now);
    expect(view.ok && view.job.attempts.map((a) => [a.outcome, a.reason])).toEqual([
      ["requeued", "drained"],
      ["requeued", "preempted"],
      ["requeued", "drained"],
    ]);
    // An agent whose socket closed does spend one: with max_attempts 1 the job fails.
    only(core.lease(AGENT_A, 1, clock.now));
    expect(core.release(AGENT_A.id, "worker_lost", clock.now)).toBe(1);
    expect(core.store.job(id)).toMatchObject({ status: "failed", error_code: "worker_lost", spent: 1 });
    expect(core.release(AGENT_A.id, "worker_lost", clock.now)).toBe(0);
  });

  it("an agent that says hello without leases it held before that connection gets them requeued at once, spending an attempt", () => {
    const { core, clock, submit } = harness();
    const [kept, lost, other] = [submit("acc_1", "api"), submit("acc_1", "api"), submit("acc_1", "api")];
    const held = core.lease(AGENT_A, 2, clock.now);
    const byB = only(core.lease(AGENT_B, 1, clock.now));
    const keep = held.find((l) => l.job_id === kept)!;
    const connectedAt = clock.advance(1000);
    // Granted after the new connection opened: the hello cannot have named it yet.
    const fresh = submit("acc_1", "api");
    const late = only(core.lease(AGENT_A, 3, clock.advance(10)));
    expect(late.job_id).toBe(fresh);
    const n = core.releaseUnlisted(AGENT_A.id, [{ job_id: kept, epoch: keep.epoch }], connectedAt, clock.advance(10));
    expect(n).toBe(1);
    expect(core.store.job(lost)).toMatchObject({ status: "queued", spent: 1, agent_id: null });
    const view = core.view(lost, "acc_1", clock.now);
    expect(view.ok && view.job.attempts.map((a) => [a.outcome, a.reason])).toEqual([["lease_expired", "worker_lost"]]);
    expect(core.store.job(kept)).toMatchObject({ status: "running", agent_id: AGENT_A.id, spent: 0 });
    expect(core.store.job(fresh)).toMatchObject({ status: "running", agent_id: AGENT_A.id });
    expect(core.store.job(other)).toMatchObject({ status: "running", agent_id: AGENT_B.id, epoch: byB.epoch });
    expect(core.releaseUnlisted(AGENT_A.id, [], connectedAt, clock.now)).toBe(1);
    expect(core.store.job(kept)).toMatchObject({ status: "queued", spent: 1 });
  });

  it("a lease's attempt counts the attempts spent, this one included: drained, preempted and undelivered grants do not raise it, and it never passes max_attempts", () => {
    const { core, clock, submit } = harness({ max_attempts: 3 });
    const id = submit("acc_1", "api");
    const attempts: number[] = [];
    const grant = (): Lease => {
      const lease = only(core.lease(AGENT_A, 1, clock.now));
      attempts.push(lease.attempt);
      return lease;
    };
    // Three grants given back without spending an attempt.
    grant();
    core.release(AGENT_A.id, "drained", clock.now);
    const preempted = grant();
    core.releaseLeases(AGENT_A.id, [{ job_id: id, epoch: preempted.epoch }], "preempted", clock.now);
    expect(core.undeliver(AGENT_A.id, [{ job_id: id, epoch: grant().epoch }], clock.now)).toBe(1);
    // Then attempts that count: a lost agent, a retryable failure, a lost agent again.
    grant();
    core.release(AGENT_A.id, "worker_lost", clock.now);
    const oom = { status: "failed", code: "oom", message: "CUDA out of memory" } as const;
    expect(core.complete({ job_id: id, epoch: grant().epoch }, oom, clock.now)).toMatchObject({ status: "queued" });
    grant();
    core.release(AGENT_A.id, "worker_lost", clock.now);
    expect(attempts).toEqual([1, 1, 1, 1, 2, 3]);
    expect(core.store.job(id)).toMatchObject({ status: "failed", spent: 3, error_code: "worker_lost" });
    expect(core.lease(AGENT_A, 1, clock.now)).toEqual([]);
    // The job's record keeps every grant that reached an agent, including those that spent nothing.
    const view = core.view(id, "acc_1", clock.now);
    expect(view.ok && view.job.attempts.map((a) => a.n)).toEqual([1, 2, 3, 4, 5]);
  });

  it("a retryable failure requeues and spends an attempt; a non-retryable one fails at once", () => {
    const { core, clock, submit } = harness({ max_attempts: 2 });
    const id = submit("acc_1", "api");
    let lease = only(core.lease(AGENT_A, 1, clock.now));
    const oom = { status: "failed", code: "oom", message: "CUDA out of memory" } as const;
    expect(core.complete({ job_id: id, epoch: lease.epoch }, oom, clock.now)).toEqual({ ok: true, status: "queued" });
    expect(core.store.job(id)).toMatchObject({ status: "queued", spent: 1 });
    lease = only(core.lease(AGENT_A, 1, clock.now));
    expect(core.complete({ job_id: id, epoch: lease.epoch }, oom, clock.now)).toEqual({ ok: true, status: "failed" });
    expect(core.store.job(id)).toMatchObject({ status: "failed", error_code: "oom", spent: 2 });

    const other = submit("acc_1", "api");
    lease = only(core.lease(AGENT_A, 1, clock.now));
    const bad = { status: "failed", code: "model_error", message: "no frames" } as const;
    expect(core.complete({ job_id: other, epoch: lease.epoch }, bad, clock.now)).toEqual({
      ok: true,
      status: "failed",
    });
    expect(core.store.job(other)).toMatchObject({ status: "failed", error_code: "model_error", spent: 0 });
    expect(depthOf(core, "api", clock.now)).toEqual({ depth: 0, running: 0 });
  });

  it("an agent gets at most its capacity in leases (credits)", () => {
    const { core, clock, submit } = harness();
    for (let i = 0; i < 10; i++) submit(`acc_${i % 2}`, "api");
    const first = core.lease(AGENT_A, 3, clock.now);
    expect(first).toHaveLength(3);
    expect(core.lease(AGENT_A, 3, clock.now)).toEqual([]);
    expect(core.lease(AGENT_A, 2, clock.now)).toEqual([]);
    expect(core.lease(AGENT_A, 0, clock.now)).toEqual([]);
    expect(core.lease(AGENT_A, -5, clock.now)).toEqual([]);
    const done = first[0]!;
    core.complete({ job_id: done.job_id, epoch: done.epoch }, { status: "succeeded", outputs: [] }, clock.now);
    expect(core.lease(AGENT_A, 3.9, clock.now)).toHaveLength(1);
    // Credits are per agent: another agent has its own.
    expect(core.lease(AGENT_B, 4, clock.now)).toHaveLength(4);
    expect(core.leasesHeld(AGENT_A.id)).toBe(3);
    expect(core.leasesHeld(AGENT_B.id)).toBe(4);
    expect(depthOf(core, "api", clock.now)).toEqual({ depth: 2, running: 7 });
  });
});

describe("SchedulerCore: the pick", () => {
  it("the pick takes the tier whose oldest job has the largest wait/SLO, ties to the smaller SLO", () => {
    const { core, clock, submit } = harness();
    const free = submit("acc_1", "free");
    clock.advance(60_000);
    const api = submit("acc_2", "api");
    clock.advance(60_000);
    // free waited 120 s of 1800 (0.07), api 60 s of 120 (0.5): api first.
    expect(core.lease(AGENT_A, 2, clock.now).map((l) => l.job_id)).toEqual([api, free]);

    // free waited its whole SLO (1.0), api 100 s of 120 (0.83): free first.
    const h = harness();
    const free2 = h.submit("acc_1", "free");
    h.clock.advance(1_700_000);
    const api2 = h.submit("acc_2", "api");
    h.clock.advance(100_000);
    expect(h.core.lease(AGENT_A, 1, h.clock.now)[0]?.job_id).toBe(free2);
    expect(h.core.lease(AGENT_A, 2, h.clock.now)[0]?.job_id).toBe(api2);

    // Equal wait/SLO: api waited 120 s of 120, light 600 s of 600; the smaller SLO wins.
    const t = harness();
    const light = t.submit("acc_1", "light");
    t.clock.advance(480_000);
    const api3 = t.submit("acc_2", "api");
    t.clock.advance(120_000);
    expect(t.core.lease(AGENT_A, 2, t.clock.now).map((l) => l.job_id)).toEqual([api3, light]);

    // Nothing has waited (all 0): the smallest SLO first, in SLO order.
    const z = harness();
    const ids = ["free", "plus", "enterprise", "light", "api"].map((tier) => [tier, z.submit("acc_1", tier)] as const);
    const order = z.core.lease(AGENT_A, 5, z.clock.now).map((l) => ids.find(([, id]) => id === l.job_id)![0]);
    expect(order).toEqual(["api", "enterprise", "plus", "light", "free"]);
  });

  it("a tier is ranked by its oldest queued job's wait, and a tier that wins on its backlog alternates its oldest job and its head", () => {
    const { core, clock, submit } = harness({ expected_runtime_s: 10 });
    const heavy = Array.from({ length: 10 }, () => submit("acc_heavy", "plus"));
    // One heavy job runs in 1 s: the measured cost drops below the 10 s estimate, so a newcomer's
    // tag (virtual time + cost) lands ahead of the heavy account's next one.
    const first = only(core.lease(AGENT_A, 1, clock.now));
    expect(heavy).toContain(first.job_id);
    clock.advance(1_000);
    core.complete({ job_id: first.job_id, epoch: first.epoch }, { status: "succeeded", outputs: [] }, clock.now);
    clock.advance(199_000);
    const api = submit("acc_api", "api");
    clock.advance(100_000);
    const newcomer = submit("acc_new", "plus");
    // plus's head by tag is the newcomer (waited 0 s), its oldest job waited 300 s of 300 (1.0);
    // api's only job waited 100 s of 120 (0.83). plus wins on its backlog, so its grants
    // alternate between its oldest job and its head. Ranked by its head (0), plus would have
    // lost to api.
    const oldest = heavy.filter((id) => id !== first.job_id).sort()[0]; // same enqueue time: ties by id
    expect(core.lease(AGENT_A, 2, clock.now).map((l) => l.job_id)).toEqual([oldest, newcomer]);
    expect(core.store.job(api)?.status).toBe("queued");
  });

  it("equal wait/SLO and equal SLO go to the tier name", () => {
    const tiers: TierConfig[] = [
      { name: "zeta", slo_s: 300, admission_k: 4, rate_limit_per_min: 60 },
      { name: "alpha", slo_s: 300, admission_k: 4, rate_limit_per_min: 60 },
    ];
    const { core, clock, submit } = harness({}, tiers);
    const z = submit("acc_1", "zeta");
    const a = submit("acc_1", "alpha");
    clock.advance(10_000);
    expect(core.lease(AGENT_A, 2, clock.now).map((l) => l.job_id)).toEqual([a, z]);
  });

  it("inside a tier an account with 1000 queued jobs does not delay another account's single job", () => {
    const { core, clock, submit } = harness();
    const heavy = Array.from({ length: 1000 }, () => ({
      id: newJobId({ modelNumber: 0, shard: 0 }, clock.now),
      account_id: "acc_heavy",
      tier: "plus",
      body: { model: "demo", input: { prompt: "many" } },
    }));
    expect(core.enqueue(heavy, clock.now).every((o) => o.ok)).toBe(true);
    clock.advance(1_000);
    const light = submit("acc_light", "plus");
    const leased: string[] = [];
    for (let i = 0; i < 5; i++) {
      const l = only(core.lease(AGENT_A, 1, clock.now));
      leased.push(l.job_id);
      core.complete({ job_id: l.job_id, epoch: l.epoch }, { status: "succeeded", outputs: [] }, clock.now);
    }
    // At most one heavy job (the one whose fair tag is within one cost of the light job's) goes first.
    expect(leased.indexOf(light)).toBeGreaterThanOrEqual(0);
    expect(leased.indexOf(light)).toBeLessThanOrEqual(1);
    expect(leased.slice(0, 2)).toContain(light);
  });

  it("inside a tier a light account's job does not wait behind a heavy backlog that built up before any agent came", () => {
    // Launch day: a heavy account queues 100 jobs (cost 10 s each); for 10 minutes no agent
    // serves the tier; then a light account submits one job and the first agent attaches.
    const { core, clock } = harness();
    const heavy = Array.from({ length: 100 }, () => ({
      id: newJobId({ modelNumber: 0, shard: 0 }, clock.now),
      account_id: "acc_heavy",
      tier: "plus",
      body: { model: "demo", input: { prompt: "many" } },
    }));
    core.enqueue(heavy, clock.now);
    clock.advance(600_000);
    const light = newJobId({ modelNumber: 0, shard: 0 }, clock.now);
    const [admitted] = core.enqueue(
      [{ id: light, account_id: "acc_light", tier: "plus", body: { model: "demo", input: {} } }],
      clock.now,
    );
    expect(admitted).toMatchObject({ ok: true, existed: false });
    const order = core.lease(AGENT_A, 100, clock.now).map((l) => l.job_id);
    // Start-time fair queuing puts it at most one heavy job back.
    expect(order.indexOf(light)).toBeLessThanOrEqual(1);
  });

  it("a requeued job keeps its place ahead of jobs enqueued after it", () => {
    const { core, clock, submit } = harness();
    const first = submit("acc_1", "api");
    const l = only(core.lease(AGENT_A, 1, clock.now));
    clock.advance(1_000);
    const second = submit("acc_1", "api");
    core.release(AGENT_A.id, "preempted", clock.now);
    expect(core.lease(AGENT_B, 2, clock.now).map((x) => x.job_id)).toEqual([first, second]);
    expect(l.job_id).toBe(first);
  });
});

describe("SchedulerCore: push dispatch to parked agents", () => {
  it("a parked steady agent is offered new work before a preemptible agent parked earlier", () => {
    const { core, clock, submit } = harness();
    const lent: AgentRef = { id: "agent_lent", pool: "training", versions: ["v1"], preemptible: true };
    expect(core.lease(lent, 1, clock.now, 1)).toEqual([]);
    clock.advance(10);
    expect(core.lease(AGENT_A, 1, clock.now, 1)).toEqual([]);
    const urgent = submit("acc_1", "api");
    const next = submit("acc_1", "free");
    const pushed = core.takeDeliveries();
    expect(pushed.get(AGENT_A.id)?.map((l) => l.job_id)).toEqual([urgent]);
    expect(pushed.get(lent.id)?.map((l) => l.job_id)).toEqual([next]);
  });

  it("a reclaimed preemptible agent's jobs go back ahead of later ones, with no attempt spent", () => {
    const { core, clock, submit } = harness({ max_attempts: 1 });
    const lent: AgentRef = { id: "agent_lent", pool: "training", versions: ["v1"], preemptible: true };
    const first = submit("acc_1", "api");
    only(core.lease(lent, 1, clock.now));
    clock.advance(1_000);
    const later = submit("acc_1", "api");
    expect(core.release(lent.id, "preempted", clock.now)).toBe(1);
    const leases = core.lease(AGENT_A, 2, clock.now);
    expect(leases.map((l) => [l.job_id, l.attempt])).toEqual([
      [first, 1],
      [later, 1],
    ]);
    expect(core.store.job(first)).toMatchObject({ spent: 0, status: "running" });
  });

  it("a parked agent gets the next enqueued jobs pushed at once, up to its credits", () => {
    const { core, clock, submit } = harness();
    expect(core.lease(AGENT_A, 2, clock.now, 2)).toEqual([]);
    const a = submit("acc_1", "api");
    const b = submit("acc_1", "api");
    const c = submit("acc_1", "api");
    const pushed = core.takeDeliveries();
    expect([...pushed.keys()]).toEqual([AGENT_A.id]);
    expect(pushed.get(AGENT_A.id)?.map((l) => [l.job_id, l.epoch, l.attempt])).toEqual([
      [a, 1, 1],
      [b, 1, 1],
    ]);
    expect(core.store.job(c)?.status).toBe("queued");
    expect(core.takeDeliveries().size).toBe(0);
    // Its credits are spent: the next enqueue is not pushed to it.
    submit("acc_1", "api");
    expect(core.takeDeliveries().size).toBe(0);
  });

  it("maxNew bounds what one request takes now; the rest of the credits wait parked", () => {
    const { core, clock, submit } = harness();
    const first = submit("acc_1", "plus");
    expect(core.lease(AGENT_A, 3, clock.now, 2).map((l) => l.job_id)).toEqual([first]);
    const second = submit("acc_1", "plus");
    const third = submit("acc_1", "plus");
    expect(
      core
        .takeDeliveries()
        .get(AGENT_A.id)
        ?.map((l) => l.job_id),
    ).toEqual([second]);
    expect(core.store.job(third)?.status).toBe("queued");
  });

  it("parked agents are served oldest first", () => {
    const { core, clock, submit } = harness();
    core.lease(AGENT_B, 1, clock.now, 1);
    clock.advance(1);
    core.lease(AGENT_A, 1, clock.now, 1);
    const one = submit("acc_1", "api");
    expect([...core.takeDeliveries()].map(([agent, ls]) => [agent, ls.map((l) => l.job_id)])).toEqual([
      [AGENT_B.id, [one]],
    ]);
    const two = submit("acc_1", "api");
    expect(
      core
        .takeDeliveries()
        .get(AGENT_A.id)
        ?.map((l) => l.job_id),
    ).toEqual([two]);
  });

  it("a parked request lapses after 15 s without a heartbeat; unpark and release forget it at once", () => {
    const { core, clock, submit } = harness();
    core.lease(AGENT_A, 1, clock.now, 1);
    clock.advance(15_000);
    submit("acc_1", "api");
    expect(core.takeDeliveries().get(AGENT_A.id)).toHaveLength(1);

    const h = harness();
    h.core.lease(AGENT_A, 1, h.clock.now, 1);
    h.clock.advance(15_001);
    h.submit("acc_1", "api");
    expect(h.core.takeDeliveries().size).toBe(0);

    h.core.lease(AGENT_B, 5, h.clock.now, 0);
    h.core.lease(AGENT_A, 5, h.clock.now, 0);
    expect(h.core.leasesHeld(AGENT_A.id) + h.core.leasesHeld(AGENT_B.id)).toBe(0);
    // maxNew 0 took nothing and parked nothing.
    h.submit("acc_1", "api");
    expect(h.core.takeDeliveries().size).toBe(0);

    const u = harness();
    u.core.lease(AGENT_A, 1, u.clock.now, 1);
    u.core.unpark(AGENT_A.id);
    u.core.lease(AGENT_B, 1, u.clock.now, 1);
    u.core.release(AGENT_B.id, "drained", u.clock.now);
    u.submit("acc_1", "api");
    expect(u.core.takeDeliveries().size).toBe(0);
  });

  it("a requeued job is pushed to a parked agent at once, with a new epoch", () => {
    const { core, clock, submit } = harness();
    const id = submit("acc_1", "api");
    only(core.lease(AGENT_A, 1, clock.now));
    core.lease(AGENT_B, 1, clock.now, 1);
    clock.advance(DEFAULT_LEASE_TTL_MS);
    core.lease(AGENT_B, 1, clock.now, 1); // B's heartbeat re-parks it
    expect(core.sweep(clock.now).requeued).toBe(1);
    const pushed = core.takeDeliveries().get(AGENT_B.id);
    expect(pushed?.map((l) => [l.job_id, l.epoch, l.attempt])).toEqual([[id, 2, 2]]);
    expect(core.store.job(id)).toMatchObject({ status: "running", agent_id: AGENT_B.id, spent: 1 });
  });

  it("a job an agent gives back (drained) is not pushed to that agent again, and a heartbeat with no room unparks it", () => {
    const { core, clock, submit } = harness();
    const id = submit("acc_1", "api");
    const lease = only(core.lease(AGENT_A, 2, clock.now, 2));
    // A still has a credit: it waits parked for one more job.
    core.releaseLeases(AGENT_A.id, [{ job_id: id, epoch: lease.epoch }], "drained", clock.now);
    expect(core.takeDeliveries().size).toBe(0);
    expect(core.store.job(id)?.status).toBe("queued");
    // Parked again, then a draining heartbeat (no credits): the next job waits for someone else.
    core.lease(AGENT_A, 2, clock.now, 1);
    core.takeDeliveries();
    core.heartbeat(AGENT_A, [], 2, 0, clock.now);
    submit("acc_1", "api");
    expect(core.takeDeliveries().size).toBe(0);
  });

  it("undeliver returns a lease as if never granted: no attempt recorded or spent, its epoch kept", () => {
    const { core, clock, submit } = harness({ max_attempts: 1 });
    core.lease(AGENT_A, 1, clock.now, 1);
    const id = submit("acc_1", "api");
    const lease = core.takeDeliveries().get(AGENT_A.id)![0]!;
    expect(lease).toMatchObject({ job_id: id, epoch: 1, attempt: 1 });
    // A stale ref, or another agent's, is ignored.
    expect(core.undeliver(AGENT_B.id, [{ job_id: id, epoch: 1 }], clock.now)).toBe(0);
    expect(core.undeliver(AGENT_A.id, [{ job_id: id, epoch: 0 }], clock.now)).toBe(0);
    expect(core.undeliver(AGENT_A.id, [{ job_id: id, epoch: 1 }], clock.now)).toBe(1);
    expect(core.store.job(id)).toMatchObject({
      status: "queued",
      spent: 0,
      epoch: 1,
      started_at: null,
      agent_id: null,
    });
    const view = core.view(id, "acc_1", clock.now);
    expect(view.ok && view.job.attempts).toEqual([]);
    expect(depthOf(core, "api", clock.now)).toEqual({ depth: 1, running: 0 });
    // The agent was unparked: nothing is pushed to it again.
    expect(core.takeDeliveries().size).toBe(0);
    expect(only(core.lease(AGENT_B, 1, clock.now))).toMatchObject({ job_id: id, epoch: 2, attempt: 1 });
    expect(failure(core.complete({ job_id: id, epoch: 1 }, { status: "succeeded", outputs: [] }, clock.now)).code).toBe(
      "conflict",
    );
  });

  it("releaseLeases gives back the named leases without spending attempts; stale refs are ignored", () => {
    const { core, clock, submit } = harness({ max_attempts: 1 });
    const a = submit("acc_1", "api");
    const b = submit("acc_1", "api");
    const [la, lb] = core.lease(AGENT_A, 2, clock.now) as [Lease, Lease];
    const n = core.releaseLeases(
      AGENT_A.id,
      [
        { job_id: la.job_id, epoch: la.epoch },
        { job_id: lb.job_id, epoch: lb.epoch + 1 },
      ],
      "drained",
      clock.now,
    );
    expect(n).toBe(1);
    expect(core.store.job(la.job_id)).toMatchObject({ status: "queued", spent: 0 });
    expect(core.store.job(lb.job_id)).toMatchObject({ status: "running", agent_id: AGENT_A.id });
    expect(core.releaseLeases(AGENT_B.id, [{ job_id: lb.job_id, epoch: lb.epoch }], "preempted", clock.now)).toBe(0);
    expect(new Set([a, b])).toEqual(new Set([la.job_id, lb.job_id]));
  });
});

describe("SchedulerCore: enqueue and admission", () => {
  it("enqueue is idempotent by job id", () => {
    const { core, clock, submit } = harness();
    const id = submit("acc_1", "api");
    const commits = core.counters.commits;
    clock.advance(5_000);
    const item = { id, account_id: "acc_1", tier: "free", body: { model: "demo", input: { prompt: "other" } } };
    expect(core.enqueue([item, item], clock.now)).toEqual([
      { ok: true, id, status: "queued", tier: "api", created_at: T0, existed: true },
      { ok: true, id, status: "queued", tier: "api", created_at: T0, existed: true },
    ]);
    expect(core.counters.commits).toBe(commits);
    expect(depthOf(core, "api", clock.now).depth).toBe(1);
    expect(depthOf(core, "free", clock.now).depth).toBe(0);
    only(core.lease(AGENT_A, 1, clock.now));
    expect(core.enqueue([item], clock.now)[0]).toMatchObject({ ok: true, status: "running", existed: true });
    expect(core.view(id, "acc_1", clock.now)).toMatchObject({ ok: true, job: { status: "running" } });
  });

  it("one enqueue call is one commit however many jobs it carries; an unknown tier is a bad_request", () => {
    const { core, clock } = harness();
    const items = ["api", "nope", "free"].map((tier) => ({
      id: newJobId({ modelNumber: 0, shard: 0 }, clock.now),
      account_id: "acc_1",
      tier,
      body: { model: "demo", input: {} },
    }));
    const out = core.enqueue(items, clock.now);
    expect(out.map((o) => o.ok)).toEqual([true, false, true]);
    expect(failure(out[1]!).code).toBe("bad_request");
    expect(core.counters.commits).toBe(1);
    expect(core.store.job(items[1]!.id)).toBeUndefined();
  });

  it("admission refuses a tier whose projected wait passes k × SLO, with retry_after_s", () => {
    // free: SLO 1800 s, k 0.5, so a limit of 900 s. No agent drains it: the projected wait is
    // how long its oldest job has waited.
    const { core, clock, submit } = harness();
    submit("acc_1", "free");
    clock.advance(900_000);
    expect(core.admission("free", "acc_2", clock.now)).toEqual({
      waitS: 900,
      refused: false,
      retryAfterS: 0,
      backlogged: false,
    });
    submit("acc_2", "free");
    clock.advance(1);
    const id = newJobId({ modelNumber: 0, shard: 0 }, clock.now);
    const [refused] = core.enqueue(
      [{ id, account_id: "acc_3", tier: "free", body: { model: "demo", input: {} } }],
      clock.now,
    );
    expect(failure(refused!)).toMatchObject({ code: "overloaded", retry_after_s: 1 });
    expect(core.store.job(id)).toBeUndefined();
    expect(depthOf(core, "free", clock.now).depth).toBe(2);
    // Other tiers still take work, and admit = false (an internal requeue) bypasses the check.
    submit("acc_2", "api");
    expect(
      core.enqueue(
        [{ id, account_id: "acc_3", tier: "free", body: { model: "demo", input: {} } }],
        clock.now,
        false,
      )[0],
    ).toMatchObject({ ok: true, existed: false });

    // api: SLO 120 s, k 8 (960 s). 100 queued and one grant gives a drain of 1/60 jobs/s, floored
    // at one job per cost (10 s): 99 × 10 s = 990 s projected. acc_1 holds that backlog, so it is
    // refused from half the limit on (480 s); retry after at most one SLO.
    const h = harness();
    const items = Array.from({ length: 100 }, () => ({
      id: newJobId({ modelNumber: 0, shard: 0 }, h.clock.now),
      account_id: "acc_1",
      tier: "api",
      body: { model: "demo", input: {} },
    }));
    expect(h.core.enqueue(items, h.clock.now).every((o) => o.ok)).toBe(true);
    only(h.core.lease(AGENT_A, 1, h.clock.now));
    const verdict = h.core.admission("api", "acc_1", h.clock.now);
    expect(verdict.waitS).toBeCloseTo(990, 6);
    expect(verdict).toMatchObject({ refused: true, retryAfterS: 120, backlogged: true });
    const [out] = h.core.enqueue(
      [
        {
          id: newJobId({ modelNumber: 0, shard: 0 }, h.clock.now),
          account_id: "acc_1",
          tier: "api",
          body: { model: "demo", input: {} },
        },
      ],
      h.clock.now,
    );
    expect(failure(out!)).toMatchObject({ code: "overloaded", retry_after_s: 120 });
    expect(failure(out!).message).toContain(`${BACKLOG_SHED} × 8 × its 120 s SLO`);
    // Past the whole limit the tier is closed to an account with nothing queued too.
    expect(h.core.admission("api", "acc_2", h.clock.now)).toMatchObject({ refused: true, backlogged: false });
  });

  it("a flooding account is shed from its tier while another account of the tier is still admitted", () => {
    // api: limit 960 s at 10 s a job; a trickle of grants. acc_1 sends three batches of 50.
    const h = harness();
    const item = (account: string) => ({
      id: newJobId({ modelNumber: 0, shard: 0 }, h.clock.now),
      account_id: account,
      tier: "api",
      body: { model: "demo", input: {} },
    });
    const batches = [1, 2, 3].map(() => {
      const out = h.core.enqueue(
        Array.from({ length: 50 }, () => item("acc_1")),
        h.clock.now,
      );
      if (h.core.stats(h.clock.now).find((t) => t.tier === "api")?.running === 0) h.core.lease(AGENT_A, 1, h.clock.now);
      h.clock.advance(1_000);
      return out.map((o) => (o.ok ? "ok" : o.code));
    });
    expect(batches.map((b) => new Set(b))).toEqual([new Set(["ok"]), new Set(["overloaded"]), new Set(["overloaded"])]);
    // The flood holds about 490 s of the tier's 960: another api account is admitted.
    const other = h.core.admission("api", "acc_2", h.clock.now);
    expect(other).toMatchObject({ refused: false, backlogged: false });
    const [ok] = h.core.enqueue([item("acc_2")], h.clock.now);
    expect(ok).toMatchObject({ ok: true, status: "queued" });
  });

  it("a quiet tier is not refused on a drain rate that decayed while nothing was queued", () => {
    // api drained ten jobs long ago; its decayed grant rate is now near 0. A few queued jobs
    // project a few costs, not hours.
    const { core, clock, submit } = harness({ expected_runtime_s: 10 });
    for (let i = 0; i < 10; i++) submit("acc_1", "api");
    for (const l of core.lease(AGENT_A, 10, clock.now)) {
      core.complete({ job_id: l.job_id, epoch: l.epoch }, { status: "succeeded", outputs: [] }, clock.now + 10_000);
    }
    clock.advance(3_600_000);
    for (let i = 0; i < 5; i++) submit("acc_1", "api");
    const verdict = core.admission("api", "acc_1", clock.now);
    expect(verdict.refused).toBe(false);
    expect(verdict.waitS).toBeLessThanOrEqual(5 * 10);
  });
});

describe("SchedulerCore: cancel, expiry, retention, removal", () => {
  it("cancel of a queued job ends it at once; cancel of a running job bumps the epoch so the agent's result is stale; cancel is idempotent", () => {
    const { core, clock, submit } = harness();
    const running = submit("acc_1", "api");
    const queued = submit("acc_1", "free");
    clock.advance(1_000);
    const l = only(core.lease(AGENT_A, 1, clock.now));
    expect(l.job_id).toBe(running);
    expect(core.store.job(queued)?.status).toBe("queued");

    const c1 = core.cancel(queued, "acc_1", clock.now);
    expect(c1).toMatchObject({
      ok: true,
      job: { status: "cancelled", error_code: "cancelled", finished_at: clock.now },
    });
    expect(core.takeRevocations().size).toBe(0);
    expect(depthOf(core, "free", clock.now)).toEqual({ depth: 0, running: 0 });

    const c2 = core.cancel(running, "acc_1", clock.now);
    // The running agent is told, naming the lease it held.
    expect(c2).toMatchObject({ ok: true, job: { status: "cancelled", epoch: l.epoch + 1, agent_id: null } });
    expect(core.takeRevocations()).toEqual(
      new Map([[AGENT_A.id, [{ job_id: running, epoch: l.epoch, why: "cancelled" }]]]),
    );
    expect(depthOf(core, "api", clock.now)).toEqual({ depth: 0, running: 0 });
    expect(
      failure(core.complete({ job_id: running, epoch: l.epoch }, { status: "succeeded", outputs: [] }, clock.now)).code,
    ).toBe("conflict");
    expect(core.renew(AGENT_A.id, [{ job_id: running, epoch: l.epoch }], clock.now).stale).toHaveLength(1);
    const view = core.view(running, "acc_1", clock.now);
    expect(view.ok && view.job.attempts.at(-1)).toMatchObject({ outcome: "cancelled" });
    // The cancelled lease no longer uses one of the agent's credits.
    expect(core.leasesHeld(AGENT_A.id)).toBe(0);

    const commits = core.counters.commits;
    clock.advance(1_000);
    const again = core.cancel(running, "acc_1", clock.now);
    expect(again).toMatchObject({
      ok: true,
      job: { status: "cancelled", epoch: l.epoch + 1, finished_at: clock.now - 1_000 },
    });
    expect(core.counters.commits).toBe(commits);
    // A finished job cannot be cancelled into something else.
    const done = submit("acc_1", "api");
    const dl = only(core.lease(AGENT_A, 1, clock.now));
    core.complete({ job_id: done, epoch: dl.epoch }, { status: "succeeded", outputs: [] }, clock.now);
    expect(core.cancel(done, "acc_1", clock.now)).toMatchObject({ ok: true, job: { status: "succeeded" } });
  });

  it("queued jobs past the model's queue TTL expire", () => {
    const { core, clock, submit } = harness({ queue_ttl_s: 60 });
    const old = submit("acc_1", "plus");
    const runningId = submit("acc_1", "api");
    only(core.lease(AGENT_A, 1, clock.now));
    clock.advance(30_000);
    const young = submit("acc_1", "plus");
    core.renew(AGENT_A.id, [{ job_id: runningId, epoch: 1 }], clock.now);
    clock.advance(29_999);
    expect(core.sweep(clock.now).expired).toBe(0);
    clock.advance(1);
    core.renew(AGENT_A.id, [{ job_id: runningId, epoch: 1 }], clock.now);
    expect(core.sweep(clock.now)).toEqual({ requeued: 0, expired: 1, deleted: 0 });
    expect(core.store.job(old)).toMatchObject({ status: "expired", error_code: "queue_ttl", finished_at: clock.now });
    expect(core.store.job(young)?.status).toBe("queued");
    // A running job is not subject to the queue TTL.
    expect(core.store.job(runningId)?.status).toBe("running");
    expect(depthOf(core, "plus", clock.now)).toEqual({ depth: 1, running: 0 });
    clock.advance(30_000);
    core.renew(AGENT_A.id, [{ job_id: runningId, epoch: 1 }], clock.now);
    expect(core.sweep(clock.now).expired).toBe(1);
    expect(core.store.job(young)?.status).toBe("expired");
  });

  it("queued jobs past the model's queue TTL expire even in a tier dropped from the configuration", () => {
    // Tiers are configuration; an operator who removes or renames one must not strand its queue.
    const { core, clock, submit } = harness({ queue_ttl_s: 60 });
    const id = submit("acc_1", "free");
    const held = core.configured!;
    core.configure({ model: held.model, tiers: held.tiers.filter((t) => t.name !== "free") });
    expect(core.nextDeadline()).toBe(T0 + 60_000);
    clock.advance(60_000);
    expect(core.sweep(clock.now).expired).toBe(1);
    expect(core.store.job(id)?.status).toBe("expired");
  });

  it("finished jobs past retention are deleted by sweep", () => {
    const { core, clock, submit } = harness({ retention_s: 3600 });
    const done = submit("acc_1", "api");
    const queued = submit("acc_1", "free");
    const l = only(core.lease(AGENT_A, 1, clock.now));
    clock.advance(5_000);
    core.complete({ job_id: done, epoch: l.epoch }, { status: "succeeded", outputs: [] }, clock.now);
    const finishedAt = clock.now;
    clock.advance(3_600_000 - 1);
    expect(core.sweep(clock.now).deleted).toBe(0);
    clock.advance(1);
    expect(core.sweep(clock.now).deleted).toBe(1);
    expect(core.store.job(done)).toBeUndefined();
    expect(failure(core.view(done, "acc_1", clock.now)).code).toBe("job_not_found");
    expect(core.store.job(queued)?.status).toBe("queued");
    expect(clock.now - finishedAt).toBe(3_600_000);
  });

  it("an enqueue that repeats a deleted job's id never hands out an epoch the job had before", () => {
    // The edge re-sends a claimed idempotent submit with the job id of the first one; by then the
    // job may have been removed by its owner (or swept after retention).
    const { core, clock, submit } = harness();
    const id = submit("acc_1", "api");
    const first = only(core.lease(AGENT_A, 1, clock.now));
    core.complete({ job_id: id, epoch: first.epoch }, { status: "succeeded", outputs: [] }, clock.now);
    expect(core.remove(id, "acc_1", clock.now)).toEqual({ ok: true });
    core.enqueue([{ id, account_id: "acc_1", tier: "api", body: { model: "demo", input: {} } }], clock.now);
    // Whether the id is refused or runs again, no lease may repeat an epoch of the first one.
    const epochs = core.lease(AGENT_B, 1, clock.now).map((l) => l.epoch);
    expect(epochs.filter((e) => e <= first.epoch)).toEqual([]);
  });

  it("a deleted job's id enqueued again is refused as idempotency_conflict, and the job stays deleted", () => {
    const { core, clock, submit } = harness({ retention_s: 60 });
    const removed = submit("acc_1", "api");
    const retained = submit("acc_1", "api");
    core.cancel(removed, "acc_1", clock.now);
    core.cancel(retained, "acc_1", clock.now);
    expect(core.remove(removed, "acc_1", clock.now)).toEqual({ ok: true });
    clock.advance(60_000);
    expect(core.sweep(clock.now).deleted).toBe(1);
    for (const id of [removed, retained]) {
      const [out] = core.enqueue(
        [{ id, account_id: "acc_1", tier: "api", body: { model: "demo", input: {} } }],
        clock.now,
      );
      expect(failure(out!).code).toBe("idempotency_conflict");
      expect(core.store.job(id)).toBeUndefined();
    }
  });

  it("every ended attempt that started an upload is handed over for its files, kept only when it succeeded", () => {
    const { core, clock, submit } = harness({ max_attempts: 5 });
    const ok = submit("acc_1", "api");
    const retried = submit("acc_1", "api");
    const cancelled = submit("acc_1", "api");
    const quiet = submit("acc_1", "api");
    const [a, b, c, d] = core.lease(AGENT_A, 4, clock.now) as [Lease, Lease, Lease, Lease];
    for (const l of [a, b, c]) expect(core.uploadStarting(l, AGENT_A.id)).toBe(true);
    // Only the holder starts uploads.
    expect(core.uploadStarting(d, AGENT_B.id)).toBe(false);
    core.complete({ job_id: ok, epoch: a.epoch }, { status: "succeeded", outputs: [] }, clock.now);
    core.complete(
      { job_id: retried, epoch: b.epoch },
      { status: "failed", code: "invalid_output", message: "x" },
      clock.now,
    );
    core.cancel(cancelled, "acc_1", clock.now);
    // An attempt that never started an upload costs no file work when it ends.
    core.complete({ job_id: quiet, epoch: d.epoch }, { status: "succeeded", outputs: [] }, clock.now);
    expect(core.takeAttemptsEnded()).toEqual([
      { job_id: ok, epoch: a.epoch, kept: true },
      { job_id: retried, epoch: b.epoch, kept: false },
      { job_id: cancelled, epoch: c.epoch, kept: false },
    ]);
    expect(core.takeAttemptsEnded()).toEqual([]);
    // A lease whose agent is lost ends its attempt too.
    const again = only(core.lease(AGENT_B, 1, clock.now));
    core.uploadStarting(again, AGENT_B.id);
    expect(core.release(AGENT_B.id, "worker_lost", clock.now)).toBe(1);
    expect(core.takeAttemptsEnded()).toEqual([{ job_id: retried, epoch: again.epoch, kept: false }]);
  });

  it("a deleted job is handed over for its files whether or not it recorded outputs, by remove or by retention", () => {
    const { core, clock, submit } = harness({ retention_s: 60 });
    const noOutputs = submit("acc_1", "api");
    const retained = submit("acc_1", "api");
    core.cancel(noOutputs, "acc_1", clock.now);
    core.cancel(retained, "acc_1", clock.now);
    core.remove(noOutputs, "acc_1", clock.now);
    expect(core.takeJobsGone()).toEqual([noOutputs]);
    clock.advance(60_000);
    core.sweep(clock.now);
    expect(core.takeJobsGone()).toEqual([retained]);
  });

  it("remove refuses unfinished jobs", () => {
    const { core, clock, submit } = harness();
    const a = submit("acc_1", "api");
    const b = submit("acc_1", "api");
    const l = only(core.lease(AGENT_A, 1, clock.now));
    expect(l.job_id).toBe(a);
    expect(failure(core.remove(a, "acc_1", clock.now)).code).toBe("job_not_finished");
    expect(failure(core.remove(b, "acc_1", clock.now)).code).toBe("job_not_finished");
    core.complete({ job_id: a, epoch: l.epoch }, { status: "succeeded", outputs: [] }, clock.now);
    core.cancel(b, "acc_1", clock.now);
    expect(core.remove(a, "acc_1", clock.now)).toEqual({ ok: true });
    expect(core.remove(b, "acc_1", clock.now)).toEqual({ ok: true });
    expect(core.store.job(a)).toBeUndefined();
    expect(failure(core.remove(a, "acc_1", clock.now)).code).toBe("job_not_found");
  });

  it("another account's job is not found", () => {
    const { core, clock, submit } = harness();
    const id = submit("acc_1", "api");
    expect(failure(core.view(id, "acc_2", clock.now)).code).toBe("job_not_found");
    expect(failure(core.cancel(id, "acc_2", clock.now)).code).toBe("job_not_found");
    expect(failure(core.remove(id, "acc_2", clock.now)).code).toBe("job_not_found");
    expect(core.list("acc_2", undefined, 10, undefined, clock.now)).toEqual([]);
    expect(core.store.job(id)?.status).toBe("queued");
    expect(core.list("acc_1", undefined, 10, undefined, clock.now).map((j) => j.id)).toEqual([id]);
  });
});

describe("SchedulerCore: snapshot, deadlines and restart", () => {
  it("queue position counts the jobs ahead by tag", () => {
    const { core, clock, submit } = harness();
    // Cost 10 s: acc_1's tags are T0+10, +20, +30; acc_2 arrives 5 s later with T0+15.
    const a1 = submit("acc_1", "plus");
    const a2 = submit("acc_1", "plus");
    const a3 = submit("acc_1", "plus");
    clock.advance(5_000);
    const b1 = submit("acc_2", "plus");
    const other = submit("acc_3", "api");
    const position = (id: string, account: string): number | undefined => {
      const v = core.view(id, account, clock.now);
      return v.ok ? v.job.queue?.position : undefined;
    };
    expect([a1, b1, a2, a3].map((id) => position(id, id === b1 ? "acc_2" : "acc_1"))).toEqual([0, 1, 2, 3]);
    expect(position(other, "acc_3")).toBe(0);
    // 10 s on, api has waited 10/120 of its SLO and plus 15/300: api first, then plus's head.
    clock.advance(10_000);
    const l = core.lease(AGENT_A, 2, clock.now).map((x) => x.job_id);
    expect(l).toEqual([other, a1]);
    expect(position(b1, "acc_2")).toBe(0);
    expect(position(a3, "acc_1")).toBe(2);
    const running = core.view(a1, "acc_1", clock.now);
    expect(running.ok && running.job.queue).toBeNull();
  });

  it("nextDeadline is the earliest of lease deadline, queue TTL and retention", () => {
    const { core, clock, submit } = harness({ queue_ttl_s: 600, retention_s: 120 });
    expect(core.nextDeadline()).toBeUndefined();
    const leased = submit("acc_1", "api");
    only(core.lease(AGENT_A, 1, clock.now));
    clock.advance(1_000);
    const queued = submit("acc_1", "api");
    // lease T0+30 s, queue TTL T0+601 s.
    expect(core.nextDeadline()).toBe(T0 + DEFAULT_LEASE_TTL_MS);
    clock.advance(9_000);
    core.complete({ job_id: leased, epoch: 1 }, { status: "succeeded", outputs: [] }, clock.now);
    // retention T0+10 s+120 s, queue TTL T0+601 s.
    expect(core.nextDeadline()).toBe(T0 + 130_000);
    clock.advance(120_000 - 1);
    expect(core.sweep(clock.now).deleted).toBe(0);
    clock.advance(1);
    expect(core.sweep(clock.now).deleted).toBe(1);
    expect(core.nextDeadline()).toBe(T0 + 601_000);
    clock.now = T0 + 601_000 - 1;
    expect(core.sweep(clock.now).expired).toBe(0);
    clock.now = T0 + 601_000;
    expect(core.sweep(clock.now).expired).toBe(1);
    // The expired job is now kept for retention.
    expect(core.nextDeadline()).toBe(T0 + 721_000);
    // A renewed lease moves its deadline.
    const again = submit("acc_1", "api");
    only(core.lease(AGENT_A, 1, clock.now));
    expect(core.nextDeadline()).toBe(clock.now + DEFAULT_LEASE_TTL_MS);
    clock.advance(20_000);
    core.renew(AGENT_A.id, [{ job_id: again, epoch: 1 }], clock.now);
    expect(core.nextDeadline()).toBe(T0 + 651_000);
    // Once that job is done, retention of the expired one is next again.
    core.complete({ job_id: again, epoch: 1 }, { status: "succeeded", outputs: [] }, clock.now);
    expect(core.nextDeadline()).toBe(T0 + 721_000);
    expect(core.store.job(queued)?.status).toBe("expired");
  });

  it("a core rebuilt on the same database (actor restart) keeps queues, depth counters and leases", () => {
    const { sql, core, clock, submit } = harness();
    const ids = ["api", "free", "plus", "api", "free", "light"].map((tier, i) => submit(`acc_${i % 2}`, tier));
    clock.advance(2_000);
    const leases = core.lease(AGENT_A, 2, clock.now);
    expect(leases).toHaveLength(2);
    const statsBefore = core.stats(clock.now);
    const deadlineBefore = core.nextDeadline();

    const rebuilt = new SchedulerCore(sql, clock.now);
    expect(rebuilt.configured).toEqual(core.configured);
    expect(rebuilt.stats(clock.now).map((s) => [s.tier, s.depth, s.running])).toEqual(
      statsBefore.map((s) => [s.tier, s.depth, s.running]),
    );
    expect(rebuilt.nextDeadline()).toBe(deadlineBefore);
    // Leases survive: the agent renews and completes at the epochs it holds; its credits are still used.
    const refs = leases.map((l) => ({ job_id: l.job_id, epoch: l.epoch }));
    expect(rebuilt.renew(AGENT_A.id, refs, clock.now).renewed).toEqual(refs);
    expect(rebuilt.lease(AGENT_A, 2, clock.now)).toEqual([]);
    expect(rebuilt.complete(refs[0]!, { status: "succeeded", outputs: [] }, clock.now)).toEqual({
      ok: true,
      status: "succeeded",
    });
    // The queues go on in pick order. All were enqueued at T0 with a first tag each; the two api
    // jobs went first (ties by id); at T0+2 s plus (2/300) beats light (2/600) beats free (2/1800).
    expect(new Set(leases.map((l) => l.job_id))).toEqual(new Set([ids[0], ids[3]]));
    const freeIds = [ids[1]!, ids[4]!].sort();
    expect(rebuilt.lease(AGENT_B, 10, clock.now).map((l) => l.job_id)).toEqual([ids[2], ids[5], ...freeIds]);
    const third = new SchedulerCore(sql, clock.now);
    expect(third.stats(clock.now).map((s) => [s.tier, s.depth, s.running])).toEqual(
      rebuilt.stats(clock.now).map((s) => [s.tier, s.depth, s.running]),
    );
    expect(third.stats(clock.now).reduce((n, s) => n + s.running, 0)).toBe(5);
  });

  it("configure keeps the newer model config and says whether anything changed", () => {
    const { core } = harness();
    const held = core.configured!;
    expect(core.configure(structuredClone(held))).toBe(false);
    const older = {
      model: modelConfig({ updated_at: "2025-01-01T00:00:00.000Z", max_attempts: 9 }),
      tiers: held.tiers,
    };
    core.configure(older);
    expect(core.configured?.model.max_attempts).toBe(3);
    const newer = {
      model: modelConfig({ updated_at: "2026-06-01T00:00:00.000Z", max_attempts: 5 }),
      tiers: held.tiers,
    };
    expect(core.configure(newer)).toBe(true);
    expect(core.configured?.model.max_attempts).toBe(5);
    expect(new SchedulerCore(core.store.sql).configured?.model.max_attempts).toBe(5);
  });
});

/** Enqueues a job pinned to `version` now and returns its id. */
function pinned(h: Harness, account: string, version: string): string {
  const id = newJobId({ modelNumber: 0, shard: 0 }, h.clock.now);
  const [out] = h.core.enqueue(
    [{ id, account_id: account, tier: "plus", body: { model: "demo", input: {}, version } }],
    h.clock.now,
  );
  expect(out).toMatchObject({ ok: true, id });
  return id;
}

describe("pinned versions", () => {
  const V1: AgentRef = { id: "agent_v1", pool: "p", versions: ["v1"] };
  const V2: AgentRef = { id: "agent_v2", pool: "p", versions: ["v2"] };
  const NONE: AgentRef = { id: "agent_none", pool: "p", versions: [] };

  it("a job pinned to a version is leased only to an agent serving that version, and names it", () => {
    const h = harness();
    const a = pinned(h, "acc_1", "v2");
    const b = h.submit("acc_1", "plus");
    // The older pinned job is not the v1 agent's: it gets the unpinned one.
    expect(h.core.lease(V1, 4, h.clock.now).map((l) => l.job_id)).toEqual([b]);
    expect(h.core.lease(NONE, 4, h.clock.now)).toEqual([]);
    const lease = only(h.core.lease(V2, 4, h.clock.now));
    expect(lease).toMatchObject({ job_id: a, version: "v2" });
  });

  it("a parked agent is pushed only jobs pinned to its versions; a requeued pinned job waits for its version", () => {
    const h = harness();
    expect(h.core.lease(V1, 2, h.clock.now, 2)).toEqual([]);
    expect(h.core.lease(V2, 2, h.clock.now, 2)).toEqual([]);
    const a = pinned(h, "acc_1", "v2");
    const pushed = h.core.takeDeliveries();
    expect([...pushed.keys()]).toEqual([V2.id]);
    const lease = only(pushed.get(V2.id) ?? []);
    expect(lease.job_id).toBe(a);
    // Its agent gives it back: the v1 agent, still parked, must not get it.
    h.core.lease(V1, 2, h.clock.now, 2);
    expect(h.core.releaseLeases(V2.id, [{ job_id: a, epoch: lease.epoch }], "drained", h.clock.now)).toBe(1);
    // Nor the v2 agent that gave it back (it is going away): the job waits for its version.
    const again = h.core.takeDeliveries();
    expect(again.size).toBe(0);
    expect(h.core.store.job(a)?.status).toBe("queued");
    // The v1 agent stayed parked through jobs it could not take: the next unpinned one is its.
    const b = h.submit("acc_1", "plus");
    expect(only(h.core.takeDeliveries().get(V1.id) ?? []).job_id).toBe(b);
  });

  it("queue positions and stats count pinned and unpinned jobs of a tier together", () => {
    const h = harness();
    // One account: its jobs' fair tags grow in submit order, whatever their lanes.
    pinned(h, "acc_1", "v2");
    h.submit("acc_1", "plus");
    pinned(h, "acc_1", "v9");
    expect(depthOf(h.core, "plus", h.clock.now)).toEqual({ depth: 3, running: 0 });
    const last = pinned(h, "acc_1", "v2");
    const view = h.core.view(last, "acc_1", h.clock.now);
    expect(view.ok && view.job.queue?.position).toBe(3);
  });
});

/** Puts a rollout on the harness's shard: stable v1, and a canary v2 at `percent` unless 0. */
function rollout(h: Harness, revision: number, percent: number): void {
  const held = h.core.configured!;
  const canary = percent > 0 ? { canary: { version: "v2", percent } } : {};
  h.core.configure({ ...held, desired: { stable: "v1", ...canary, revision } }, h.clock.now);
}

function rowOf(h: Harness, id: string) {
  return h.sql.all<{ version: string | null; routed: number; tag: number; enqueued_at: number }>(
    "SELECT version, routed, tag, enqueued_at FROM jobs WHERE id = ?",
    id,
  )[0]!;
}

describe("canaries: routed jobs, the pick and re-laning", () => {
  const STABLE: AgentRef = { id: "agent_stable", pool: "p", versions: ["v1"] };
  const CANARY: AgentRef = { id: "agent_canary", pool: "p", versions: ["v2"] };
  const BOTH: AgentRef = { id: "agent_both", pool: "p", versions: ["v2", "v1"] };

  it("unpinned jobs go to the canary's lane by their ids; the stable agent takes the rest, the canary agent only those", () => {
    const h = harness();
    rollout(h, 1, 50);
    const ids = Array.from({ length: 40 }, () => h.submit("acc_1", "plus"));
    const routed = ids.filter((id) => idFraction(id) < 0.5);
    expect(routed.length).toBeGreaterThan(0);
    expect(routed.length).toBeLessThan(40);
    for (const id of ids) expect(rowOf(h, id)).toMatchObject({ version: routed.includes(id) ? "v2" : null });
    const stable = h.core.lease(STABLE, 100, h.clock.now);
    expect(stable.map((l) => l.job_id).sort()).toEqual(ids.filter((id) => !routed.includes(id)).sort());
    expect(new Set(stable.map((l) => l.version))).toEqual(new Set(["v1"]));
    const canary = h.core.lease(CANARY, 100, h.clock.now);
    expect(canary.map((l) => l.job_id).sort()).toEqual([...routed].sort());
    expect(new Set(canary.map((l) => l.version))).toEqual(new Set(["v2"]));
  });

  it("an agent serving both versions runs unpinned jobs on the stable one and routed ones on the canary", () => {
    const h = harness();
    rollout(h, 1, 50);
    const ids = Array.from({ length: 20 }, () => h.submit("acc_1", "plus"));
    const leases = h.core.lease(BOTH, 100, h.clock.now);
    expect(leases).toHaveLength(20);
    for (const l of leases) expect(l.version).toBe(idFraction(l.job_id) < 0.5 ? "v2" : "v1");
    expect(leases.map((l) => l.job_id).sort()).toEqual([...ids].sort());
  });

  it("a revert sends the canary's queued routed jobs back to the unpinned lane with their tags, and pushes them to a parked stable agent; pinned jobs stay", () => {
    const h = harness();
    rollout(h, 1, 100);
    const routed = Array.from({ length: 5 }, () => h.submit("acc_1", "plus"));
    const mine = pinned(h, "acc_2", "v2");
    const before = new Map([...routed, mine].map((id) => [id, rowOf(h, id)]));
    expect(h.core.lease(STABLE, 10, h.clock.now, 10)).toEqual([]);
    h.clock.advance(1000);
    rollout(h, 2, 0);
    const pushed = h.core.takeDeliveries().get(STABLE.id) ?? [];
    expect(pushed.map((l) => l.job_id).sort()).toEqual([...routed].sort());
    expect(new Set(pushed.map((l) => l.version))).toEqual(new Set(["v1"]));
    for (const id of routed) {
      const row = rowOf(h, id);
      expect(row).toMatchObject({ version: null, routed: 0 });
      expect([row.tag, row.enqueued_at]).toEqual([before.get(id)!.tag, before.get(id)!.enqueued_at]);
    }
    expect(rowOf(h, mine)).toMatchObject({ version: "v2", routed: 0 });
    expect(depthOf(h.core, "plus", h.clock.now)).toEqual({ depth: 1, running: 5 });
    expect(only(h.core.lease(CANARY, 10, h.clock.now)).job_id).toBe(mine);
  });

  it("a routed job running on the canary when it is reverted returns to the unpinned lane if its attempt fails", () => {
    const h = harness();
    rollout(h, 1, 100);
    const id = h.submit("acc_1", "plus");
    const lease = only(h.core.lease(CANARY, 1, h.clock.now));
    rollout(h, 2, 0);
    expect(h.core.lease(STABLE, 1, h.clock.now)).toEqual([]);
    h.core.complete(lease, { status: "failed", code: "oom", message: "out of memory" }, h.clock.now);
    expect(rowOf(h, id)).toMatchObject({ version: null, routed: 0 });
    expect(only(h.core.lease(STABLE, 1, h.clock.now))).toMatchObject({ job_id: id, version: "v1" });
    // The in-memory lane counts followed: nothing is left for anyone.
    expect(h.core.lease(CANARY, 5, h.clock.now)).toEqual([]);
    expect(depthOf(h.core, "plus", h.clock.now)).toEqual({ depth: 0, running: 1 });
  });

  it("a new canary does not take the old canary's routed jobs: they go back to the unpinned lane", () => {
    const h = harness();
    rollout(h, 1, 100);
    const id = h.submit("acc_1", "plus");
    const held = h.core.configured!;
    h.core.configure({ ...held, desired: { stable: "v1", canary: { version: "v3", percent: 100 }, revision: 2 } });
    expect(rowOf(h, id)).toMatchObject({ version: null, routed: 0 });
  });

  it("an older rollout (a Worker's stale snapshot) never replaces a newer one", () => {
    const h = harness();
    rollout(h, 3, 0);
    const id = h.submit("acc_1", "plus");
    rollout(h, 2, 100);
    expect(h.core.configured?.desired).toEqual({ stable: "v1", revision: 3 });
    expect(rowOf(h, id).version).toBeNull();
    expect(h.core.configure({ ...h.core.configured!, desired: { stable: "v1", revision: 2 } })).toBe(false);
    expect(new SchedulerCore(h.sql).configured?.desired?.revision).toBe(3);
  });

  it("each desired version's attempts that ran to a result are counted, and taken for a report at most every 2 s", () => {
    const h = harness();
    h.core.configure({
      ...h.core.configured!,
      desired: { stable: "v1", canary: { version: "v2", percent: 0 }, revision: 1 },
    });
    for (let i = 0; i < 4; i++) h.submit("acc_1", "plus");
    pinned(h, "acc_1", "v2");
    pinned(h, "acc_1", "v3");
    const [a, b, c, d] = h.core.lease(STABLE, 4, h.clock.now) as [Lease, Lease, Lease, Lease];
    const e = only(h.core.lease(CANARY, 1, h.clock.now));
    const other = only(h.core.lease({ id: "agent_v3", pool: "p", versions: ["v3"] }, 1, h.clock.now));
    h.core.complete(a, { status: "succeeded", outputs: [] }, h.clock.now);
    h.core.complete(b, { status: "failed", code: "model_error", message: "x" }, h.clock.now);
    h.core.complete(e, { status: "failed", code: "oom", message: "x" }, h.clock.now);
    // A version that is not desired has no window to count in.
    h.core.complete(other, { status: "failed", code: "oom", message: "x" }, h.clock.now);
    // A cancel and a give-back say nothing of the version.
    h.core.cancel(c.job_id, "acc_1", h.clock.now);
    h.core.releaseLeases(STABLE.id, [d], "drained", h.clock.now);
    expect(h.core.takeFigures(h.clock.now)?.sort((x, y) => x.version.localeCompare(y.version))).toEqual([
      { version: "v1", jobs: 2, failed: 1 },
      { version: "v2", jobs: 1, failed: 1 },
    ]);
    const again = only(h.core.lease(STABLE, 1, h.clock.now));
    h.core.complete(again, { status: "succeeded", outputs: [] }, h.clock.now);
    expect(h.core.takeFigures(h.clock.now + 1000)).toBeUndefined();
    expect(h.core.figuresDue()).toBe(h.clock.now + FIGURES_MS);
    expect(h.core.takeFigures(h.clock.now + FIGURES_MS)).toEqual([{ version: "v1", jobs: 1, failed: 0 }]);
    expect(h.core.figuresDue()).toBeUndefined();
  });

  it("a lost agent's lapsed lease says nothing of its version; a run past run_timeout_s counts as a failure", () => {
    const h = harness({ run_timeout_s: 60 });
    rollout(h, 1, 0);
    h.submit("acc_1", "plus");
    h.submit("acc_1", "plus");
    const [a, b] = h.core.lease(STABLE, 2, h.clock.now) as [Lease, Lease];
    h.core.release(STABLE.id, "worker_lost", h.clock.now);
    expect(h.core.takeFigures(h.clock.now)).toBeUndefined();
    const [c] = h.core.lease(STABLE, 2, h.clock.now) as [Lease];
    h.clock.advance(61_000);
    h.core.renew(STABLE.id, [c], h.clock.now);
    expect(h.core.takeFigures(h.clock.now)).toEqual([{ version: "v1", jobs: 1, failed: 1 }]);
    expect([a.job_id, b.job_id]).toContain(c.job_id);
  });
});

describe("SchedulerCore: results with the next request for work", () => {
  it("settle ends the results and grants the next leases in one commit", () => {
    const h = harness();
    const ids = Array.from({ length: 4 }, () => h.submit("acc_1", "plus"));
    const first = h.core.lease(AGENT_A, 2, h.clock.now);
    expect(first).toHaveLength(2);
    const commits = h.core.counters.commits;
    const out = h.core.settle(
      AGENT_A,
      first.map((l) => ({ job_id: l.job_id, epoch: l.epoch, result: { status: "succeeded", outputs: [] } })),
      2,
      2,
      h.clock.now,
    );
    expect(out.outcomes).toEqual([
      { ok: true, status: "succeeded" },
      { ok: true, status: "succeeded" },
    ]);
    expect(out.leases.map((l) => l.job_id).sort()).toEqual(
      ids.filter((id) => !first.some((l) => l.job_id === id)).sort(),
    );
    expect(h.core.counters.commits).toBe(commits + 1);
  });

  it("a stale result in a settle is refused alone; the rest of the frame counts", () => {
    const h = harness();
    const a = h.submit("acc_1", "plus");
    const b = h.submit("acc_1", "plus");
    const [la, lb] = h.core.lease(AGENT_A, 2, h.clock.now) as [Lease, Lease];
    const ok: Completion = { status: "succeeded", outputs: [] };
    const out = h.core.settle(
      AGENT_A,
      [
        { job_id: la.job_id, epoch: la.epoch + 1, result: ok },
        { job_id: lb.job_id, epoch: lb.epoch, result: ok },
      ],
      2,
      0,
      h.clock.now,
    );
    expect(out.outcomes.map((o) => o.ok)).toEqual([false, true]);
    expect(out.leases).toEqual([]);
    expect([a, b].sort()).toEqual([la.job_id, lb.job_id].sort());
  });
});

describe("SchedulerCore: watched jobs", () => {
  it("a watched job's every status change is noted until it ends; an unwatched one costs nothing", () => {
    const h = harness();
    const watched = h.submit("acc_1", "plus");
    const other = h.submit("acc_1", "plus");
    expect(h.core.watch(watched, "acc_1", h.clock.now)).toMatchObject({ ok: true, job: { status: "queued" } });
    expect(failure(h.core.watch(watched, "acc_2", h.clock.now)).code).toBe("job_not_found");
    const leases = h.core.lease(AGENT_A, 2, h.clock.now);
    expect(h.core.takeChanged()).toEqual([watched]);
    const mine = leases.find((l) => l.job_id === watched)!;
    h.core.complete(
      { job_id: mine.job_id, epoch: mine.epoch },
      { status: "failed", code: "oom", message: "x" },
      h.clock.now,
    );
    expect(h.core.takeChanged()).toEqual([watched]);
    const again = only(h.core.lease(AGENT_B, 1, h.clock.now));
    h.core.complete({ job_id: again.job_id, epoch: again.epoch }, { status: "succeeded", outputs: [] }, h.clock.now);
    // Running, then succeeded: noted, and the watch ends with the job.
    expect(h.core.takeChanged()).toEqual([watched]);
    const last = leases.find((l) => l.job_id === other)!;
    h.core.complete({ job_id: last.job_id, epoch: last.epoch }, { status: "succeeded", outputs: [] }, h.clock.now);
    expect(h.core.takeChanged()).toEqual([]);
  });
});
