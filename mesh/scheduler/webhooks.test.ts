import { describe, expect, it } from "vitest";
import type { ModelConfig } from "../../shared/api.ts";
import { newJobId } from "../../shared/ids.ts";
import { DEFAULT_TIERS } from "../../shared/slo.ts";
import type { WebhookPayload } from "../../shared/webhooks.ts";
import { nodeSql } from "../sql/node.ts";
import type { JobHook } from "../webhooks/logic.ts";
import { SchedulerCore, type AgentRef } from "./core.ts";

const T0 = Date.UTC(2026, 0, 1);
const AGENT: AgentRef = { id: "agent_a", pool: "pool-1", versions: ["v1"] };
const MODEL: ModelConfig = {
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

function setup() {
  const sql = nodeSql();
  const core = new SchedulerCore(sql, T0);
  core.configure({ model: MODEL, tiers: [...DEFAULT_TIERS] }, T0);
  const submit = (hooks?: JobHook[]): string => {
    const id = newJobId({ modelNumber: 0, shard: 0 }, T0);
    core.enqueue([{ id, account_id: "acc_1", tier: "api", body: { model: "demo", input: {} }, hooks }], T0);
    return id;
  };
  return { sql, core, submit };
}

describe("webhook messages in the scheduler", () => {
  it("a job without webhooks writes no outbox row through its whole life", () => {
    const { sql, core, submit } = setup();
    const id = submit();
    const [lease] = core.lease(AGENT, 1, T0 + 1);
    expect(core.takeWebhookMessages(T0 + 1)).toEqual([]);
    core.complete({ job_id: id, epoch: lease!.epoch }, { status: "succeeded", outputs: [] }, T0 + 2, AGENT.id);
    expect(core.takeWebhookMessages(T0 + 2)).toEqual([]);
    expect(sql.all("SELECT * FROM webhook_outbox")).toEqual([]);
    expect(sql.all("SELECT hooks FROM jobs")).toEqual([{ hooks: null }]);
  });

  it("each status change of a job with webhooks writes one message per endpoint that wants it, with the job as its owner reads it", () => {
    const { sql, core, submit } = setup();
    const id = submit([
      { endpoint: "wh_a", events: ["job.running", "job.succeeded"] },
      { endpoint: "job", url: "https://hooks.example.com/x", events: ["job.succeeded"] },
    ]);
    const [lease] = core.lease(AGENT, 1, T0 + 1);
    const running = core.takeWebhookMessages(T0 + 1);
    expect(running.map((m) => [m.endpoint, m.type])).toEqual([["wh_a", "job.running"]]);
    core.complete({ job_id: id, epoch: lease!.epoch }, { status: "succeeded", outputs: [] }, T0 + 2, AGENT.id);
    const done = core.takeWebhookMessages(T0 + 2);
    expect(done.map((m) => [m.endpoint, m.type, m.url])).toEqual([
      ["wh_a", "job.succeeded", null],
      ["job", "job.succeeded", "https://hooks.example.com/x"],
    ]);
    const payload = JSON.parse(done[0]!.payload) as WebhookPayload;
    expect(payload).toMatchObject({ type: "job.succeeded", data: { id, status: "succeeded" } });
    expect(JSON.stringify(payload.data)).not.toContain("agent_a");
    expect(JSON.stringify(payload.data)).not.toContain("pool-1");
    expect(done[0]!.seq).toBeGreaterThan(running[0]!.seq);
    // Kept in the outbox until the WebhookActor took them.
    expect(core.outboxMessages(10)).toHaveLength(3);
    sql.run("DELETE FROM webhook_outbox");
    expect(core.outboxMessages(10)).toEqual([]);
  });

  it("a job cancelled in its queue tells its endpoints job.cancelled", () => {
    const { core, submit } = setup();
    const id = submit([{ endpoint: "wh_a", events: ["job.cancelled"] }]);
    core.cancel(id, "acc_1", T0 + 5);
    expect(core.takeWebhookMessages(T0 + 5).map((m) => m.type)).toEqual(["job.cancelled"]);
  });
});
