/**
 * Usage in workerd: attempts ended through a real agent connection add up in their shard, and
 * `GET /v1/usage` (own account) and `GET /v1/admin/usage` (any account) sum them across shards.
 */
import { describe, expect, it } from "vitest";
import type { AdminJobView } from "../../shared/api.ts";
import type { UsageAnswer } from "../../shared/usage.ts";
import { AGENT_PROTOCOL_VERSION, type FromAgent, type LeaseRef } from "../../shared/wire.ts";
import { leaseOne, welcomed } from "./agent-helpers.ts";
import { ADMIN, call, makeAccount, makeModel, submit } from "./helpers.ts";

function results(ref: LeaseRef, result: Record<string, unknown>): FromAgent {
  return {
    v: AGENT_PROTOCOL_VERSION,
    type: "job.results",
    trace: "t",
    results: [{ job_id: ref.job_id, epoch: ref.epoch, ...result } as never],
    credits: 0,
  };
}

async function settled(id: string, status: string): Promise<AdminJobView> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await call<AdminJobView>("GET", `/v1/admin/jobs/${id}`, { key: ADMIN });
    if (r.body.status === status) return r.body;
    if (Date.now() > deadline) throw new Error(`job ${id} is ${r.body.status}, not ${status}`);
    await new Promise((ok) => setTimeout(ok, 20));
  }
}

/** The span of a job's first attempt as the edge saw it, from grant to end (s). */
function span(j: AdminJobView): number {
  return (Date.parse(j.attempts[0]!.ended_at!) - Date.parse(j.attempts[0]!.started_at)) / 1000;
}

describe("usage routes", () => {
  it("an account reads the GPU-seconds its attempts executed, its jobs by outcome, per model and version; another account reads none of it, admins read it by account", async () => {
    const model = await makeModel();
    const [a, b] = [await makeAccount(), await makeAccount()];
    const { conn } = await welcomed(model);
    const first = (await submit(model, a.key)).body.id;
    const l1 = await leaseOne(conn);
    expect(l1.job_id).toBe(first);
    // Reported longer than the edge saw: capped at the edge's span from grant to result.
    conn.send(results(l1, { status: "succeeded", executing_ms: 3_600_000, gpus: 2, outputs: [] }));
    const second = (await submit(model, a.key)).body.id;
    const j1 = await settled(first, "succeeded");
    const l2 = await leaseOne(conn);
    expect(l2.job_id).toBe(second);
    conn.send(results(l2, { status: "failed", executing_ms: 0, gpus: 2, code: "model_error", message: "bad" }));
    const j2 = await settled(second, "failed");
    conn.ws.close();

    expect(j1.attempts[0]!.executing_s).toBe(span(j1));
    expect(j2.attempts[0]!.executing_s).toBe(0);

    const own = await call<UsageAnswer>("GET", "/v1/usage?group_by=version", { key: a.key });
    expect(own.status).toBe(200);
    const mine = own.body.usage.filter((r) => r.model === model);
    expect(mine).toEqual([
      expect.objectContaining({
        model,
        version: null,
        attempts: 2,
        jobs: { succeeded: 1, failed: 1, cancelled: 0, expired: 0 },
      }),
    ]);
    expect(mine[0]!.executing_s).toBeCloseTo(j1.attempts[0]!.executing_s! + j2.attempts[0]!.executing_s!, 6);
    expect(mine[0]!.gpu_s).toBeCloseTo(2 * mine[0]!.executing_s, 6);
    expect(mine[0]!.lost_gpu_s).toBe(0);

    const other = await call<UsageAnswer>("GET", "/v1/usage", { key: b.key });
    expect(other.body.usage.filter((r) => r.model === model)).toEqual([]);

    const admin = await call<UsageAnswer>("GET", `/v1/admin/usage?account=${a.id}&group_by=day`, { key: ADMIN });
    expect(admin.status).toBe(200);
    const day = new Date(j1.attempts[0]!.ended_at!).toISOString().slice(0, 10);
    expect(admin.body.usage.filter((r) => r.model === model)).toEqual([
      expect.objectContaining({ model, day, attempts: 2, gpu_s: mine[0]!.gpu_s }),
    ]);
    expect((await call("GET", `/v1/admin/usage?account=${a.id}`, { key: a.key })).status).toBe(403);
  });

  it("a span that ends before it starts, or covers more than the longest allowed, is refused with bad_request", async () => {
    const a = await makeAccount();
    const backwards = await call<{ error: { code: string } }>(
      "GET",
      "/v1/usage?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
      { key: a.key },
    );
    expect(backwards.status).toBe(400);
    expect(backwards.body.error.code).toBe("bad_request");
    const long = await call<{ error: { code: string } }>(
      "GET",
      "/v1/usage?from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
      {
        key: a.key,
      },
    );
    expect(long.status).toBe(400);
    expect((await call("GET", "/v1/usage?group_by=week", { key: a.key })).status).toBe(400);
  });
});
