/**
 * Floods and forgeries that cost nothing: requests that authenticate as no one, or name
 * accounts, models or shards that do not exist, leave no actor storage behind (observed as the
 * Durable Objects workerd keeps on disk, and as the tables inside an actor); refusals are rate
 * limited per client address and agent routes per token; a stream token lives no longer than the
 * key that minted it and counts against its account's rate limit; subscribers are capped per job
 * and per account.
 */
import { env, exports } from "cloudflare:workers";
import { listDurableObjectIds, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { MAX_STREAMS_PER_ACCOUNT, MAX_STREAMS_PER_JOB } from "../../shared/events.ts";
import { newId, newJobId, newSecret, parseJobId, schedulerName } from "../../shared/ids.ts";
import { API_KEY_PREFIX } from "../../shared/keys.ts";
import type { AccountActor, Remote, SchedulerActor } from "../../mesh/index.ts";
import { agentId, heartbeat, succeeded, token, welcomed } from "./agent-helpers.ts";
import { allowed, REFUSAL_MEMORY_MS } from "../../edge/ratelimit.ts";
import { ADMIN, call, makeAccount, makeModel, submit } from "./helpers.ts";

let address = 0;
/** A client address of its own (TEST-NET-3), so one test's refusals do not limit another's. */
function freshAddress(): string {
  address += 1;
  return `203.0.113.${address}`;
}

interface Reply {
  status: number;
  code: string | undefined;
  retryAfter: string | null;
}

async function ask(
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: unknown,
): Promise<Reply & { res?: Response }> {
  const res = await exports.default.fetch(
    new Request(`http://edge.test${path}`, {
      method,
      headers: body === undefined ? headers : { ...headers, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    }),
  );
  const retryAfter = res.headers.get("retry-after");
  if (res.webSocket || res.headers.get("content-type")?.startsWith("text/event-stream")) {
    return { status: res.status, code: undefined, retryAfter, res };
  }
  const parsed = (await res.json().catch(() => ({}))) as { error?: { code: string } };
  return { status: res.status, code: parsed.error?.code, retryAfter };
}

const bearer = (k: string): Record<string, string> => ({ authorization: `Bearer ${k}` });

/** A key shaped like a real one (with or without the MAC segment), minted by no one. */
function randomKey(withMac: boolean): string {
  const body = `${API_KEY_PREFIX}${newId("acc").slice(4)}.${newId("key").slice(4)}.${newSecret(24)}`;
  return withMac ? `${body}.${newSecret(16).slice(0, 22)}` : body;
}

/** The tables inside an actor (none for one that never wrote). */
async function tablesOf(ns: DurableObjectNamespace, name: string): Promise<string[]> {
  return await runInDurableObject(ns.get(ns.idFromName(name)) as DurableObjectStub, (_i, state) =>
    state.storage.sql
      .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_cf_%'")
      .toArray()
      .map((t) => t.name),
  );
}

/** An upload start with a body that fails its schema: refused after the agent's authentication. */
function uploadStart(tok: string): Promise<Reply> {
  return ask("POST", "/v1/agent/uploads", { ...bearer(tok), "x-floodgate-agent": agentId() }, { job_id: "nope" });
}

async function streamTokenFor(job: string, key: string): Promise<string> {
  const t = await call<{ token: string }>("POST", `/v1/jobs/${job}/stream-token`, { key });
  if (t.status !== 201) throw new Error(`stream token: ${t.status}`);
  return t.body.token;
}

describe("nothing is written for an unknown account, model or shard", () => {
  it("requests with random well-formed keys are 401 and create no account actor", async () => {
    const before = (await listDurableObjectIds(env.ACCOUNT)).length;
    const from = { "cf-connecting-ip": freshAddress() };
    const answers = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const key = randomKey(i % 2 === 0);
      const r = await ask(i % 4 < 2 ? "GET" : "POST", i % 4 < 2 ? "/v1/jobs" : "/v1/jobs/x/cancel", {
        ...bearer(key),
        ...from,
      });
      answers.add(`${r.status} ${r.code}`);
    }
    expect([...answers]).toEqual(["401 unauthorized"]);
    expect((await listDurableObjectIds(env.ACCOUNT)).length).toBe(before);
  });

  it("job ids naming a model or shard that does not exist are 404 job_not_found and reach no scheduler", async () => {
    const model = await makeModel();
    const acct = await makeAccount("api");
    const { body: job } = await submit(model, acct.key);
    const route = parseJobId(job.id);
    if (!route) throw new Error("bad job id");
    const t = await token([model]);
    const agent = { ...bearer(t.token), "x-floodgate-agent": agentId() };
    const before = (await listDurableObjectIds(env.SCHEDULER)).length;
    const crafted = [
      newJobId({ modelNumber: 32_000, shard: 0 }),
      newJobId({ modelNumber: route.modelNumber, shard: 1 }),
      newJobId({ modelNumber: route.modelNumber, shard: 31 }),
    ];
    const rows: string[] = [];
    for (const id of crafted) {
      for (const [method, path] of [
        ["GET", `/v1/jobs/${id}`],
        ["POST", `/v1/jobs/${id}/cancel`],
        ["DELETE", `/v1/jobs/${id}`],
        ["GET", `/v1/jobs/${id}/events`],
        ["POST", `/v1/jobs/${id}/stream-token`],
      ] as const) {
        const r = await ask(method, path, bearer(acct.key));
        rows.push(`${method} ${path.replace(id, "{id}")} → ${r.status} ${r.code}`);
      }
      const up = await ask("POST", "/v1/agent/uploads", agent, {
        job_id: id,
        epoch: 1,
        name: "x.bin",
        content_type: "image/png",
        size: 1,
      });
      rows.push(`upload start → ${up.status} ${up.code}`);
    }
    expect(new Set(rows.map((r) => r.split(" → ")[1]))).toEqual(new Set(["404 job_not_found", "409 stale_lease"]));
    expect(rows.filter((r) => r.startsWith("upload")).every((r) => r.endsWith("409 stale_lease"))).toBe(true);
    expect((await listDurableObjectIds(env.SCHEDULER)).length).toBe(before);
    // The real job's shard is still reached.
    expect((await ask("GET", `/v1/jobs/${job.id}`, bearer(acct.key))).status).toBe(200);
  });

  it("an agent's results, releases and progress naming jobs of models or shards that do not exist are answered lease.stale and reach no scheduler", async () => {
    const model = await makeModel();
    const { conn } = await welcomed(model);
    const before = (await listDurableObjectIds(env.SCHEDULER)).length;
    const refs = Array.from({ length: 10 }, (_, i) => ({
      job_id: newJobId({ modelNumber: 30_000 + i, shard: (i * 7) % 32 }),
      epoch: 1,
    }));
    conn.send({ v: 2, type: "job.release", trace: "t", leases: refs, reason: "preempted" });
    for (const r of refs) {
      conn.send(succeeded(r));
      conn.send({ v: 2, type: "job.progress", trace: "t", ...r, phase: "sampling", step: 1, total: 2 });
    }
    for (let i = 0; i < 2 * refs.length; i++) await conn.next("lease.stale");
    // The agent's own shard still answers it: the connection is whole.
    conn.send(heartbeat([], 0));
    await conn.next("agent.heartbeat_ack");
    expect((await listDurableObjectIds(env.SCHEDULER)).length).toBe(before);
    conn.ws.close(1000, "done");
  });

  it("a scheduler or account actor that is only read (made-up jobs, leases, keys) makes no tables", async () => {
    const shard = schedulerName({ modelNumber: 31_999, shard: 7 });
    const s = env.SCHEDULER.get(env.SCHEDULER.idFromName(shard)) as unknown as Remote<SchedulerActor>;
    const id = newJobId({ modelNumber: 31_999, shard: 7 });
    const ref = { job_id: id, epoch: 1 };
    expect(await s.view(id, "acc_0000000000000000")).toMatchObject({ ok: false, code: "job_not_found" });
    expect(await s.adminView(id)).toMatchObject({ ok: false, code: "job_not_found" });
    expect(await s.cancel(id, "acc_0000000000000000")).toMatchObject({ ok: false, code: "job_not_found" });
    expect(await s.remove(id, "acc_0000000000000000")).toMatchObject({ ok: false, code: "job_not_found" });
    expect(await s.list("acc_0000000000000000", undefined, 10, undefined)).toEqual([]);
    expect(await s.leaseOf(id)).toBeNull();
    const agent = { id: "agt_x", pool: "p" };
    expect(await s.heartbeat(agent, [ref], 0, 0)).toMatchObject({ renewed: [], stale: [ref] });
    expect(await s.rejoin("agt_x", [ref], Date.now())).toMatchObject({ renewed: [], stale: [ref] });
    expect(await s.uploadStarting(ref, "agt_x")).toBe(false);
    const settled = await s.settle(agent, [{ ...ref, result: { status: "succeeded", outputs: [] } }], 0, 0);
    expect(settled.outcomes).toMatchObject([{ ok: false }]);
    expect(await s.lease({ id: "agt_x", pool: "p" }, 1)).toEqual([]);
    expect(await s.release("agt_x", "worker_lost")).toBe(0);
    expect(await s.stats()).toMatchObject({ tiers: [], configured: false });
    expect(await tablesOf(env.SCHEDULER, shard)).toEqual([]);

    const accountId = newId("acc");
    const a = env.ACCOUNT.get(env.ACCOUNT.idFromName(accountId)) as unknown as Remote<AccountActor>;
    expect(await a.authenticate(newId("key"), "0".repeat(64))).toBeNull();
    expect(await a.principal(newId("key"))).toBeNull();
    expect(await a.info()).toMatchObject({ ok: false, code: "account_not_found" });
    expect(await a.revokeKey(newId("key"))).toMatchObject({ ok: false, code: "account_not_found" });
    expect(await tablesOf(env.ACCOUNT, accountId)).toEqual([]);
  });
});

describe("rate limits before authentication", () => {
  it("a refusal is remembered for a moment: a key far past its limit costs one binding call, not one per request", async () => {
    let asked = 0;
    let open = false;
    const binding = {
      limit: async () => {
        asked++;
        return { success: open };
      },
    } as unknown as RateLimit;
    const key = `k-${crypto.randomUUID()}`;
    expect(await allowed(binding, "test", key)).toBe(false);
    for (let i = 0; i < 100; i++) expect(await allowed(binding, "test", key)).toBe(false);
    expect(asked).toBe(1);
    // Another key, or the same key in another scope, is asked for.
    expect(await allowed(binding, "test", `${key}-other`)).toBe(false);
    expect(await allowed(binding, "other scope", key)).toBe(false);
    expect(asked).toBe(3);
    // Once the moment passed, the binding decides again.
    open = true;
    await new Promise((r) => setTimeout(r, REFUSAL_MEMORY_MS + 50));
    expect(await allowed(binding, "test", key)).toBe(true);
    expect(asked).toBe(4);
  });

  it("a flood of bad keys from one address gets 429 rate_limited with Retry-After; other addresses and valid keys are still answered", async () => {
    const flooder = { "cf-connecting-ip": freshAddress() };
    const acct = await makeAccount("api");
    let limited: Reply | undefined;
    let refused = 0;
    // The limit's window is the clock's minute: within two windows' worth, one must be full.
    for (let i = 0; i < 1300 && !limited; i++) {
      const r = await ask("GET", "/v1/jobs", { ...bearer(randomKey(true)), ...flooder });
      if (r.status === 429) limited = r;
      else refused++;
    }
    expect(refused).toBeGreaterThan(0);
    expect(limited).toMatchObject({ status: 429, code: "rate_limited" });
    expect(Number(limited?.retryAfter)).toBeGreaterThan(0);
    // Every kind of bad credential from that address is limited alike.
    expect(await ask("GET", "/v1/jobs", flooder)).toMatchObject({ status: 429, code: "rate_limited" });
    expect(await ask("GET", "/v1/admin/queues", { ...bearer("not-the-admin-key"), ...flooder })).toMatchObject({
      status: 429,
    });
    expect(await ask("GET", "/v1/agent/connect", { ...bearer("not.a.token"), ...flooder })).toMatchObject({
      status: 429,
    });
    // Another address is refused for its key, not limited; a valid key is served from either.
    expect(
      await ask("GET", "/v1/jobs", { ...bearer(randomKey(true)), "cf-connecting-ip": freshAddress() }),
    ).toMatchObject({ status: 401, code: "unauthorized" });
    expect((await ask("GET", "/v1/jobs", { ...bearer(acct.key), ...flooder })).status).toBe(200);
  }, 120_000);

  it("agent routes are rate limited per agent token, before the registry is asked", async () => {
    const model = await makeModel();
    const busy = await token([model]);
    const calm = await token([model]);
    expect(await uploadStart(busy.token)).toMatchObject({ status: 400, code: "invalid_body" });
    // Spend the token's allowance directly, then ask through the route; the limit's window is
    // the clock's ten seconds, so a window that turned meanwhile gets spent again.
    let limited: Reply | undefined;
    for (let round = 0; round < 3 && !limited; round++) {
      let spent = false;
      while (!spent) {
        const batch = await Promise.all(Array.from({ length: 50 }, () => env.RL_AGENT.limit({ key: busy.id })));
        spent = batch.some((b) => !b.success);
      }
      const r = await uploadStart(busy.token);
      if (r.status === 429) limited = r;
    }
    expect(limited).toMatchObject({ status: 429, code: "rate_limited" });
    expect(Number(limited?.retryAfter)).toBeGreaterThan(0);
    expect(await uploadStart(calm.token)).toMatchObject({ status: 400, code: "invalid_body" });
  }, 60_000);
});

describe("stream tokens and subscriber caps", () => {
  it("a stream token stops working when the key that minted it is revoked", async () => {
    const model = await makeModel();
    const acct = await makeAccount("api");
    const second = await call<{ key_id: string; api_key: string }>("POST", `/v1/admin/accounts/${acct.id}/keys`, {
      key: ADMIN,
    });
    const { body: job } = await submit(model, acct.key);
    const fromRevoked = await streamTokenFor(job.id, second.body.api_key);
    const fromLive = await streamTokenFor(job.id, acct.key);
    const open = async (tok: string): Promise<number> => {
      const r = await ask("GET", `/v1/jobs/${job.id}/events?token=${tok}`, {});
      await r.res?.body?.cancel();
      return r.status;
    };
    expect(await open(fromRevoked)).toBe(200);
    await call("DELETE", `/v1/admin/accounts/${acct.id}/keys/${second.body.key_id}`, { key: ADMIN });
    expect(await open(fromRevoked)).toBe(401);
    expect(await open(fromLive)).toBe(200);
  });

  it("opening a job's events with a stream token counts against the account's rate limit", async () => {
    const model = await makeModel();
    const acct = await makeAccount("free", 60);
    const { body: job } = await submit(model, acct.key);
    await call("POST", `/v1/jobs/${job.id}/cancel`, { key: acct.key });
    const tok = await streamTokenFor(job.id, acct.key);
    let limited: Reply | undefined;
    for (let i = 0; i < 200 && !limited; i++) {
      const r = await ask("GET", `/v1/jobs/${job.id}/events?token=${tok}`, {});
      await r.res?.body?.cancel();
      if (r.status === 429) limited = r;
    }
    expect(limited).toMatchObject({ status: 429, code: "rate_limited" });
    expect(Number(limited?.retryAfter)).toBeGreaterThan(0);
  }, 60_000);

  it(`a job takes ${MAX_STREAMS_PER_JOB} subscribers at once; the next is 429 too_many_streams until one leaves`, async () => {
    const model = await makeModel();
    const acct = await makeAccount("api", 60_000);
    const { body: job } = await submit(model, acct.key);
    const tok = await streamTokenFor(job.id, acct.key);
    const readers: ReadableStreamDefaultReader<Uint8Array>[] = [];
    const sockets: WebSocket[] = [];
    for (let i = 0; i < MAX_STREAMS_PER_JOB; i++) {
      // Subscribers by key and by token, SSE and WebSocket, all count.
      const r =
        i % 10 === 9
          ? await ask("GET", `/v1/jobs/${job.id}/events`, { ...bearer(acct.key), upgrade: "websocket" })
          : await ask("GET", `/v1/jobs/${job.id}/events${i % 2 ? `?token=${tok}` : ""}`, i % 2 ? {} : bearer(acct.key));
      if (r.res?.webSocket) {
        r.res.webSocket.accept();
        sockets.push(r.res.webSocket);
      } else if (r.res?.body) {
        const reader = r.res.body.getReader();
        await reader.read();
        readers.push(reader);
      }
      if (r.status !== 200 && r.status !== 101) throw new Error(`subscriber ${i}: ${r.status} ${r.code}`);
    }
    const refused = await ask("GET", `/v1/jobs/${job.id}/events`, bearer(acct.key));
    expect(refused).toMatchObject({ status: 429, code: "too_many_streams" });
    expect(Number(refused.retryAfter)).toBeGreaterThan(0);
    expect(await ask("GET", `/v1/jobs/${job.id}/events?token=${tok}`, {})).toMatchObject({
      status: 429,
      code: "too_many_streams",
    });
    await readers[0]?.cancel();
    const deadline = Date.now() + 5_000;
    let again: Reply & { res?: Response };
    for (;;) {
      again = await ask("GET", `/v1/jobs/${job.id}/events`, bearer(acct.key));
      if (again.status === 200 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(again.status).toBe(200);
    await again.res?.body?.cancel();
    for (const r of readers.slice(1)) await r.cancel();
    for (const ws of sockets) ws.close(1000, "done");
  }, 60_000);

  it("an account holding its most streams across its jobs is refused another, on any job, until it holds fewer", async () => {
    const model = await makeModel();
    const acct = await makeAccount("api", 60_000);
    const { body: job } = await submit(model, acct.key);
    const account = env.ACCOUNT.get(env.ACCOUNT.idFromName(acct.id)) as unknown as Remote<AccountActor>;
    // Another job of the account's holds all it may.
    const elsewhere = newJobId({ modelNumber: 0, shard: 0 });
    expect(await account.admitStreams(elsewhere, MAX_STREAMS_PER_ACCOUNT)).toBe(true);
    const refused = await ask("GET", `/v1/jobs/${job.id}/events`, bearer(acct.key));
    expect(refused).toMatchObject({ status: 429, code: "too_many_streams" });
    await account.reportStreams(elsewhere, MAX_STREAMS_PER_ACCOUNT - 1);
    const admitted = await ask("GET", `/v1/jobs/${job.id}/events`, bearer(acct.key));
    expect(admitted.status).toBe(200);
    const reader = admitted.res?.body?.getReader();
    await reader?.read();
    // The job's one subscriber is now counted: the account is full again.
    expect(await account.admitStreams(newJobId({ modelNumber: 0, shard: 0 }), 1)).toBe(false);
    await reader?.cancel();
  });

  it("a subscriber that leaves gives its place back to the account", async () => {
    const model = await makeModel();
    const acct = await makeAccount("api", 60_000);
    const { body: job } = await submit(model, acct.key);
    const account = env.ACCOUNT.get(env.ACCOUNT.idFromName(acct.id)) as unknown as Remote<AccountActor>;
    const open = await ask("GET", `/v1/jobs/${job.id}/events`, bearer(acct.key));
    const reader = open.res?.body?.getReader();
    await reader?.read();
    const other = newJobId({ modelNumber: 0, shard: 0 });
    expect(await account.admitStreams(other, MAX_STREAMS_PER_ACCOUNT)).toBe(false);
    await reader?.cancel();
    const deadline = Date.now() + 5_000;
    while (!(await account.admitStreams(other, MAX_STREAMS_PER_ACCOUNT))) {
      if (Date.now() > deadline) throw new Error("the account never heard that the subscriber left");
      await new Promise((r) => setTimeout(r, 20));
    }
  });
});
