import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { decode, encode } from "../../shared/codec.ts";
import { CLOSE, FRAME_KIND_CONTROL, type LeaseGrant } from "../../shared/wire.ts";
import {
  agentId,
  connect,
  hello,
  leaseOne,
  sha256Of,
  succeeded,
  token,
  welcomed,
  within,
  type Conn,
  heartbeat,
} from "./agent-helpers.ts";
import { ADMIN, call, makeAccount, makeModel, submit } from "./helpers.ts";
import { events, readSse } from "./sse.ts";

/** Gives a lease back (drained), waits until its job is queued again, and asks for one job. */
async function releaseAndTakeBack(conn: Conn, l: LeaseGrant, key: string): Promise<LeaseGrant[]> {
  conn.send({
    v: 2,
    type: "job.release",
    trace: "t",
    leases: [{ job_id: l.job_id, epoch: l.epoch }],
    reason: "drained",
  });
  for (let i = 0; i < 100; i++) {
    const v = await call<{ status: string }>("GET", `/v1/jobs/${l.job_id}`, { key });
    if (v.body.status === "queued") break;
    await new Promise((r) => setTimeout(r, 20));
  }
  conn.send({ v: 2, type: "work.request", trace: "t", credits: 1 });
  return ((await conn.next("job.leases")) as { leases: LeaseGrant[] }).leases;
}

describe("agent connections", () => {
  it("bad, expired, revoked, wrong-audience and garbage tokens are 401 before the upgrade", async () => {
    const model = await makeModel();
    const revoked = await token([model]);
    await call("DELETE", `/v1/admin/agent-tokens/${revoked.id}`, { key: ADMIN });
    for (const t of [
      revoked.token,
      "garbage",
      `${(await token([model])).token}x`,
      "eyJhbGciOiJub25lIn0.eyJpc3MiOiJmbG9vZGdhdGUifQ.",
    ]) {
      expect((await connect(t)).status).toBe(401);
    }
    const ok = await token([model]);
    const noUpgrade = await exports.default.fetch(
      new Request("http://edge.test/v1/agent/connect", {
        headers: { authorization: `Bearer ${ok.token}`, "x-floodgate-agent": agentId() },
      }),
    );
    expect(noUpgrade.status).toBe(426);
  });

  it("hello is answered with welcome; a work request gets leases; complete ends the job succeeded", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const t = await token([model]);
    const { conn, id } = await connect(t.token);
    if (!conn) throw new Error("no connection");
    conn.send(hello(id));
    const welcome = await conn.next("agent.welcome");
    expect(welcome).toMatchObject({ heartbeat_ms: 5000, lease_ttl_ms: 30000 });
    conn.send({ v: 2, type: "work.request", trace: "t", credits: 3 });
    const leases = (await conn.next("job.leases")) as { leases: LeaseGrant[] };
    expect(leases.leases.map((l) => l.job_id)).toEqual([job.id]);
    const lease = leases.leases[0] as LeaseGrant;
    expect((await call("GET", `/v1/jobs/${job.id}`, { key: acct.key })).body).toMatchObject({
      status: "running",
      phase: "assigned",
    });
    conn.send({
      v: 2,
      type: "job.progress",
      trace: "t",
      job_id: job.id,
      epoch: lease.epoch,
      phase: "sampling",
      step: 3,
      total: 10,
    });
    await new Promise((r) => setTimeout(r, 50));
    const running = await call<{ phase: string; progress: { step: number; total: number } }>(
      "GET",
      `/v1/jobs/${job.id}`,
      { key: acct.key },
    );
    expect(running.body.phase).toBe("sampling");
    expect(running.body.progress).toMatchObject({ step: 3, total: 10 });
    conn.send(succeeded({ job_id: job.id, epoch: lease.epoch }, []));
    const deadline = Date.now() + 3000;
    let status = "";
    while (Date.now() < deadline && status !== "succeeded") {
      status = (await call<{ status: string }>("GET", `/v1/jobs/${job.id}`, { key: acct.key })).body.status;
    }
    expect(status).toBe("succeeded");
    conn.ws.close(1000, "done");
  });

  it("a parked agent gets a new job pushed at submit, without asking again", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { conn } = await welcomed(model);
    conn.send({ v: 2, type: "work.request", trace: "t", credits: 1 });
    await new Promise((r) => setTimeout(r, 50));
    const { body: job } = await submit(model, acct.key);
    const pushed = (await conn.next("job.leases")) as { leases: LeaseGrant[] };
    expect(pushed.leases.map((l) => l.job_id)).toEqual([job.id]);
    conn.ws.close(1000, "done");
  });

  it("outputs are served by signed URL; a tampered one is 403, and deleting the job deletes its files", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const { conn, id, t } = await welcomed(model);
    const lease = await leaseOne(conn);
    // Upload through the agent routes, as an agent does.
    const agentHeaders = { authorization: `Bearer ${t.token}`, "x-floodgate-agent": id };
    const bytes = new TextEncoder().encode("hello, fox");
    const start = await call<{ upload_id: string; key: string }>("POST", "/v1/agent/uploads", {
      body: { job_id: job.id, epoch: lease.epoch, name: "result.txt", content_type: "text/plain", size: bytes.length },
      headers: agentHeaders,
    });
    expect(start.status).toBe(201);
    expect(start.body.key).toBe(`outputs/${job.id}/${lease.epoch}/result.txt`);
    const part = await exports.default.fetch(
      new Request(
        `http://edge.test/v1/agent/uploads/${start.body.upload_id}/parts/1?key=${encodeURIComponent(start.body.key)}`,
        {
          method: "PUT",
          headers: agentHeaders,
          body: bytes,
        },
      ),
    );
    const { etag } = (await part.json()) as { etag: string };
    const stale = await call("POST", "/v1/agent/uploads", {
      body: { job_id: job.id, epoch: lease.epoch + 1, name: "x.txt", content_type: "text/plain", size: 1 },
      headers: agentHeaders,
    });
    expect(stale.status).toBe(409);
    const done = await call<Record<string, unknown>>("POST", `/v1/agent/uploads/${start.body.upload_id}/complete`, {
      body: {
        key: start.body.key,
        parts: [{ part_number: 1, etag }],
        size: bytes.length,
        sha256: await sha256Of(bytes),
      },
      headers: agentHeaders,
    });
    expect(done.body).toMatchObject({ name: "result.txt", size: bytes.length, content_type: "text/plain" });
    conn.send(succeeded({ job_id: job.id, epoch: lease.epoch }, [done.body as never]));
    let url = "";
    for (let i = 0; i < 50 && !url; i++) {
      const view = await call<{ outputs: { url: string }[] | null }>("GET", `/v1/jobs/${job.id}`, { key: acct.key });
      url = view.body.outputs?.[0]?.url ?? "";
    }
    const file = await exports.default.fetch(new Request(url));
    expect(await file.text()).toBe("hello, fox");
    // The signature's first character changed (to another one: "A" may be the one it has).
    const tampered = url.replace(/sig=(.)/, (_m, c: string) => `sig=${c === "A" ? "B" : "A"}`);
    expect(tampered).not.toBe(url);
    expect((await exports.default.fetch(new Request(tampered))).status).toBe(403);
    expect((await exports.default.fetch(new Request(url.replace(/exp=\d+/, "exp=1")))).status).toBe(403);
    expect((await call("DELETE", `/v1/jobs/${job.id}`, { key: acct.key })).status).toBe(204);
    let left = 1;
    for (let i = 0; i < 50 && left > 0; i++) {
      left = (await env.OUTPUTS.list({ prefix: `outputs/${job.id}/` })).objects.length;
      left += (await env.OUTPUTS.list({ prefix: `uploads/${job.id}/` })).objects.length;
      if (left > 0) await new Promise((r) => setTimeout(r, 20));
    }
    expect(left).toBe(0);
    conn.ws.close(1000, "done");
  });

  it("the lease holder's parts and completes naming an unknown upload id or a wrong etag are 404 upload_not_found or 400 invalid_upload", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const { conn, id, t } = await welcomed(model);
    const lease = await leaseOne(conn);
    const headers = { authorization: `Bearer ${t.token}`, "x-floodgate-agent": id };
    const start = async (name: string) =>
      (
        await call<{ upload_id: string; key: string }>("POST", "/v1/agent/uploads", {
          body: { job_id: job.id, epoch: lease.epoch, name, content_type: "text/plain", size: 4 },
          headers,
        })
      ).body;
    const put = async (uploadId: string, key: string) => {
      const res = await exports.default.fetch(
        new Request(
          `http://edge.test/v1/agent/uploads/${encodeURIComponent(uploadId)}/parts/1?key=${encodeURIComponent(key)}`,
          { method: "PUT", headers, body: new Uint8Array(4) },
        ),
      );
      const body = (await res.json()) as { etag?: string; error?: { code: string } };
      return { status: res.status, code: body.error?.code, etag: body.etag };
    };
    const complete = async (uploadId: string, key: string, etag: string) => {
      const r = await call<{ error?: { code: string } }>(
        "POST",
        `/v1/agent/uploads/${encodeURIComponent(uploadId)}/complete`,
        {
          body: { key, parts: [{ part_number: 1, etag }], size: 4, sha256: await sha256Of(new Uint8Array(4)) },
          headers,
        },
      );
      return { status: r.status, code: r.body.error?.code };
    };
    const a = await start("a.txt");
    const b = await start("b.txt");
    const notFound = { status: 404, code: "upload_not_found" };
    expect(await put("u1", a.key)).toMatchObject(notFound);
    expect(await put(b.upload_id, a.key)).toMatchObject(notFound);
    expect(await complete("u1", a.key, "e")).toEqual(notFound);
    expect(await complete(b.upload_id, a.key, "e")).toEqual(notFound);
    const part = await put(a.upload_id, a.key);
    expect(part.status).toBe(200);
    expect(await complete(a.upload_id, a.key, "not-the-etag")).toEqual({ status: 400, code: "invalid_upload" });
    expect(await complete(a.upload_id, a.key, part.etag ?? "")).toEqual({ status: 200, code: undefined });
    expect(await complete(a.upload_id, a.key, part.etag ?? "")).toEqual(notFound);
    conn.ws.close(1000, "done");
  });

  it("another agent naming the current epoch of a lease it does not hold is refused", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const t = await token([model]);
    const holder = await connect(t.token);
    const intruder = await connect(t.token);
    if (!holder.conn || !intruder.conn) throw new Error("no connection");
    holder.conn.send(hello(holder.id));
    intruder.conn.send(hello(intruder.id));
    await holder.conn.next("agent.welcome");
    await intruder.conn.next("agent.welcome");
    holder.conn.send({ v: 2, type: "work.request", trace: "t", credits: 1 });
    const lease = ((await holder.conn.next("job.leases")) as { leases: LeaseGrant[] }).leases[0] as LeaseGrant;
    const ref = { job_id: job.id, epoch: lease.epoch };
    intruder.conn.send({ v: 2, type: "job.progress", trace: "t", ...ref, phase: "sampling", step: 9, total: 10 });
    expect(await intruder.conn.next("lease.stale")).toMatchObject(ref);
    intruder.conn.send(succeeded(ref, []));
    expect(await intruder.conn.next("lease.stale")).toMatchObject(ref);
    expect((await call("GET", `/v1/jobs/${job.id}`, { key: acct.key })).body).toMatchObject({
      status: "running",
      progress: null,
    });
    holder.conn.ws.close(1000, "done");
    intruder.conn.ws.close(1000, "done");
  });

  it("a job.log naming a lease the agent does not hold is answered with lease.stale and not shown", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const holder = await welcomed(model);
    const intruder = await welcomed(model);
    const watching = await events(job.id, acct.key);
    const lease = await leaseOne(holder.conn);
    const log = (epoch: number, message = "hello") =>
      ({ v: 2, type: "job.log", trace: "t", job_id: job.id, epoch, level: "info", message }) as const;
    intruder.conn.send(log(lease.epoch));
    expect(await intruder.conn.next("lease.stale", 2000)).toMatchObject({ job_id: job.id, epoch: lease.epoch });
    holder.conn.send(log(lease.epoch + 1));
    expect(await holder.conn.next("lease.stale", 2000)).toMatchObject({ job_id: job.id, epoch: lease.epoch + 1 });
    // The holder's own line, at its epoch, is the one a subscriber sees.
    holder.conn.send(log(lease.epoch, "mine"));
    const seen = await readSse(watching, (e) => e.event === "log");
    expect(seen.filter((e) => e.event === "log").map((e) => e.data.message)).toEqual(["mine"]);
    holder.conn.ws.close(1000, "done");
    intruder.conn.ws.close(1000, "done");
  });

  it("a result with a stale epoch is refused with lease.stale and changes nothing", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const { conn } = await welcomed(model);
    const lease = await leaseOne(conn);
    conn.send(succeeded({ job_id: job.id, epoch: lease.epoch + 5 }, []));
    const stale = await conn.next("lease.stale");
    expect(stale).toMatchObject({ job_id: job.id, epoch: lease.epoch + 5 });
    expect((await call("GET", `/v1/jobs/${job.id}`, { key: acct.key })).body).toMatchObject({ status: "running" });
    conn.ws.close(1000, "done");
  });

  it("a malformed frame closes only its own connection, with the documented code", async () => {
    const model = await makeModel();
    const t = await token([model]);
    const a = await connect(t.token);
    const b = await connect(t.token);
    if (!a.conn || !b.conn) throw new Error("no connection");
    a.conn.send(hello(a.id));
    b.conn.send(hello(b.id));
    await a.conn.next("agent.welcome");
    await b.conn.next("agent.welcome");
    a.conn.ws.send(new Uint8Array([FRAME_KIND_CONTROL, 0xc1, 0xff, 0x00]));
    expect((await a.conn.closed).code).toBe(CLOSE.malformed);
    b.conn.send(heartbeat());
    expect(await b.conn.next("agent.heartbeat_ack")).toMatchObject({ stale: [] });
    b.conn.ws.close(1000, "done");
  });

  it("frames over their cap, with unknown kinds, extension types or unknown message types are refused", async () => {
    const model = await makeModel();
    const t = await token([model]);
    const cases: Uint8Array[] = [
      new Uint8Array(70 * 1024).fill(0x01),
      new Uint8Array([0x09, 0x80]),
      (() => {
        const body = encode({ v: 2, type: "agent.unknown", trace: "t" });
        return new Uint8Array([FRAME_KIND_CONTROL, ...body]);
      })(),
      new Uint8Array([FRAME_KIND_CONTROL, 0xd7, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]),
    ];
    for (const bytes of cases) {
      const c = await connect(t.token);
      if (!c.conn) throw new Error("no connection");
      c.conn.ws.send(bytes);
      expect((await c.conn.closed).code).toBe(CLOSE.malformed);
    }
    expect(decode(encode({ ok: 1 }))).toEqual({ ok: 1 });
  });

  it("anything before agent.hello closes the connection as a protocol error", async () => {
    const model = await makeModel();
    const t = await token([model]);
    const c = await connect(t.token);
    if (!c.conn) throw new Error("no connection");
    c.conn.send({ v: 2, type: "work.request", trace: "t", credits: 1 });
    expect((await c.conn.closed).code).toBe(CLOSE.protocol);
  });

  it("a second agent.hello on a connection closes it with 4402 and changes nothing: its leases resume on a new connection", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const { conn, id, t } = await welcomed(model);
    const lease = await leaseOne(conn);
    expect(lease.job_id).toBe(job.id);
    // Naming no leases, as a first start would: were it taken, the job would go back to its queue.
    conn.send(hello(id));
    expect((await within(conn.closed, 3000, "a second hello")).code).toBe(CLOSE.protocol);
    const view = await call<{ status: string; attempts: unknown[] }>("GET", `/v1/jobs/${job.id}`, { key: acct.key });
    expect(view.body).toMatchObject({ status: "running", attempts: [{ epoch: lease.epoch, outcome: "running" }] });
    const again = await connect(t.token, id);
    if (!again.conn) throw new Error("no connection");
    again.conn.send(hello(id, [{ job_id: job.id, epoch: lease.epoch }]));
    expect(await again.conn.next("agent.welcome")).toMatchObject({
      resumed: [{ job_id: job.id, epoch: lease.epoch }],
      stale: [],
    });
    again.conn.ws.close(1000, "done");
  });

  it("revoking a token closes its live agents with 4401 and fences their leases", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const { conn, t } = await welcomed(model);
    conn.send({ v: 2, type: "work.request", trace: "t", credits: 1 });
    await conn.next("job.leases");
    expect((await call("DELETE", `/v1/admin/agent-tokens/${t.id}`, { key: ADMIN })).status).toBe(204);
    expect((await conn.closed).code).toBe(CLOSE.unauthorized);
    expect((await call("GET", `/v1/jobs/${job.id}`, { key: acct.key })).body).toMatchObject({ status: "queued" });
  });

  it("admins see connected agents with their pool, slots and last heartbeat", async () => {
    const model = await makeModel();
    const { conn, id } = await welcomed(model);
    await new Promise((r) => setTimeout(r, 50));
    const r = await call<{ agents: { agent_id: string; pool: string; slots: number }[] }>("GET", "/v1/admin/agents", {
      key: ADMIN,
    });
    expect(r.body.agents.find((a) => a.agent_id === id)).toMatchObject({ pool: "test", slots: 2 });
    conn.ws.close(1000, "done");
  });

  it("leases held over a reconnect are resumed; others come back stale", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const t = await token([model]);
    const first = await connect(t.token);
    if (!first.conn) throw new Error("no connection");
    first.conn.send(hello(first.id));
    await first.conn.next("agent.welcome");
    first.conn.send({ v: 2, type: "work.request", trace: "t", credits: 1 });
    const lease = ((await first.conn.next("job.leases")) as { leases: LeaseGrant[] }).leases[0] as LeaseGrant;
    first.conn.ws.close(1000, "network blip");
    const second = await connect(t.token, first.id);
    if (!second.conn) throw new Error("no connection");
    const ghost = { job_id: `job_${"1".repeat(30)}`, epoch: 1 };
    second.conn.send(hello(first.id, [{ job_id: job.id, epoch: lease.epoch }, ghost]));
    const welcome = await second.conn.next("agent.welcome");
    expect(welcome).toMatchObject({ resumed: [{ job_id: job.id, epoch: lease.epoch }], stale: [ghost] });
    second.conn.ws.close(1000, "done");
  });

  it("another live process presenting an agent id is refused with 4410; the first keeps its connection", async () => {
    const model = await makeModel();
    const { conn, id, t } = await welcomed(model);
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const lease = await leaseOne(conn);
    const clone = await connect(t.token, id, "clone-of-a-machine-image");
    if (!clone.conn) throw new Error("no connection");
    // What the clone says before its close arrives changes nothing: its hello names no lease.
    clone.conn.send(hello(id));
    const refused = await clone.conn.closed;
    expect(refused.code).toBe(CLOSE.id_in_use);
    expect(refused.reason).toMatch(/in use by another live agent process/);
    // The first agent is untouched: it still gets answers.
    const held = [{ job_id: job.id, epoch: lease.epoch }];
    conn.send(heartbeat(held));
    expect(await conn.next("agent.heartbeat_ack")).toMatchObject({ stale: [] });
    expect((await call("GET", `/v1/jobs/${job.id}`, { key: acct.key })).body).toMatchObject({ status: "running" });
    conn.ws.close(1000, "done");
  });

  it("the same agent process reconnecting takes its id's connection over and resumes its leases", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const { conn, id, t } = await welcomed(model);
    const lease = await leaseOne(conn);
    // A network drop the edge has not noticed yet: the old socket still looks open.
    const again = await connect(t.token, id);
    if (!again.conn) throw new Error("no connection");
    expect((await conn.closed).code).toBe(CLOSE.replaced);
    again.conn.send(hello(id, [{ job_id: job.id, epoch: lease.epoch }]));
    expect(await again.conn.next("agent.welcome")).toMatchObject({
      resumed: [{ job_id: job.id, epoch: lease.epoch }],
      stale: [],
    });
    again.conn.ws.close(1000, "done");
  });

  it("a connection that never says hello is closed with 4408 and leaves nothing stored", async () => {
    const { runInDurableObject } = await import("cloudflare:test");
    const model = await makeModel();
    const t = await token([model]);
    const c = await connect(t.token);
    if (!c.conn) throw new Error("no connection");
    const stub = env.AGENT.get(env.AGENT.idFromName(c.id));
    const stored = async (): Promise<unknown[]> =>
      await runInDurableObject(stub, async (_i, state) => [
        await state.storage.get("agent"),
        await state.storage.getAlarm(),
        // Not a table of any kind, workerd's own included.
        state.storage.sql.exec("SELECT name FROM sqlite_master").toArray(),
      ]);
    expect(await stored()).toEqual([undefined, null, []]);
    const closed = await c.conn.closed;
    expect(closed.code).toBe(CLOSE.hello_timeout);
    expect(await stored()).toEqual([undefined, null, []]);
  }, 30_000);

  it("jobs pinned round-robin to the versions of three agents each run only on the agent serving their version", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const t = await token([model]);
    const versions = ["2026-12-01.1", "2026-12-01.2", "2026-12-01.3"];
    const agents = await Promise.all(
      versions.map(async (version) => {
        const c = await connect(t.token);
        if (!c.conn) throw new Error("no connection");
        c.conn.send(hello(c.id, [], [{ model, version }]));
        await c.conn.next("agent.welcome");
        return { conn: c.conn, id: c.id, version };
      }),
    );
    // Several rounds, so pushes to parked agents, work requests and requeues all get their turn.
    for (let round = 0; round < 4; round++) {
      for (const a of agents) a.conn.send({ v: 2, type: "work.request", trace: "t", credits: 3 });
      const jobs: { id: string; version: string }[] = [];
      for (let i = 0; i < 9; i++) {
        const version = versions[i % 3] as string;
        const r = await call<{ id: string }>("POST", `/v1/models/${model}/jobs`, {
          key: acct.key,
          body: { input: { prompt: `job ${i}` }, version },
        });
        expect(r.status).toBe(202);
        jobs.push({ id: r.body.id, version });
      }
      for (const a of agents) {
        const leases: LeaseGrant[] = [];
        while (leases.length < 3)
          leases.push(...((await a.conn.next("job.leases")) as { leases: LeaseGrant[] }).leases);
        expect(leases.map((l) => l.version)).toEqual([a.version, a.version, a.version]);
        for (const l of leases) {
          expect(jobs.find((j) => j.id === l.job_id)?.version).toBe(a.version);
          // Give every other lease back (drained): a requeue must find the same agent again.
          const held = round % 2 === 1 ? await releaseAndTakeBack(a.conn, l, acct.key) : [l];
          expect(held.map((g) => [g.job_id, g.version])).toEqual([[l.job_id, a.version]]);
          l.epoch = (held[0] as LeaseGrant).epoch;
          a.conn.send(succeeded({ job_id: l.job_id, epoch: l.epoch }, []));
        }
      }
      for (const j of jobs) {
        // Which agent ran an attempt is for admins to see.
        const read = async () =>
          await call<{ status: string; attempts: { agent: string; version: string }[] }>(
            "GET",
            `/v1/admin/jobs/${j.id}`,
            { key: ADMIN },
          );
        let view = await read();
        // The next round's requests for work count on these completions having landed.
        for (let i = 0; i < 200 && view.body.status !== "succeeded"; i++) {
          await new Promise((r) => setTimeout(r, 20));
          view = await read();
        }
        expect(view.body.status).toBe("succeeded");
        const holder = agents.find((a) => a.version === j.version);
        expect(view.body.attempts.every((x) => x.agent === holder?.id && x.version === j.version)).toBe(true);
      }
    }
    for (const a of agents) a.conn.ws.close(1000, "done");
  }, 60_000);
});

it("the codec used by the actors rejects non-plain values", () => {
  expect(() => decode(new Uint8Array([0xd6, 0xff, 0, 0, 0, 1]))).toThrow(/not plain data/);
  void env;
});
