import { describe, expect, it } from "vitest";
import { DEMO_MODEL_CONFIG } from "../../shared/models.ts";
import { PIECE_BYTES, VersionManifest, type VersionPurge, type VersionRecord } from "../../shared/repository.ts";
import type { ModelRolloutStatus, RolloutEntry, RolloutStatus } from "../../shared/rollouts.ts";
import type { LeaseGrant, ToAgent, VersionState } from "../../shared/wire.ts";
import { connect, failed, token, type Conn } from "./agent-helpers.ts";
import { ADMIN, call, makeAccount, unique } from "./helpers.ts";

type Desired = Extract<ToAgent, { type: "agent.desired" }>;

/**
 * Pushes a version of a model through the repository's routes and answers its digest: committed
 * (ready), or `pending` when one of its pieces was never stored.
 */
async function seedVersion(
  model: string,
  version: string,
  over: Record<string, unknown> = {},
  state: "ready" | "pending" = "ready",
): Promise<string> {
  const manifest = VersionManifest.parse({
    format: 1,
    model,
    version,
    runner: "demo",
    input_schema: DEMO_MODEL_CONFIG.input_schema,
    expected_runtime_s: 3,
    resources: { gpus: 0 },
    ...over,
  });
  // A piece nobody stores: its name is a fresh random SHA-256-shaped string.
  const absent = [...crypto.getRandomValues(new Uint8Array(32))].map((b) => b.toString(16).padStart(2, "0")).join("");
  const files = state === "ready" ? [] : [{ path: "weights.bin", size: 1, sha256: absent, pieces: [absent] }];
  const pushed = await call<{ version: VersionRecord }>("POST", `/v1/admin/models/${model}/versions`, {
    key: ADMIN,
    body: { manifest, piece_bytes: PIECE_BYTES, files },
  });
  expect(pushed.status).toBe(201);
  if (state === "ready") {
    const committed = await call<VersionRecord>("POST", `/v1/admin/models/${model}/versions/${version}/commit`, {
      key: ADMIN,
    });
    if (committed.body.state !== "ready") throw new Error(`version ${model} ${version} did not commit`);
  }
  return pushed.body.version.digest;
}

async function apply(models: Record<string, unknown>, source?: string) {
  return await call<RolloutEntry & { error?: { code: string; message: string } }>("POST", "/v1/admin/rollouts", {
    key: ADMIN,
    body: { models, ...(source === undefined ? {} : { source }) },
  });
}

async function statusOf(model: string): Promise<ModelRolloutStatus | undefined> {
  const r = await call<RolloutStatus>("GET", "/v1/admin/rollouts/status", { key: ADMIN });
  expect(r.status).toBe(200);
  return r.body.models[model];
}

/** Polls `read` until `ok` holds of its answer, or fails naming `what` after `ms`. */
async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A connected agent of `model` that said hello serving `versions`, and the `agent.desired` that
 * followed its welcome.
 */
async function agentServing(model: string, versions: string[]): Promise<{ conn: Conn; id: string; desired: Desired }> {
  const t = await token([model]);
  const c = await connect(t.token);
  if (!c.conn) throw new Error("no connection");
  c.conn.send({
    v: 2,
    type: "agent.hello",
    trace: "t",
    agent_id: c.id,
    name: "rollout-test",
    gpus: [],
    versions: versions.map((version) => ({ model, version, state: "serving" as const })),
    slots: 4,
    prefetch: 0,
    leases: [],
  });
  await c.conn.next("agent.welcome");
  // The welcome comes first, then what the agent should serve.
  expect(c.conn.inbox.map((m) => m.type)).not.toContain("agent.welcome");
  const desired = (await c.conn.next("agent.desired")) as Desired;
  return { conn: c.conn, id: c.id, desired };
}

function heartbeat(conn: Conn, versions: VersionState[], credits = 0): void {
  conn.send({ v: 2, type: "agent.heartbeat", trace: "t", leases: [], gpus: [], credits, draining: false, versions });
}

describe("rollouts over the admin routes", () => {
  it("apply checks the versions, makes the model from its stable manifest, and status shows what is desired", async () => {
    const model = unique("roll");
    const d1 = await seedVersion(model, "v1");
    const d2 = await seedVersion(model, "v2");
    const r = await apply({ [model]: { version: "v1", canary: { version: "v2", percent: 10 } } }, "models: …");
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      by: "admin",
      kind: "apply",
      source: "models: …",
      models: { [model]: { version: "v1", canary: { version: "v2", percent: 10, max_failure_pct: 20, min_jobs: 20 } } },
    });
    const models = await call<{ models: { name: string; input_schema: unknown; expected_runtime_s: number }[] }>(
      "GET",
      "/v1/admin/models",
      { key: ADMIN },
    );
    expect(models.body.models.find((m) => m.name === model)).toMatchObject({
      input_schema: DEMO_MODEL_CONFIG.input_schema,
      expected_runtime_s: 3,
    });
    const s = await statusOf(model);
    expect(s).toMatchObject({
      stable: { version: "v1", digest: d1 },
      canary: { version: "v2", digest: d2, percent: 10 },
      rollout_id: r.body.id,
      window: { v1: { jobs: 0, failed: 0 }, v2: { jobs: 0, failed: 0 } },
      reverts: [],
    });
    const history = await call<{ rollouts: RolloutEntry[] }>("GET", "/v1/admin/rollouts?limit=5", { key: ADMIN });
    expect(history.body.rollouts[0]?.id).toBe(r.body.id);
  });

  it("a version that does not exist, or is not ready, is 404 version_not_found and nothing is applied", async () => {
    const model = unique("roll");
    await seedVersion(model, "v1");
    await seedVersion(model, "v3", {}, "pending");
    const missing = await apply({ [model]: { version: "v1", canary: { version: "v2", percent: 10 } } });
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ code: "version_not_found" });
    expect(missing.body.error?.message).toContain(model);
    expect(missing.body.error?.message).toContain('"v2"');
    expect(await statusOf(model)).toBeUndefined();
    const pending = await apply({ [model]: { version: "v3" } });
    expect(pending.status).toBe(404);
    expect(pending.body.error).toMatchObject({ code: "version_not_found" });
    expect(await statusOf(model)).toBeUndefined();
    const same = await apply({ [model]: { version: "v1", canary: { version: "v1", percent: 10 } } });
    expect(same.status).toBe(400);
    expect(same.body.error).toMatchObject({ code: "invalid_body" });
  });

  it("undo applies the model's previous entry again as a new entry; revert ends the canary as the operator's", async () => {
    const model = unique("roll");
    await seedVersion(model, "v1");
    await seedVersion(model, "v2");
    const nothing = await call("POST", "/v1/admin/rollouts/undo", { key: ADMIN, body: { model } });
    expect(nothing.status).toBe(409);
    const first = await apply({ [model]: { version: "v1" } });
    const second = await apply({ [model]: { version: "v2", canary: { version: "v1", percent: 50 } } });
    expect(second.body.id).toBeGreaterThan(first.body.id);
    const undo = await call<RolloutEntry>("POST", "/v1/admin/rollouts/undo", { key: ADMIN, body: { model } });
    expect(undo.status).toBe(201);
    expect(undo.body).toMatchObject({ kind: "undo", models: { [model]: { version: "v1" } } });
    expect(await statusOf(model)).toMatchObject({ stable: { version: "v1" }, rollout_id: undo.body.id });
    expect((await statusOf(model))?.canary).toBeUndefined();
    // A second undo goes back again.
    const again = await call<RolloutEntry>("POST", "/v1/admin/rollouts/undo", { key: ADMIN, body: { model } });
    expect(again.body.models[model]).toMatchObject({ version: "v2", canary: { version: "v1" } });
    const revert = await call<{ revert: { reason: string; version: string } }>("POST", "/v1/admin/rollouts/revert", {
      key: ADMIN,
      body: { model },
    });
    expect(revert.status).toBe(200);
    expect(revert.body.revert).toMatchObject({ reason: "operator", version: "v1", jobs: 0, failed: 0 });
    const s = await statusOf(model);
    expect(s?.canary).toBeUndefined();
    expect(s?.reverts[0]).toMatchObject({ reason: "operator", version: "v1" });
    const twice = await call("POST", "/v1/admin/rollouts/revert", { key: ADMIN, body: { model } });
    expect(twice.status).toBe(409);
  });
});

describe("rollouts reach agents and queues", () => {
  it("an agent gets agent.desired after its welcome and again within seconds of a rollout; its version states show in status", async () => {
    const model = unique("roll");
    const d1 = await seedVersion(model, "v1");
    const d2 = await seedVersion(model, "v2");
    await apply({ [model]: { version: "v1" } });
    const { conn, id, desired: first } = await agentServing(model, ["v1"]);
    expect(first.models).toEqual([{ model, stable: { version: "v1", digest: d1 } }]);
    const before = Date.now();
    expect((await apply({ [model]: { version: "v1", canary: { version: "v2", percent: 25 } } })).status).toBe(201);
    const second = (await conn.next("agent.desired", 2_000)) as Desired;
    expect(Date.now() - before).toBeLessThan(2_000);
    expect(second.models).toEqual([
      { model, stable: { version: "v1", digest: d1 }, canary: { version: "v2", digest: d2, percent: 25 } },
    ]);
    heartbeat(conn, [
      { model, version: "v1", state: "serving" },
      { model, version: "v2", state: "loading", message: "fetching 2 of 5 pieces" },
    ]);
    await conn.next("agent.heartbeat_ack");
    const s = await eventually(
      () => statusOf(model),
      (x) => (x?.agent_versions.length ?? 0) === 2,
      "the agent's version states in status",
    );
    expect(s?.agents).toEqual({ v1: { loading: 0, serving: 1, failed: 0 }, v2: { loading: 1, serving: 0, failed: 0 } });
    expect(s?.agent_versions).toContainEqual({
      agent_id: id,
      version: "v2",
      state: "loading",
      message: "fetching 2 of 5 pieces",
    });
    // Nothing changed: no second message on the next heartbeat.
    heartbeat(conn, [{ model, version: "v1", state: "serving" }]);
    await conn.next("agent.heartbeat_ack");
    expect(conn.inbox.filter((m) => m.type === "agent.desired")).toEqual([]);
    conn.ws.close(1000, "done");
  });

  it("a purge of a version the rollout desires is refused with conflict, of an unknown one with version_not_found; otherwise it is recorded and the model's agents are told, until a rollout names it again", async () => {
    const model = unique("purge");
    const d1 = await seedVersion(model, "v1");
    await seedVersion(model, "v2");
    await apply({ [model]: { version: "v1", canary: { version: "v2", percent: 10 } } });
    const { conn, desired: first } = await agentServing(model, ["v1"]);
    expect(first.purged).toBeUndefined();
    const purge = (version: string) =>
      call<VersionPurge & { error?: { code: string; message: string } }>(
        "POST",
        `/v1/admin/models/${model}/versions/${version}/purge`,
        { key: ADMIN },
      );
    for (const [version, as] of [
      ["v1", "stable"],
      ["v2", "canary"],
    ] as const) {
      const r = await purge(version);
      expect(r.status).toBe(409);
      expect(r.body.error?.code).toBe("conflict");
      expect(r.body.error?.message).toContain(`rollout's ${as} version`);
    }
    const unknown = await purge("v9");
    expect(unknown.status).toBe(404);
    expect(unknown.body.error?.code).toBe("version_not_found");
    expect((await apply({ [model]: { version: "v1" } })).status).toBe(201);
    await conn.next("agent.desired", 2_000);
    const before = Date.now();
    const r = await purge("v2");
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ model, version: "v2", purged_by: expect.stringMatching(/^admin:[0-9a-f]{8}$/) });
    const told = (await conn.next("agent.desired", 2_000)) as Desired;
    expect(Date.now() - before).toBeLessThan(2_000);
    expect(told.models).toEqual([{ model, stable: { version: "v1", digest: d1 } }]);
    expect(told.purged).toEqual([{ model, version: "v2" }]);
    // Named by a rollout again, it is desired and no longer purged.
    expect((await apply({ [model]: { version: "v2" } })).status).toBe(201);
    const again = (await conn.next("agent.desired", 2_000)) as Desired;
    expect(again.models[0]?.stable.version).toBe("v2");
    expect(again.purged).toBeUndefined();
    conn.ws.close(1000, "done");
  });

  it("a reverted canary's routed queued jobs go back to the unpinned lane and are leased to a stable agent", async () => {
    const model = unique("roll");
    await seedVersion(model, "v1");
    await seedVersion(model, "v2");
    await apply({ [model]: { version: "v1", canary: { version: "v2", percent: 100, min_jobs: 1000 } } });
    const acct = await makeAccount();
    const stable = await agentServing(model, ["v1"]);
    stable.conn.send({ v: 2, type: "work.request", trace: "t", credits: 3 });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await call<{ id: string }>("POST", `/v1/models/${model}/jobs`, {
        key: acct.key,
        body: { input: { prompt: `routed ${i}` } },
      });
      expect(r.status).toBe(202);
      ids.push(r.body.id);
    }
    for (const id of ids) {
      const job = await call<{ status: string }>("GET", `/v1/admin/jobs/${id}`, { key: ADMIN });
      expect(job.body.status).toBe("queued");
    }
    expect(stable.conn.inbox.filter((m) => m.type === "job.leases")).toEqual([]);
    const revert = await call("POST", "/v1/admin/rollouts/revert", { key: ADMIN, body: { model } });
    expect(revert.status).toBe(200);
    const leases: LeaseGrant[] = [];
    while (leases.length < 3) {
      leases.push(...((await stable.conn.next("job.leases", 5_000)) as { leases: LeaseGrant[] }).leases);
    }
    expect(leases.map((l) => l.job_id).sort()).toEqual([...ids].sort());
    expect(leases.map((l) => l.version)).toEqual(["v1", "v1", "v1"]);
    stable.conn.ws.close(1000, "done");
  });

  it("a canary whose jobs fail past max_failure_pct is reverted by itself, with its figures in status", async () => {
    const model = unique("roll");
    await seedVersion(model, "v1");
    await seedVersion(model, "v2");
    await apply({
      [model]: { version: "v1", canary: { version: "v2", percent: 100, min_jobs: 3, max_failure_pct: 50 } },
    });
    const acct = await makeAccount();
    const canary = await agentServing(model, ["v2"]);
    for (let i = 0; i < 3; i++) {
      const r = await call("POST", `/v1/models/${model}/jobs`, { key: acct.key, body: { input: { prompt: `c${i}` } } });
      expect(r.status).toBe(202);
    }
    canary.conn.send({ v: 2, type: "work.request", trace: "t", credits: 3 });
    const leases: LeaseGrant[] = [];
    while (leases.length < 3) {
      leases.push(...((await canary.conn.next("job.leases")) as { leases: LeaseGrant[] }).leases);
    }
    expect(leases.map((l) => l.version)).toEqual(["v2", "v2", "v2"]);
    for (const l of leases) canary.conn.send(failed({ job_id: l.job_id, epoch: l.epoch }, "model_error", "broken"));
    const s = await eventually(
      () => statusOf(model),
      (x) => (x?.reverts.length ?? 0) > 0,
      "the automatic revert",
      15_000,
    );
    expect(s?.canary).toBeUndefined();
    expect(s?.reverts[0]).toMatchObject({
      version: "v2",
      reason: "failure_rate",
      jobs: 3,
      failed: 3,
      failure_pct: 100,
    });
    // The agent hears that the canary is gone.
    const told = (await canary.conn.next("agent.desired", 5_000)) as Desired;
    expect(told.models[0]?.canary).toBeUndefined();
    canary.conn.ws.close(1000, "done");
  }, 30_000);

  it("a canary that fails to load on an agent and serves on none is reverted at once; the failed load counts as a failed job", async () => {
    const model = unique("roll");
    await seedVersion(model, "v1");
    await seedVersion(model, "v2");
    await apply({ [model]: { version: "v1", canary: { version: "v2", percent: 10 } } });
    const { conn } = await agentServing(model, ["v1"]);
    heartbeat(conn, [
      { model, version: "v1", state: "serving" },
      { model, version: "v2", state: "failed", message: "piece 3 of 9: sha256 mismatch" },
    ]);
    const s = await eventually(
      () => statusOf(model),
      (x) => (x?.reverts.length ?? 0) > 0,
      "the revert after a failed load",
    );
    expect(s?.reverts[0]).toMatchObject({ version: "v2", reason: "load_failed", jobs: 1, failed: 1 });
    expect(s?.agents.v2).toEqual({ loading: 0, serving: 0, failed: 1 });
    conn.ws.close(1000, "done");
  });
});
