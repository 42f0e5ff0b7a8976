import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { token } from "./agent-helpers.ts";
import { ADMIN, call, makeAccount, makeModel, submit, unique } from "./helpers.ts";

interface Status {
  pools: {
    name: string;
    desired: number;
    connected: number;
    calls: {
      id: number;
      desired: number;
      remove: string[];
      sent_at: string | null;
      ok: boolean | null;
      answer: string | null;
    }[];
  }[];
}

function poolsStub() {
  return env.POOLS.get(env.POOLS.idFromName("global"));
}

async function provisionerToken(pools: string[]): Promise<string> {
  const r = await call<{ token: string }>("POST", "/v1/admin/provisioner-tokens", { key: ADMIN, body: { pools } });
  expect(r.status).toBe(201);
  return r.body.token;
}

describe("pools", () => {
  it("a pool naming an unknown model, or with both a command and a webhook, is refused naming the field", async () => {
    const bad = await call("PUT", "/v1/admin/pools", {
      key: ADMIN,
      body: { file: { pools: { cloud: { models: ["nope-model"], max: 2, command: "./x.sh" } } } },
    });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain("nope-model");
    const both = await call("PUT", "/v1/admin/pools", {
      key: ADMIN,
      body: { file: { pools: { cloud: { models: ["x"], max: 2, command: "./x.sh", webhook: "https://h.test/" } } } },
    });
    expect(both.status).toBe(400);
    expect(JSON.stringify(both.body)).toContain("either a command or a webhook");
  });

  it("queued work for a model at zero grows its pool, the provisioner takes and answers the call, and the job says scaling_up", async () => {
    const model = await makeModel();
    const pool = unique("cloud").toLowerCase();
    const applied = await call<{ pools: string[] }>("PUT", "/v1/admin/pools", {
      key: ADMIN,
      body: {
        file: { pools: { [pool]: { models: [model], min: 0, max: 4, command: "./scale.sh", burst_window_s: 1 } } },
        source: "pools:\n",
      },
    });
    expect(applied.status).toBe(200);
    expect(applied.body.pools).toEqual([pool]);
    const acct = await makeAccount("api");
    const job = await submit(model, acct.key);
    expect(job.status).toBe(202);
    expect(await runDurableObjectAlarm(poolsStub())).toBe(true);

    const status = await call<Status>("GET", "/v1/admin/pools", { key: ADMIN });
    const mine = status.body.pools.find((p) => p.name === pool);
    expect(mine).toMatchObject({ desired: 1, connected: 0 });
    expect(mine?.calls[0]).toMatchObject({ desired: 1, remove: [], sent_at: null, ok: null });

    const view = await call<{ queue: { reason: string } }>("GET", `/v1/jobs/${job.body.id}`, { key: acct.key });
    expect(view.body.queue.reason).toBe("scaling_up");

    const prov = await provisionerToken([pool]);
    const taken = await call<{ calls: { id: number; pool: string; command: string; desired: number }[] }>(
      "GET",
      "/v1/provisioner/calls?wait_s=0",
      { key: prov },
    );
    expect(taken.status).toBe(200);
    expect(taken.body.calls).toEqual([{ id: mine?.calls[0]?.id, pool, command: "./scale.sh", desired: 1, remove: [] }]);
    // Taken once: a second poll finds nothing.
    expect(
      (await call<{ calls: unknown[] }>("GET", "/v1/provisioner/calls?wait_s=0", { key: prov })).body.calls,
    ).toEqual([]);
    const id = taken.body.calls[0]?.id ?? 0;
    const answered = await call("POST", `/v1/provisioner/calls/${id}`, {
      key: prov,
      body: { ok: true, exit_code: 0, output: "started 1 VM" },
    });
    expect(answered.status).toBe(204);
    const after = await call<Status>("GET", "/v1/admin/pools", { key: ADMIN });
    expect(after.body.pools.find((p) => p.name === pool)?.calls[0]).toMatchObject({
      ok: true,
      answer: "exit 0\nstarted 1 VM",
    });
  });

  it("a provisioner token acts only for its pools, and an agent token is not a provisioner token", async () => {
    const model = await makeModel();
    const prov = await provisionerToken(["elsewhere"]);
    expect(
      (await call("POST", "/v1/provisioner/calls/1", { key: prov, body: { ok: true, exit_code: 0, output: "" } }))
        .status,
    ).toBe(404);
    const agentTok = await token([model]);
    expect((await call("GET", "/v1/provisioner/calls?wait_s=0", { key: agentTok.token })).status).toBe(401);
  });
});
