import { env, exports } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { decode, encode } from "../../shared/codec.ts";
import { parseJobId, schedulerName } from "../../shared/ids.ts";
import type { LeaseGrant } from "../../shared/wire.ts";
import { connect, heartbeat, hello, leaseOne, succeeded, welcomed, type Conn } from "./agent-helpers.ts";
import { ADMIN, call, makeAccount, makeModel, submit } from "./helpers.ts";
import { events, readSse, seq } from "./sse.ts";

interface TestAgent {
  conn: Conn;
  id: string;
  token: string;
  lease: () => Promise<LeaseGrant>;
}

async function agentFor(model: string): Promise<TestAgent> {
  const { conn, id, t } = await welcomed(model);
  return { conn, id, token: t.token, lease: () => leaseOne(conn) };
}

/**
 * A lease ends without its holder's result (given back, its deadline passed, or its attempt
 * past run_timeout_s); the old holder goes on talking about it. Subscribers see the job back in
 * its queue and nothing of that attempt after it, neither progress nor previews nor logs; the
 * holder hears lease.stale. A second agent then runs the job to the end, so the stream's whole
 * life is read. `lose` answers the connection the old holder goes on talking over, when it is
 * another than the one it held the lease on.
 */
async function lostHolder(
  model: string,
  lose: (conn: Conn, ref: { job_id: string; epoch: number }, agent: TestAgent) => Promise<Conn | void>,
) {
  const acct = await makeAccount();
  const { body: job } = await submit(model, acct.key);
  const watching = await events(job.id, acct.key);
  const reading = readSse(watching, (e) => e.event === "succeeded", 15_000);
  const old = await agentFor(model);
  const l = await old.lease();
  const ref = { job_id: job.id, epoch: l.epoch };
  const progress = (step: number) =>
    ({ v: 2, type: "job.progress", trace: "t", ...ref, phase: "sampling", step, total: 10 }) as const;
  const preview = { v: 2, type: "job.preview", trace: "t", ...ref, content_type: "image/png" } as const;
  old.conn.send(progress(1));
  old.conn.send({ ...preview, data: new Uint8Array([1]) });
  const talking = (await lose(old.conn, ref, old)) ?? old.conn;
  talking.send(progress(2));
  expect(await talking.next("lease.stale")).toMatchObject(ref);
  talking.send({ v: 2, type: "job.log", trace: "t", ...ref, level: "info", message: "late" });
  expect(await talking.next("lease.stale")).toMatchObject(ref);
  talking.send({ ...preview, data: new Uint8Array([2]) });
  expect(await talking.next("lease.stale")).toMatchObject(ref);
  const next = await agentFor(model);
  const l2 = await next.lease();
  next.conn.send(succeeded({ job_id: job.id, epoch: l2.epoch }, []));
  const got = await reading;
  const requeued = got.findIndex((e) => e.event === "status" && e.data.status === "queued" && seq(e) > 1);
  expect(requeued).toBeGreaterThan(0);
  const after = got.slice(requeued);
  talking.ws.close(1000, "done");
  next.conn.ws.close(1000, "done");
  return {
    logs: after.filter((e) => e.event === "log"),
    progress: after.filter((e) => e.event === "progress"),
    previews: after.filter((e) => e.event === "preview"),
  };
}

describe("job events", () => {
  it("a subscriber sees status, then progress as the agent sends it, then the terminal event, and the stream ends", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const res = await events(job.id, acct.key);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const { conn, lease } = await agentFor(model);
    const reading = readSse(res, () => false, 8000);
    const l = await lease();
    for (let step = 1; step <= 3; step++)
      conn.send({
        v: 2,
        type: "job.progress",
        trace: "t",
        job_id: job.id,
        epoch: l.epoch,
        phase: "sampling",
        step,
        total: 3,
      });
    await new Promise((r) => setTimeout(r, 100));
    conn.send(succeeded({ job_id: job.id, epoch: l.epoch }, []));
    const got = await reading;
    expect(got[0]).toMatchObject({ event: "status", data: { status: "queued", queue: { position: 0 } } });
    expect(got.filter((e) => e.event === "progress").map((e) => e.data.step)).toEqual([1, 2, 3]);
    expect(got.at(-1)).toMatchObject({ event: "succeeded", data: { outputs: [] } });
    const ids = got.map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    conn.ws.close(1000, "done");
  });

  it("reconnecting with Last-Event-ID resumes with no gap and no duplicate; an unknown id gets a reset snapshot", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const { conn, lease } = await agentFor(model);
    const l = await lease();
    // Someone watches the job throughout, so every step is published (with nobody watching,
    // progress is kept coalesced, the newest only).
    const keeper = await events(job.id, acct.key);
    const first = await events(job.id, acct.key);
    const send = (step: number): void =>
      conn.send({
        v: 2,
        type: "job.progress",
        trace: "t",
        job_id: job.id,
        epoch: l.epoch,
        phase: "sampling",
        step,
        total: 10,
      });
    const firstRead = readSse(first, (e) => e.event === "progress" && e.data.step === 4);
    for (let s = 1; s <= 4; s++) send(s);
    const a = await firstRead;
    const lastId = a.at(-1)?.id as string;
    for (let s = 5; s <= 7; s++) send(s);
    await new Promise((r) => setTimeout(r, 100));
    const second = await events(job.id, acct.key, { "last-event-id": lastId });
    const b = await readSse(second, (e) => e.event === "progress" && e.data.step === 7);
    expect(b.map((e) => e.data.step)).toEqual([5, 6, 7]);
    const reset = await events(job.id, acct.key, { "last-event-id": "0000dead.3" });
    const c = await readSse(reset, (e) => e.event === "progress");
    expect(c[0]).toMatchObject({ event: "status", data: { status: "running", reset: true } });
    expect(c[1]).toMatchObject({ event: "progress", data: { step: 7 } });
    await keeper.body?.cancel();
    conn.ws.close(1000, "done");
  });

  it("a subscriber arriving after progress and a later status change gets ids in increasing order, and resuming from any of them misses nothing", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const { conn, lease } = await agentFor(model);
    const l = await lease();
    const progress = (step: number): void =>
      conn.send({
        v: 2,
        type: "job.progress",
        trace: "t",
        job_id: job.id,
        epoch: l.epoch,
        phase: "sampling",
        step,
        total: 9,
      });
    // A first subscriber makes the job actor follow the job: after the progress, the status
    // changes to phase sampling, an event newer than the progress.
    const watching = readSse(
      await events(job.id, acct.key),
      (e) => e.event === "status" && e.data.phase === "sampling",
    );
    progress(1);
    await watching;
    const late = await readSse(await events(job.id, acct.key), (_e, all) => all.length === 2);
    expect(late.map((e) => [e.event, e.data.phase])).toEqual([
      ["progress", "sampling"],
      ["status", "sampling"],
    ]);
    const ids = late.map(seq);
    expect(ids).toEqual(ids.toSorted((a, b) => a - b));
    expect(new Set(ids).size).toBe(ids.length);
    // Resuming from each id seen: what the late subscriber saw after it, then what came since.
    progress(2);
    for (const [i, seen] of late.entries()) {
      const resumed = await readSse(
        await events(job.id, acct.key, { "last-event-id": seen.id }),
        (e) => e.event === "progress" && e.data.step === 2,
      );
      expect(resumed.slice(0, -1)).toEqual(late.slice(i + 1));
      expect(resumed.map(seq).every((n, k, all) => n > seq(seen) && (k === 0 || n > (all[k - 1] ?? 0)))).toBe(true);
    }
    conn.ws.close(1000, "done");
  });

  it("a late subscriber first receives the current state; after the end it receives the terminal event and the stream closes", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    await call("POST", `/v1/jobs/${job.id}/cancel`, { key: acct.key });
    const got = await readSse(await events(job.id, acct.key), () => false);
    expect(got.map((e) => e.event)).toEqual(["status", "cancelled"]);
  });

  it("another account's job events are 404; a stream token opens one job's events only", async () => {
    const model = await makeModel();
    const owner = await makeAccount();
    const other = await makeAccount();
    const { body: job } = await submit(model, owner.key);
    const { body: job2 } = await submit(model, owner.key);
    expect((await events(job.id, other.key)).status).toBe(404);
    const t = await call<{ token: string }>("POST", `/v1/jobs/${job.id}/stream-token`, { key: owner.key });
    expect(t.status).toBe(201);
    expect((await call("POST", `/v1/jobs/${job.id}/stream-token`, { key: other.key })).status).toBe(404);
    const viaToken = await exports.default.fetch(
      new Request(`http://edge.test/v1/jobs/${job.id}/events?token=${t.body.token}`),
    );
    expect(viaToken.status).toBe(200);
    await viaToken.body?.cancel();
    const wrongJob = await exports.default.fetch(
      new Request(`http://edge.test/v1/jobs/${job2.id}/events?token=${t.body.token}`),
    );
    expect(wrongJob.status).toBe(401);
    const tampered = await exports.default.fetch(
      new Request(`http://edge.test/v1/jobs/${job.id}/events?token=${t.body.token.slice(0, -2)}xx`),
    );
    expect(tampered.status).toBe(401);
  });

  it("the WebSocket variant streams the same events as msgpack frames", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const res = await events(job.id, acct.key, { upgrade: "websocket" });
    expect(res.status).toBe(101);
    const ws = res.webSocket as WebSocket;
    ws.accept();
    const got: { event: string; data: Record<string, unknown> }[] = [];
    const closed = new Promise<void>((r) => ws.addEventListener("close", () => r()));
    ws.addEventListener("message", (e) => {
      const d = e.data as ArrayBuffer | Blob;
      void (d instanceof Blob ? d.arrayBuffer() : Promise.resolve(d)).then((buf) =>
        got.push(decode(new Uint8Array(buf)) as never),
      );
    });
    const { conn, lease } = await agentFor(model);
    const l = await lease();
    conn.send({
      v: 2,
      type: "job.progress",
      trace: "t",
      job_id: job.id,
      epoch: l.epoch,
      phase: "sampling",
      step: 1,
      total: 2,
    });
    conn.send({
      v: 2,
      type: "job.preview",
      trace: "t",
      job_id: job.id,
      epoch: l.epoch,
      content_type: "image/png",
      data: new Uint8Array([137, 80, 78, 71]),
    });
    await new Promise((r) => setTimeout(r, 100));
    conn.send(succeeded({ job_id: job.id, epoch: l.epoch }, []));
    await closed;
    await new Promise((r) => setTimeout(r, 50));
    expect(got.map((e) => e.event)).toEqual(expect.arrayContaining(["status", "progress", "preview", "succeeded"]));
    const preview = got.find((e) => e.event === "preview");
    expect(preview?.data.bytes).toEqual(new Uint8Array([137, 80, 78, 71]));
    conn.ws.close(1000, "done");
  });

  it("a WebSocket subscriber's acks are taken in msgpack or JSON; anything else it sends closes it with 1003", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const open = async () => {
      const res = await events(job.id, acct.key, { upgrade: "websocket" });
      const ws = res.webSocket as WebSocket;
      ws.accept();
      const closed = new Promise<number>((r) => ws.addEventListener("close", (e) => r(e.code)));
      return { ws, closed };
    };
    const good = await open();
    good.ws.send(encode({ ack: "00000000.1" }));
    good.ws.send(JSON.stringify({ ack: "00000000.1" }));
    const bad = await open();
    bad.ws.send("hello");
    expect(await bad.closed).toBe(1003);
    // The one that only acknowledged is still open: the job's end closes it normally.
    const { conn, lease } = await agentFor(model);
    const l = await lease();
    conn.send(succeeded({ job_id: job.id, epoch: l.epoch }, []));
    expect(await good.closed).toBe(1000);
    conn.ws.close(1000, "done");
  });

  it("log messages with U+2028, U+2029 and U+0085 reach SSE subscribers escaped, on one data line, as the same text", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const { conn, lease } = await agentFor(model);
    const l = await lease();
    const res = await events(job.id, acct.key);
    const message = "line\u2028separator\u2029paragraph\u0085next line";
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const dec = new TextDecoder();
    let raw = "";
    const deadline = Date.now() + 5000;
    conn.send({ v: 2, type: "job.log", trace: "t", job_id: job.id, epoch: l.epoch, level: "info", message });
    while (!/event: log\n[^]*?\n\n/.test(raw)) {
      if (Date.now() > deadline) throw new Error(`no log event within 5 s; got ${JSON.stringify(raw)}`);
      const chunk = await reader.read();
      if (chunk.done) break;
      raw += dec.decode(chunk.value, { stream: true });
    }
    await reader.cancel();
    const block = /event: log\n([^]*?)\n\n/.exec(raw)?.[1] ?? "";
    expect(raw).not.toMatch(/[\u0085\u2028\u2029]/);
    const lines = block.split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(String.raw`line\u2028separator\u2029paragraph\u0085next line`);
    expect(JSON.parse((lines[0] ?? "").replace(/^data: /, ""))).toEqual({ level: "info", message });
    conn.ws.close(1000, "done");
  });

  it("customers' job views and status events name no agent or pool; an admin's view of the job names both", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const { conn, id: agent } = await welcomed(model);
    const l = await leaseOne(conn);
    expect(l.job_id).toBe(job.id);
    const running = await events(job.id, acct.key);
    const seen = await readSse(running, (e) => e.event === "status" && e.data.status === "running");
    const status = seen.findLast((e) => e.event === "status");
    expect(status?.data).toMatchObject({ status: "running", attempt: 1 });
    expect(status?.data).not.toHaveProperty("agent");
    const one = await call<{ attempts: Record<string, unknown>[] }>("GET", `/v1/jobs/${job.id}`, { key: acct.key });
    const customer = [
      one,
      await call<{ jobs: { attempts: Record<string, unknown>[] }[] }>("GET", "/v1/jobs", { key: acct.key }),
      await call<{ attempts: Record<string, unknown>[] }>("POST", `/v1/jobs/${job.id}/cancel`, { key: acct.key }),
    ];
    for (const r of customer) {
      expect(r.status).toBe(200);
      const text = JSON.stringify(r.body);
      expect(text).not.toContain(agent);
      expect(text).not.toMatch(/"(agent|pool)":/);
    }
    expect(one.body.attempts).toEqual([expect.objectContaining({ n: 1, epoch: l.epoch })]);
    const admin = await call<{ attempts: Record<string, unknown>[] }>("GET", `/v1/admin/jobs/${job.id}`, {
      key: ADMIN,
    });
    expect(admin.status).toBe(200);
    expect(admin.body.attempts[0]).toMatchObject({ n: 1, agent, pool: "test" });
    const listed = await call<{ jobs: { id: string; attempts: Record<string, unknown>[] }[] }>(
      "GET",
      `/v1/admin/jobs?account=${acct.id}`,
      { key: ADMIN },
    );
    expect(listed.body.jobs.find((j) => j.id === job.id)?.attempts[0]).toMatchObject({ agent, pool: "test" });
    // Admin reads are the admin's: a user key is refused, and an unknown job is 404.
    expect((await call("GET", `/v1/admin/jobs/${job.id}`, { key: acct.key })).status).toBe(403);
    expect((await call("GET", `/v1/admin/jobs/${job.id.slice(0, -5)}zzzzz`, { key: ADMIN })).status).toBe(404);
    conn.ws.close(1000, "done");
  });

  it("after its holder gives a lease back, the holder's late progress, previews and logs are answered lease.stale and never shown", async () => {
    const shown = await lostHolder(await makeModel(), async (conn, ref) => {
      conn.send({ v: 2, type: "job.release", trace: "t", leases: [ref], reason: "preempted" });
    });
    expect(shown).toEqual({ logs: [], progress: [], previews: [] });
  });

  it("when a lease's deadline passes (worker_lost), its holder is told lease.stale at once, and its late progress, previews and logs are answered lease.stale and never shown", async () => {
    const shown = await lostHolder(await makeModel(), async (conn, ref) => {
      const route = parseJobId(ref.job_id);
      if (!route) throw new Error("bad job id");
      const shard = env.SCHEDULER.get(env.SCHEDULER.idFromName(schedulerName(route)));
      // As if the lease's 30 s had gone by without a renewal; the scheduler's own alarm sweeps.
      await runInDurableObject(shard, (instance) => {
        const core = (instance as unknown as { core: { leases: { get(id: string): { deadline: number } } } }).core;
        core.leases.get(ref.job_id).deadline = Date.now() - 1;
      });
      expect(await runDurableObjectAlarm(shard)).toBe(true);
      // Told when the scheduler took the lease back, not when the holder next spoke.
      expect(await conn.next("lease.stale")).toMatchObject(ref);
      const view = await call<{ status: string; attempts: { reason: string | null }[] }>(
        "GET",
        `/v1/admin/jobs/${ref.job_id}`,
        { key: ADMIN },
      );
      expect(view.body).toMatchObject({ status: "queued", attempts: [{ reason: "worker_lost" }] });
    });
    expect(shown).toEqual({ logs: [], progress: [], previews: [] });
  });

  it("when its agent's reconnect grace runs out (worker_lost), the agent coming back is told the lease is stale, and its late progress, previews and logs are never shown", async () => {
    const shown = await lostHolder(await makeModel(), async (conn, ref, agent) => {
      const stub = env.AGENT.get(env.AGENT.idFromName(agent.id));
      conn.ws.close(1000, "gone");
      const alarm = async (): Promise<number | null> =>
        await runInDurableObject(stub, (_i, state) => state.storage.getAlarm());
      for (const end = Date.now() + 5_000; (await alarm()) === null;) {
        if (Date.now() > end) throw new Error("no reconnect grace alarm within 5 s");
        await new Promise((r) => setTimeout(r, 20));
      }
      // As if the grace had gone by: the agent actor's alarm gives the leases back.
      expect(await runDurableObjectAlarm(stub)).toBe(true);
      const back = await connect(agent.token, agent.id);
      if (!back.conn) throw new Error("no connection");
      back.conn.send(hello(agent.id, [ref]));
      expect(await back.conn.next("agent.welcome")).toMatchObject({ resumed: [], stale: [ref] });
      return back.conn;
    });
    expect(shown).toEqual({ logs: [], progress: [], previews: [] });
  });

  it("after an attempt passes run_timeout_s, its holder's late progress, previews and logs are answered lease.stale and never shown", async () => {
    const shown = await lostHolder(await makeModel({ run_timeout_s: 1 }), async (conn, ref) => {
      await new Promise((r) => setTimeout(r, 1_100));
      conn.send(heartbeat([ref]));
      const ack = (await conn.next("agent.heartbeat_ack")) as { stale: { job_id: string; epoch: number }[] };
      expect(ack.stale).toEqual([ref]);
    });
    expect(shown).toEqual({ logs: [], progress: [], previews: [] });
  });
});
