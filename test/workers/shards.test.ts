/**
 * A model's shard count is configuration that changes live: new submits spread over the count
 * set now, and shards taken away keep their jobs, which agents still lease until they drain.
 */
import { describe, expect, it } from "vitest";
import type { ModelConfig, QueueStats } from "../../shared/api.ts";
import { DEMO_MODEL_CONFIG } from "../../shared/models.ts";
import { parseJobId } from "../../shared/ids.ts";
import type { LeaseGrant } from "../../shared/wire.ts";
import { connect, hello, succeeded, token } from "./agent-helpers.ts";
import { ADMIN, call, makeAccount, makeModel, submit } from "./helpers.ts";

/** Sets a model's shard count and answers its configuration as the registry keeps it. */
async function setShards(name: string, shards: number): Promise<ModelConfig> {
  const { outputs: _outputs, ...demo } = DEMO_MODEL_CONFIG;
  const r = await call<ModelConfig>("PUT", `/v1/admin/models/${name}`, { key: ADMIN, body: { ...demo, shards } });
  expect(r.status).toBe(200);
  return r.body;
}

/** Submits `n` jobs and answers their ids. */
async function submitMany(model: string, key: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await submit(model, key, { prompt: `fox ${i}` });
    expect(r.status).toBe(202);
    ids.push(r.body.id);
  }
  return ids;
}

function shardOf(id: string): number {
  const route = parseJobId(id);
  if (!route) throw new Error(`not a job id: ${id}`);
  return route.shard;
}

describe("live shard count", () => {
  it("raising a model's shards spreads new submits over them; lowering it sends new submits only to the shards kept while the others drain to agents", async () => {
    const model = await makeModel({ shards: 1 });
    const acct = await makeAccount();

    const grown = await setShards(model, 3);
    expect(grown.shards).toBe(3);
    expect(grown.shard_span).toBeUndefined();
    // 40 draws over 3 shards miss one with probability 3·(2/3)^40 < 1e-6.
    const spread = await submitMany(model, acct.key, 40);
    expect(new Set(spread.map(shardOf))).toEqual(new Set([0, 1, 2]));

    const shrunk = await setShards(model, 1);
    expect(shrunk.shards).toBe(1);
    expect(shrunk.shard_span).toBe(3);
    const after = await submitMany(model, acct.key, 10);
    expect(after.every((id) => shardOf(id) === 0)).toBe(true);

    // A job on a draining shard is still read by its id.
    const draining = spread.find((id) => shardOf(id) === 2) as string;
    expect((await call("GET", `/v1/jobs/${draining}`, { key: acct.key })).status).toBe(200);

    // One agent, connected after the change, drains every shard: each job leased once.
    const t = await token([model]);
    const c = await connect(t.token);
    if (!c.conn) throw new Error("no connection");
    c.conn.send({ ...hello(c.id), slots: 4, prefetch: 0 });
    await c.conn.next("agent.welcome");
    c.conn.send({ v: 2, type: "work.request", trace: "t", credits: 4 });
    const all = [...spread, ...after];
    const leased = new Set<string>();
    while (leased.size < all.length) {
      const frame = (await c.conn.next("job.leases", 15_000)) as { leases: LeaseGrant[] };
      for (const lease of frame.leases) {
        expect(leased.has(lease.job_id)).toBe(false);
        leased.add(lease.job_id);
        c.conn.send(succeeded(lease, [], 1));
      }
    }
    expect(leased).toEqual(new Set(all));
    c.conn.ws.close(1000, "done");

    // The queues view still shows the drained shards, empty.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const q = await call<{ queues: QueueStats[] }>("GET", "/v1/admin/queues", { key: ADMIN });
      const rows = q.body.queues.filter((r) => r.model === model);
      expect(new Set(rows.map((r) => r.shard))).toEqual(new Set([0, 1, 2]));
      if (rows.every((r) => r.depth === 0 && r.running === 0)) break;
      if (Date.now() > deadline) throw new Error(`shards not drained: ${JSON.stringify(rows)}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    // Raising it again within the span keeps the span.
    const regrown = await setShards(model, 2);
    expect(regrown.shard_span).toBe(3);
    expect((await setShards(model, 3)).shard_span).toBeUndefined();
  }, 60_000);

  it("an agent connected before the shards grew takes jobs from the new shards once its actor re-reads the configuration", async () => {
    const model = await makeModel({ shards: 1 });
    const acct = await makeAccount();
    const t = await token([model]);
    const c = await connect(t.token);
    if (!c.conn) throw new Error("no connection");
    const conn = c.conn;
    conn.send({ ...hello(c.id), slots: 1, prefetch: 0 });
    await conn.next("agent.welcome");

    await setShards(model, 3);
    const ids = await submitMany(model, acct.key, 30);
    const elsewhere = ids.filter((id) => shardOf(id) !== 0);
    expect(elsewhere.length).toBeGreaterThan(0);

    // Heartbeats with a free slot, as the agent sends them, until it has run every job: its
    // actor re-reads the models within MODELS_CACHE_MS (10 s) and then asks the new shards too.
    const heartbeat = (): void =>
      conn.send({
        v: 2,
        type: "agent.heartbeat",
        trace: "t",
        leases: [],
        gpus: [],
        credits: 1,
        draining: false,
        versions: [],
      });
    const leased = new Set<string>();
    const deadline = Date.now() + 40_000;
    heartbeat();
    while (leased.size < ids.length) {
      if (Date.now() > deadline) throw new Error(`leased ${leased.size} of ${ids.length} jobs`);
      const frame = (await conn.next("job.leases", 1_000).catch(() => undefined)) as
        | { leases: LeaseGrant[] }
        | undefined;
      if (!frame) {
        heartbeat();
        continue;
      }
      for (const lease of frame.leases) {
        leased.add(lease.job_id);
        conn.send(succeeded(lease, [], 1));
      }
    }
    expect(leased).toEqual(new Set(ids));
    conn.ws.close(1000, "done");
  }, 60_000);
});
