import { describe, expect, it } from "vitest";
import { CLOSE } from "../../shared/wire.ts";
import { connect, hello, leaseOne, succeeded, token, welcomed, within } from "./agent-helpers.ts";
import { ADMIN, call, makeAccount, makeModel, submit } from "./helpers.ts";

interface Capacity {
  models: Record<
    string,
    {
      agents_connected: number;
      agents_needed: number;
      slots_busy: number;
      slots_total: number;
      queued: number;
      first_breach_s: number | null;
    }
  >;
}

async function capacityOf(model: string) {
  const r = await call<Capacity>("GET", "/v1/admin/capacity", { key: ADMIN });
  expect(r.status).toBe(200);
  return r.body.models[model];
}

describe("capacity", () => {
  it("a model with no jobs and no agents needs none", async () => {
    const model = await makeModel();
    expect(await capacityOf(model)).toEqual({
      agents_connected: 0,
      agents_needed: 0,
      slots_busy: 0,
      slots_total: 0,
      queued: 0,
      first_breach_s: null,
    });
  });

  it("queued jobs with no agent need agents, and breach their SLO when their headroom runs out", async () => {
    const model = await makeModel();
    const acct = await makeAccount("api");
    for (let i = 0; i < 3; i++) expect((await submit(model, acct.key)).status).toBe(202);
    const cap = await capacityOf(model);
    expect(cap).toMatchObject({ agents_connected: 0, queued: 3, slots_busy: 0 });
    expect(cap?.agents_needed).toBeGreaterThanOrEqual(1);
    // The api tier's SLO is 120 s; the jobs were just submitted.
    expect(cap?.first_breach_s).toBeGreaterThan(100);
    expect(cap?.first_breach_s).toBeLessThanOrEqual(120);
  });

  it("connected agents and their busy slots are counted, and the model's need follows the work", async () => {
    const model = await makeModel();
    const acct = await makeAccount("api");
    expect((await submit(model, acct.key)).status).toBe(202);
    const { conn } = await welcomed(model);
    try {
      await leaseOne(conn);
      const cap = await capacityOf(model);
      expect(cap).toMatchObject({
        agents_connected: 1,
        slots_total: 2,
        slots_busy: 1,
        queued: 0,
        first_breach_s: null,
      });
      expect(cap?.agents_needed).toBe(1);
    } finally {
      conn.ws.close(1000, "done");
    }
  });

  it("the capacity route is for admins only", async () => {
    const acct = await makeAccount();
    expect((await call("GET", "/v1/admin/capacity", { key: acct.key })).status).toBe(403);
  });
});

describe("preemptible agents", () => {
  it("a reclaimed preemptible agent is closed with 4411 and its job goes back with no attempt spent, to finish elsewhere", async () => {
    const model = await makeModel();
    const acct = await makeAccount("api");
    const sub = await submit(model, acct.key);
    const t = await token([model]);
    const lent = await connect(t.token);
    if (!lent.conn) throw new Error("no connection");
    lent.conn.send({ ...hello(lent.id), preemptible: true });
    await lent.conn.next("agent.welcome");
    const listed = await call<{ agents: { agent_id: string; preemptible?: boolean }[] }>("GET", "/v1/admin/agents", {
      key: ADMIN,
    });
    expect(listed.body.agents.find((a) => a.agent_id === lent.id)?.preemptible).toBe(true);
    const lease = await leaseOne(lent.conn);
    expect(lease).toMatchObject({ job_id: sub.body.id, attempt: 1 });

    const r = await call<{ agent_id: string; released: number }>("POST", `/v1/admin/agents/${lent.id}/reclaim`, {
      key: ADMIN,
    });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ agent_id: lent.id, released: 1 });
    expect((await within(lent.conn.closed, 5000, "the reclaimed agent's close")).code).toBe(CLOSE.reclaimed);

    const steady = await welcomed(model);
    try {
      const again = await leaseOne(steady.conn);
      expect(again).toMatchObject({ job_id: sub.body.id, attempt: 1, epoch: lease.epoch + 1 });
      steady.conn.send(succeeded({ job_id: again.job_id, epoch: again.epoch }));
      const job = await call<{ status: string; attempts: { outcome: string; reason: string | null }[] }>(
        "GET",
        `/v1/admin/jobs/${sub.body.id}`,
        { key: ADMIN },
      );
      await expect
        .poll(
          async () =>
            (await call<{ status: string }>("GET", `/v1/admin/jobs/${sub.body.id}`, { key: ADMIN })).body.status,
          {
            timeout: 5000,
          },
        )
        .toBe("succeeded");
      expect(job.body.attempts[0]).toMatchObject({ outcome: "requeued", reason: "preempted" });
    } finally {
      steady.conn.ws.close(1000, "done");
    }
  });

  it("reclaiming an agent that is not connected answers agent_not_found, and a malformed id names nothing", async () => {
    const r = await call("POST", `/v1/admin/agents/agt_0000000000000000/reclaim`, { key: ADMIN });
    expect(r.status).toBe(404);
    expect(r.body).toMatchObject({ error: { code: "agent_not_found" } });
    expect((await call("POST", `/v1/admin/agents/nope/reclaim`, { key: ADMIN })).status).toBe(404);
  });
});
