/**
 * Lease delivery: however large the jobs' inputs, one agent's frame never carries more than its
 * cap, and a job that cannot be delivered fails on its own, not blamed on the agent.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { actor, type SchedulerActor } from "../../mesh/index.ts";
import type { ModelConfig } from "../../shared/api.ts";
import { MAX_INPUT_BYTES } from "../../shared/api.ts";
import { newJobId, parseJobId, schedulerName } from "../../shared/ids.ts";
import { REFERENCE_MODEL_CONFIG } from "../../shared/models.ts";
import { DEFAULT_TIERS } from "../../shared/slo.ts";
import type { LeaseGrant } from "../../shared/wire.ts";
import { connect, hello, token } from "./agent-helpers.ts";
import { ADMIN, call, makeAccount, makeModel } from "./helpers.ts";

async function leasesFor(
  model: string,
  credits: number,
  want: number,
): Promise<{ leases: LeaseGrant[]; frames: number }> {
  const t = await token([model]);
  const c = await connect(t.token);
  if (!c.conn) throw new Error("no connection");
  c.conn.send({ ...hello(c.id), slots: 8, prefetch: 1 });
  await c.conn.next("agent.welcome");
  c.conn.send({ v: 2, type: "work.request", trace: "t", credits });
  const leases: LeaseGrant[] = [];
  let frames = 0;
  while (leases.length < want) {
    leases.push(...((await c.conn.next("job.leases")) as { leases: LeaseGrant[] }).leases);
    frames++;
  }
  c.conn.ws.close(1000, "done");
  return { leases, frames };
}

describe("lease delivery", () => {
  it("a job input over the bound is refused at submit with 413 naming the limit", async () => {
    const model = await makeModel({ input_schema: { type: "object" } });
    const acct = await makeAccount();
    const r = await call<{ error: { code: string; message: string } }>("POST", `/v1/models/${model}/jobs`, {
      key: acct.key,
      body: { input: { pad: "x".repeat(200_000) } },
    });
    expect(r.status).toBe(413);
    expect(r.body.error.code).toBe("payload_too_large");
    expect(r.body.error.message).toContain(String(MAX_INPUT_BYTES));
    const b = await call<{ jobs: { ok: boolean; error?: { code: string } }[] }>(
      "POST",
      `/v1/models/${model}/jobs/batch`,
      { key: acct.key, body: { jobs: [{ input: { pad: "x".repeat(40_000) } }, { input: { pad: "x" } }] } },
    );
    expect(b.body.jobs.map((j) => j.ok)).toEqual([false, true]);
    expect(b.body.jobs[0]?.error?.code).toBe("payload_too_large");
  });

  it("nine leases with 2,000-emoji prompts reach an agent with nine credits, split over frames under the cap", async () => {
    const model = await makeModel(REFERENCE_MODEL_CONFIG);
    const acct = await makeAccount();
    const ids: string[] = [];
    for (let i = 0; i < 9; i++) {
      const r = await call<{ id: string }>("POST", `/v1/models/${model}/jobs`, {
        key: acct.key,
        body: { input: { prompt: "🦊".repeat(2000), seed: i } },
      });
      expect(r.status).toBe(202);
      ids.push(r.body.id);
    }
    const { leases, frames } = await leasesFor(model, 9, 9);
    expect(frames).toBeGreaterThan(1);
    expect(leases.map((l) => l.job_id).sort()).toEqual([...ids].sort());
  });

  it("a lease too large for any frame fails its own job with invalid_input; the agent gets the rest and is not blamed", async () => {
    const model = await makeModel({ input_schema: { type: "object" } });
    const acct = await makeAccount();
    // A job accepted before inputs were bounded: enqueued on its shard directly.
    const config = (await call<{ models: ModelConfig[] }>("GET", "/v1/admin/models", { key: ADMIN })).body.models.find(
      (m) => m.name === model,
    )!;
    const big = newJobId({ modelNumber: config.number, shard: 0 });
    const shard = actor<SchedulerActor>(env.SCHEDULER, schedulerName(parseJobId(big)!));
    await shard.enqueue({ model: config, tiers: [...DEFAULT_TIERS] }, [
      { id: big, account_id: acct.id, tier: "plus", body: { model, input: { pad: "x".repeat(200_000) } } },
    ]);
    // Another account's four small jobs, as in the probe.
    const other = await makeAccount();
    const small: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await call<{ id: string }>("POST", `/v1/models/${model}/jobs`, {
        key: other.key,
        body: { input: { n: i } },
      });
      small.push(r.body.id);
    }
    const { leases } = await leasesFor(model, 5, 4);
    expect(leases.map((l) => l.job_id).sort()).toEqual([...small].sort());
    let view = await call<{ status: string; error: { code: string; message: string } | null; attempts: unknown[] }>(
      "GET",
      `/v1/jobs/${big}`,
      { key: acct.key },
    );
    for (let i = 0; i < 100 && view.body.status !== "failed"; i++) {
      await new Promise((r) => setTimeout(r, 20));
      view = await call("GET", `/v1/jobs/${big}`, { key: acct.key });
    }
    expect(view.body).toMatchObject({ status: "failed", error: { code: "invalid_input" } });
    // The edge's decision, said as such: not worker_lost, not retried on another agent.
    expect(view.body.error?.message).toContain("larger than an agent frame");
    expect(view.body.attempts).toHaveLength(1);
  });
});
