import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ModelConfig } from "../../shared/api.ts";
import { newJobId, schedulerName } from "../../shared/ids.ts";
import { DEFAULT_TIERS } from "../../shared/slo.ts";
import { HEAD_QUERY } from "../../mesh/scheduler/store.ts";
import type { Remote, SchedulerActor } from "../../mesh/index.ts";
import { DEFAULT_LEASE_TTL_MS, type SchedulerCore } from "../../mesh/scheduler/core.ts";

let n = 1000;
function setup(overrides: Partial<ModelConfig> = {}) {
  n += 1;
  const model: ModelConfig = {
    name: `actor-${n}`,
    number: n,
    updated_at: new Date().toISOString(),
    input_schema: { type: "object" },
    max_attempts: 2,
    run_timeout_s: 60,
    queue_ttl_s: 3600,
    retention_s: 86400,
    expected_runtime_s: 5,
    shards: 1,
    ...overrides,
  };
  const route = { modelNumber: n, shard: 0 };
  const raw = env.SCHEDULER.get(env.SCHEDULER.idFromName(schedulerName(route)));
  const stub = raw as unknown as Remote<SchedulerActor>;
  const config = { model, tiers: [...DEFAULT_TIERS] };
  const item = (account = "acc_a", tier = "plus") => ({
    id: newJobId(route),
    account_id: account,
    tier,
    body: { model: model.name, input: { prompt: "x" } },
  });
  return { raw, stub, config, item };
}

describe("the scheduler actor", () => {
  it("jobs, leases and epochs survive an actor restart", async () => {
    const { raw, stub, config, item } = setup();
    const job = item();
    await stub.enqueue(config, [job]);
    const agent = { id: "agent-1", pool: "p" };
    const [lease] = await stub.lease(agent, 1);
    expect(lease).toMatchObject({ job_id: job.id, epoch: 1 });
    await evictDurableObject(raw);
    const view = await stub.view(job.id, "acc_a");
    expect(view).toMatchObject({ ok: true, job: { status: "running", phase: "assigned" } });
    const ok = { status: "succeeded" as const, outputs: [] };
    const stale = await stub.settle(agent, [{ job_id: job.id, epoch: 0, result: ok }], 1, 0);
    expect(stale.outcomes).toMatchObject([{ ok: false, code: "conflict" }]);
    const done = await stub.settle(
      agent,
      [{ job_id: job.id, epoch: 1, result: { status: "succeeded", outputs: [{ url: "r2://x" }] } }],
      1,
      0,
    );
    expect(done.outcomes).toEqual([{ ok: true, status: "succeeded" }]);
  });

  it("after a restart a running lease has a fresh lease time and the alarm is armed; a lease that runs out is requeued by the alarm", async () => {
    const { raw, stub, config, item } = setup();
    const job = item();
    await stub.enqueue(config, [job]);
    await stub.lease({ id: "agent-1", pool: "p" }, 1);
    const woke = Date.now();
    await evictDurableObject(raw);
    await stub.stats();
    const alarm = await runInDurableObject<SchedulerActor, number | null>(raw, (_i, state) => state.storage.getAlarm());
    // (workerd's clock moves between events only, so allow it the odd millisecond)
    expect(alarm).toBeGreaterThanOrEqual(woke + DEFAULT_LEASE_TTL_MS - 50);
    // 31 s without a heartbeat: the sweep the alarm runs finds the lease run out.
    await runInDurableObject<SchedulerActor, unknown>(raw, (instance) =>
      (instance as unknown as { core: SchedulerCore }).core.sweep(Date.now() + DEFAULT_LEASE_TTL_MS + 1_000),
    );
    const view = await stub.view(job.id, "acc_a");
    expect(view).toMatchObject({ ok: true, job: { status: "queued", phase: "waiting" } });
    if (!view.ok) throw new Error("unreachable");
    expect(view.job.attempts).toHaveLength(1);
    expect(view.job.attempts[0]).toMatchObject({ outcome: "lease_expired", reason: "worker_lost", epoch: 1 });
    const [again] = await stub.lease({ id: "agent-2", pool: "p" }, 1);
    expect(again).toMatchObject({ job_id: job.id, epoch: 2, attempt: 2 });
    expect(await runDurableObjectAlarm(raw)).toBe(true);
  });

  it("a job past max_attempts fails with the reason", async () => {
    const { stub, config, item } = setup({ max_attempts: 1 });
    const job = item();
    await stub.enqueue(config, [job]);
    await stub.lease({ id: "agent-1", pool: "p" }, 1);
    expect(await stub.release("agent-1", "worker_lost")).toBe(1);
    const view = await stub.view(job.id, "acc_a");
    expect(view).toMatchObject({ ok: true, job: { status: "failed", error: { code: "worker_lost" } } });
  });

  it("renewing all of an agent's leases is one call that writes nothing; stale ones come back as stale", async () => {
    const { stub, config, item } = setup();
    const jobs = [item(), item(), item()];
    await stub.enqueue(config, jobs);
    const leases = await stub.lease({ id: "agent-1", pool: "p" }, 3);
    expect(leases).toHaveLength(3);
    const out = await stub.heartbeat(
      { id: "agent-1", pool: "p" },
      [...leases.map((l) => ({ job_id: l.job_id, epoch: l.epoch })), { job_id: "job_gone", epoch: 9 }],
      3,
      0,
    );
    expect(out.renewed).toHaveLength(3);
    expect(out.stale).toEqual([{ job_id: "job_gone", epoch: 9 }]);
    const commits = (await stub.stats()).counters.commits;
    await stub.heartbeat(
      { id: "agent-1", pool: "p" },
      leases.map((l) => ({ job_id: l.job_id, epoch: l.epoch })),
      3,
      0,
    );
    expect((await stub.stats()).counters.commits).toBe(commits);
  });

  it("an agent never holds more leases than its credits", async () => {
    const { stub, config, item } = setup();
    await stub.enqueue(
      config,
      Array.from({ length: 10 }, () => item()),
    );
    expect(await stub.lease({ id: "a", pool: "p" }, 2)).toHaveLength(2);
    expect(await stub.lease({ id: "a", pool: "p" }, 2)).toHaveLength(0);
    expect(await stub.lease({ id: "a", pool: "p" }, 3)).toHaveLength(1);
  });

  it("the pick runs on the jobs_pick index in the actor's own SQLite", async () => {
    const { raw, stub, config, item } = setup();
    await stub.enqueue(
      config,
      Array.from({ length: 50 }, (_, i) => item(`acc_${i % 5}`, DEFAULT_TIERS[i % 5]?.name)),
    );
    const plan = await runInDurableObject<SchedulerActor, string>(raw, (_i, state) =>
      state.storage.sql
        .exec(`EXPLAIN QUERY PLAN ${HEAD_QUERY}`, "plus", null)
        .toArray()
        .map((r) => String(r.detail))
        .join("\n"),
    );
    expect(plan).toMatch(/USING (COVERING )?INDEX jobs_pick/);
    expect(plan).not.toMatch(/TEMP B-TREE|SCAN jobs\b(?! USING)/);
  });

  it("a batch enqueue is one durable commit", async () => {
    const { stub, config, item } = setup();
    const before = (await stub.stats()).counters.commits;
    await stub.enqueue(
      config,
      Array.from({ length: 100 }, () => item()),
    );
    const after = await stub.stats();
    expect(after.counters.commits - before).toBe(1);
    expect(after.counters.enqueued).toBe(100);
  });
});
