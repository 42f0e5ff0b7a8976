import { describe, expect, it } from "vitest";
import type { ModelConfig } from "../../shared/api.ts";
import { newJobId } from "../../shared/ids.ts";
import { DEFAULT_TIERS } from "../../shared/slo.ts";
import { nodeSql } from "../sql/node.ts";
import { SchedulerCore, type AgentRef, type Completion } from "./core.ts";
import { SchedulerStore, USAGE_HOUR_MS, MIGRATIONS } from "./store.ts";
import { migrate } from "../sql/sql.ts";

const T0 = Date.UTC(2026, 0, 1, 10);
const AGENT: AgentRef = { id: "agent_a", pool: "pool-1", versions: ["v1"] };
const TIER = DEFAULT_TIERS[0]!.name;

function modelConfig(): ModelConfig {
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
  };
}

function setup() {
  const core = new SchedulerCore(nodeSql(), T0);
  core.configure({ model: modelConfig(), tiers: [...DEFAULT_TIERS] });
  const submit = (account: string, now: number): string => {
    const id = newJobId({ modelNumber: 0, shard: 0 }, now);
    core.enqueue([{ id, account_id: account, tier: TIER, body: { model: "demo", input: {} } }], now);
    return id;
  };
  const lease = (now: number) => {
    const [l] = core.lease(AGENT, 1, now);
    if (!l) throw new Error("no lease");
    return l;
  };
  return { core, submit, lease };
}

const ok = (run: Omit<Completion, "status" | "outputs"> = {}): Completion => ({
  status: "succeeded",
  outputs: [{ name: "a.png", size: 1_000 }],
  ...run,
});

describe("usage: the store", () => {
  it("the UPSERT adds each delta to its hour's bucket and reads back the hours asked for", () => {
    const sql = nodeSql();
    migrate(sql, MIGRATIONS);
    const store = new SchedulerStore(sql);
    store.addUsage({ account_id: "acc", version: "v1", at: T0 + 5, gpu_ms: 1_500, executing_ms: 1_500, attempts: 1 });
    store.addUsage({ account_id: "acc", version: "v1", at: T0 + 59 * 60_000, gpu_ms: 250, succeeded: 1 });
    store.addUsage({ account_id: "acc", version: "v1", at: T0 + USAGE_HOUR_MS, gpu_ms: 7 });
    store.addUsage({ account_id: "other", version: "v1", at: T0, gpu_ms: 9 });
    expect(store.usageFor("acc", T0, T0 + USAGE_HOUR_MS)).toEqual([
      expect.objectContaining({
        hour: T0,
        version: "v1",
        gpu_ms: 1_750,
        executing_ms: 1_500,
        attempts: 1,
        succeeded: 1,
      }),
    ]);
    expect(store.usageFor("acc", T0, T0 + 2 * USAGE_HOUR_MS).map((r) => r.gpu_ms)).toEqual([1_750, 7]);
  });
});

describe("usage: written by the scheduler as attempts end", () => {
  it("a success bills the runner's executing time times the replica's GPUs, with its outcome and output bytes", () => {
    const { core, submit, lease } = setup();
    submit("acc", T0);
    const l = lease(T0);
    core.complete(l, ok({ executing_ms: 2_000, gpus: 2 }), T0 + 3_000, AGENT.id);
    expect(core.usageFor("acc", T0, T0 + USAGE_HOUR_MS)).toEqual([
      expect.objectContaining({ version: "v1", gpu_ms: 4_000, executing_ms: 2_000, succeeded: 1, output_bytes: 1_000 }),
    ]);
    expect(core.adminView(l.job_id, T0 + 3_000)).toMatchObject({ job: { attempts: [{ executing_s: 2 }] } });
  });

  it("an executing time the agent reports past what the edge saw from grant to result is capped at that span, and a CPU runner counts as one slot", () => {
    const { core, submit, lease } = setup();
    submit("acc", T0);
    const l = lease(T0);
    core.complete(l, ok({ executing_ms: 60_000, gpus: 0 }), T0 + 1_234, AGENT.id);
    expect(core.usageFor("acc", T0, T0 + USAGE_HOUR_MS)).toEqual([
      expect.objectContaining({ gpu_ms: 1_234, executing_ms: 1_234 }),
    ]);
  });

  it("a result repeated for the same lease counts once: the fenced lease ends its attempt once", () => {
    const { core, submit, lease } = setup();
    submit("acc", T0);
    const l = lease(T0);
    expect(core.complete(l, ok({ executing_ms: 500 }), T0 + 600, AGENT.id)).toMatchObject({ ok: true });
    expect(core.complete(l, ok({ executing_ms: 500 }), T0 + 700, AGENT.id)).toMatchObject({ ok: false });
    core.settle(AGENT, [{ ...l, result: ok({ executing_ms: 500 }) }], 1, 0, T0 + 800);
    expect(core.usageFor("acc", T0, T0 + USAGE_HOUR_MS)).toEqual([
      expect.objectContaining({ gpu_ms: 500, attempts: 1, succeeded: 1 }),
    ]);
  });

  it("a retry counts each of its attempts once; an attempt lost with its agent is kept apart as lost, not billed", () => {
    const { core, submit, lease } = setup();
    submit("acc", T0);
    const first = lease(T0);
    core.complete(
      first,
      { status: "failed", code: "runner_crashed", message: "x", executing_ms: 300, gpus: 1 },
      T0 + 400,
      AGENT.id,
    );
    const second = lease(T0 + 1_000);
    expect(second.epoch).toBe(first.epoch + 1);
    // Its result from the first epoch again, late: stale, counts nothing.
    core.complete(first, ok({ executing_ms: 300 }), T0 + 1_100, AGENT.id);
    core.release(AGENT.id, "worker_lost", T0 + 3_000);
    const third = lease(T0 + 4_000);
    core.complete(third, ok({ executing_ms: 700, gpus: 1 }), T0 + 5_000, AGENT.id);
    const [row] = core.usageFor("acc", T0, T0 + USAGE_HOUR_MS);
    expect(row).toMatchObject({ gpu_ms: 1_000, executing_ms: 1_000, lost_gpu_ms: 2_000, attempts: 3, succeeded: 1 });
    const view = core.adminView(third.job_id, T0 + 5_000);
    if (!view.ok) throw new Error("no job");
    const billed = view.job.attempts
      .filter((a) => a.reason !== "worker_lost")
      .reduce((n, a) => n + (a.executing_s ?? 0), 0);
    expect(billed * 1000).toBe(row!.executing_ms);
  });

  it("a cancelled running job bills its time until the cancel, and a job that expires queued counts as expired", () => {
    const { core, submit, lease } = setup();
    const running = submit("acc", T0);
    lease(T0);
    core.cancel(running, "acc", T0 + 2_500);
    submit("acc", T0 + 1);
    core.sweep(T0 + 86_400_000 + 2);
    const rows = core.usageFor("acc", T0, T0 + 48 * USAGE_HOUR_MS);
    expect(rows).toEqual([
      expect.objectContaining({ version: "v1", gpu_ms: 2_500, cancelled: 1 }),
      expect.objectContaining({ version: "", expired: 1, gpu_ms: 0 }),
    ]);
  });
});
