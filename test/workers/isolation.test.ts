/**
 * Tenant isolation: every route that takes an id, asked by every kind of caller. Only the owner
 * (or, for uploads, the agent holding the job's current lease epoch) succeeds; everyone else
 * gets 401, 403 or 404 (409 `stale_lease` for agents without the lease), and the answer for an
 * existing id is the answer for a non-existent id of the same shape, so an id's existence never
 * leaks. Keys are stored hashed (every actor's storage is dumped and searched). The rate limit
 * (429 with Retry-After) is proven in admin.test.ts.
 */
import { env, exports } from "cloudflare:workers";
import { decodeJwt, importJWK, SignJWT, type JWK } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { parseJobId, schedulerName } from "../../shared/ids.ts";
import { sha256Hex } from "../../shared/keys.ts";
import { sign, signedOutputUrl, signedPreviewUrl, streamToken } from "../../shared/signing.ts";
import { AGENT_TOKEN_AUDIENCE, AGENT_TOKEN_ISSUER, AGENT_TOKEN_TYPE } from "../../shared/tokens.ts";
import { FRAME_KIND_PREVIEW, type LeaseGrant } from "../../shared/wire.ts";
import { encode } from "../../shared/codec.ts";
import { agentId, connect, hello, sha256Of, succeeded, token, type Conn } from "./agent-helpers.ts";
import { ADMIN, call, makeAccount, makeModel, submit } from "./helpers.ts";
import { events, readSse } from "./sse.ts";

const ORIGIN = "http://edge.test";
const SECRET = env.FILE_SIGNING_KEY ?? "";

interface Reply {
  status: number;
  code: string | undefined;
  message: string | undefined;
  contentType: string | null;
}

/** One request through the Worker; a streaming answer (SSE, WebSocket) is closed unread. */
async function ask(method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Reply> {
  const h: Record<string, string> = { ...headers };
  if (body !== undefined) h["content-type"] = "application/json";
  const res = await exports.default.fetch(
    new Request(`${ORIGIN}${path}`, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
    }),
  );
  const contentType = res.headers.get("content-type");
  if (res.webSocket) {
    res.webSocket.accept();
    res.webSocket.close(1000, "done");
    return { status: res.status, code: undefined, message: undefined, contentType };
  }
  if (contentType?.startsWith("text/event-stream") || !contentType?.includes("json")) {
    await res.body?.cancel();
    return { status: res.status, code: undefined, message: undefined, contentType };
  }
  const parsed = (await res.json()) as { error?: { code: string; message: string } };
  return { status: res.status, code: parsed.error?.code, message: parsed.error?.message, contentType };
}

/** A non-existent id of the same shape: same time, model and shard, other random part. */
function ghostOf(id: string): string {
  const ghost = `${id.slice(0, 14)}${"0".repeat(16)}${id.slice(30)}`;
  if (ghost === id || !parseJobId(ghost)) throw new Error(`cannot make a ghost of ${id}`);
  return ghost;
}

/** An answer with the id it names replaced, to compare answers about two ids. */
function normal(r: Reply, ...ids: string[]): Reply {
  let message = r.message;
  for (const id of ids) message = message?.replaceAll(id, "<id>");
  return { ...r, message };
}

const bearer = (k: string): Record<string, string> => ({ authorization: `Bearer ${k}` });

/** An agent token around a live token's jti, re-signed with the active key and changed claims. */
async function resigned(live: string, patch: Record<string, number>): Promise<string> {
  const set = JSON.parse(env.AGENT_SIGNING_KEYS) as { active: string; keys: (JWK & { kid: string })[] };
  const jwk = set.keys.find((k) => k.kid === set.active) as JWK;
  const c = decodeJwt(live);
  return await new SignJWT({ pool: c.pool, models: c.models })
    .setProtectedHeader({ alg: "EdDSA", kid: set.active, typ: AGENT_TOKEN_TYPE })
    .setIssuer(AGENT_TOKEN_ISSUER)
    .setAudience(AGENT_TOKEN_AUDIENCE)
    .setSubject(String(c.sub))
    .setJti(String(c.jti))
    .setIssuedAt(patch.iat ?? Number(c.iat))
    .setNotBefore(patch.nbf ?? Number(c.nbf))
    .setExpirationTime(patch.exp ?? Number(c.exp))
    .sign(await importJWK(jwk, "EdDSA"));
}

interface World {
  owner: { id: string; key: string; keyId: string };
  other: { id: string; key: string; keyId: string };
  revokedKey: string;
  running: string;
  done: string;
  epoch: number;
  agent: { conn: Conn; id: string; token: string };
  peer: { id: string; token: string };
  foreign: { id: string; token: string };
  revokedAgent: string;
  expiredAgent: string;
  streamForSpare: string;
  streamOfOther: string;
  expiredStream: string;
  fileKey: string;
  fileUrl: string;
  previewUrl: string;
}

let w: World;

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  const model = await makeModel();
  const otherModel = await makeModel();
  const owner = await makeAccount("api");
  const other = await makeAccount("api");
  const second = await call<{ key_id: string; api_key: string }>("POST", `/v1/admin/accounts/${owner.id}/keys`, {
    key: ADMIN,
  });
  await call("DELETE", `/v1/admin/accounts/${owner.id}/keys/${second.body.key_id}`, { key: ADMIN });
  const running = (await submit(model, owner.key)).body.id;
  const done = (await submit(model, owner.key)).body.id;

  // Agent A takes both jobs: one stays running (with a preview), the other succeeds with a file.
  const t = await token([model]);
  const a = await connect(t.token);
  if (!a.conn) throw new Error("no connection");
  a.conn.send(hello(a.id));
  await a.conn.next("agent.welcome");
  a.conn.send({ v: 2, type: "work.request", trace: "t", credits: 2 });
  const leases = new Map<string, LeaseGrant>();
  while (leases.size < 2) {
    for (const l of ((await a.conn.next("job.leases")) as { leases: LeaseGrant[] }).leases) leases.set(l.job_id, l);
  }
  const lr = leases.get(running) as LeaseGrant;
  const ld = leases.get(done) as LeaseGrant;
  // A preview is kept for a job somebody watches: the owner follows the running job's events.
  const watching = await events(running, owner.key);
  const preview = encode({
    v: 2,
    type: "job.preview",
    trace: "t",
    job_id: running,
    epoch: lr.epoch,
    content_type: "image/png",
    data: new Uint8Array([137, 80, 78, 71]),
  });
  a.conn.ws.send(new Uint8Array([FRAME_KIND_PREVIEW, ...preview]));
  await readSse(watching, (e) => e.event === "preview");
  const agentHeaders = { ...bearer(t.token), "x-floodgate-agent": a.id };
  const bytes = new TextEncoder().encode("only for the owner");
  const start = await call<{ upload_id: string; key: string }>("POST", "/v1/agent/uploads", {
    body: { job_id: done, epoch: ld.epoch, name: "result.txt", content_type: "text/plain", size: bytes.length },
    headers: agentHeaders,
  });
  const part = await exports.default.fetch(
    new Request(
      `${ORIGIN}/v1/agent/uploads/${start.body.upload_id}/parts/1?key=${encodeURIComponent(start.body.key)}`,
      {
        method: "PUT",
        headers: agentHeaders,
        body: bytes,
      },
    ),
  );
  const { etag } = (await part.json()) as { etag: string };
  const record = await call<Record<string, unknown>>("POST", `/v1/agent/uploads/${start.body.upload_id}/complete`, {
    body: { key: start.body.key, parts: [{ part_number: 1, etag }], size: bytes.length, sha256: await sha256Of(bytes) },
    headers: agentHeaders,
  });
  a.conn.send(succeeded({ job_id: done, epoch: ld.epoch }, [record.body as never]));
  const fileUrl = await until("the output URL", async () => {
    const v = await call<{ outputs: { url: string }[] | null }>("GET", `/v1/jobs/${done}`, { key: owner.key });
    return v.body.outputs?.[0]?.url;
  });
  const previewUrl = await signedPreviewUrl(SECRET, ORIGIN, running);
  await until("the preview", async () => {
    const res = await exports.default.fetch(new Request(previewUrl));
    await res.body?.cancel();
    return res.status === 200 ? true : undefined;
  });

  // Submitted after agent A took its two leases, so this one stays queued.
  const otherJob = (await submit(model, other.key)).body.id;
  const peer = await token([model]);
  const foreign = await token([otherModel]);
  const revoked = await token([model]);
  await call("DELETE", `/v1/admin/agent-tokens/${revoked.id}`, { key: ADMIN });
  // Another job of the owner's, for a stream token that must open no job but its own.
  const spare = (await submit(model, owner.key)).body.id;
  const stream = await call<{ token: string }>("POST", `/v1/jobs/${spare}/stream-token`, { key: owner.key });
  const streamOther = await call<{ token: string }>("POST", `/v1/jobs/${otherJob}/stream-token`, { key: other.key });
  const now = Math.floor(Date.now() / 1000);
  w = {
    owner,
    other,
    revokedKey: second.body.api_key,
    running,
    done,
    epoch: lr.epoch,
    agent: { conn: a.conn, id: a.id, token: t.token },
    peer: { id: agentId(), token: peer.token },
    foreign: { id: agentId(), token: foreign.token },
    revokedAgent: revoked.token,
    expiredAgent: await resigned(t.token, { iat: now - 7200, nbf: now - 7200, exp: now - 60 }),
    streamForSpare: stream.body.token,
    streamOfOther: streamOther.body.token,
    expiredStream: (await streamToken(SECRET, { jobId: running, accountId: owner.id, keyId: owner.keyId }, -60)).token,
    fileKey: start.body.key,
    fileUrl,
    previewUrl,
  };
}, 30_000);

interface Route {
  name: string;
  method: string;
  path: (id: string) => string;
  headers?: Record<string, string>;
}

const JOB_ROUTES: Route[] = [
  { name: "GET /v1/jobs/{id}", method: "GET", path: (id) => `/v1/jobs/${id}` },
  { name: "POST /v1/jobs/{id}/cancel", method: "POST", path: (id) => `/v1/jobs/${id}/cancel` },
  { name: "DELETE /v1/jobs/{id}", method: "DELETE", path: (id) => `/v1/jobs/${id}` },
  { name: "GET /v1/jobs/{id}/events", method: "GET", path: (id) => `/v1/jobs/${id}/events` },
  {
    name: "GET /v1/jobs/{id}/events (WebSocket)",
    method: "GET",
    path: (id) => `/v1/jobs/${id}/events`,
    headers: { upgrade: "websocket" },
  },
  { name: "POST /v1/jobs/{id}/stream-token", method: "POST", path: (id) => `/v1/jobs/${id}/stream-token` },
];

interface Caller {
  name: string;
  headers: () => Record<string, string>;
  query?: () => string;
}

const NON_OWNERS: Caller[] = [
  { name: "another account's key", headers: () => bearer(w.other.key) },
  { name: "no key", headers: () => ({}) },
  { name: "a malformed key", headers: () => bearer("garbage") },
  { name: "a non-Bearer Authorization", headers: () => ({ authorization: `Basic ${btoa(`${w.owner.key}:`)}` }) },
  {
    name: "a forged key naming the owner's account and key id, with the owner's MAC",
    headers: () => {
      const [head, keyId, , mac] = w.owner.key.split(".");
      return bearer(`${head}.${keyId}.${"A".repeat(32)}.${mac}`);
    },
  },
  { name: "the owner's revoked key", headers: () => bearer(w.revokedKey) },
  { name: "the admin key", headers: () => bearer(ADMIN) },
  { name: "the job's own agent token", headers: () => bearer(w.agent.token) },
  { name: "a revoked agent token", headers: () => bearer(w.revokedAgent) },
  { name: "an expired agent token", headers: () => bearer(w.expiredAgent) },
  { name: "an agent token for another pool and model", headers: () => bearer(w.foreign.token) },
  { name: "a stream token for another job (?token=)", headers: () => ({}), query: () => `?token=${w.streamForSpare}` },
  { name: "a stream token for another job (Bearer)", headers: () => bearer(w.streamForSpare) },
  {
    name: "another account's stream token for its own job (?token=)",
    headers: () => ({}),
    query: () => `?token=${w.streamOfOther}`,
  },
  {
    name: "an expired stream token for this job (?token=)",
    headers: () => ({}),
    query: () => `?token=${w.expiredStream}`,
  },
  {
    name: "a tampered stream token (?token=)",
    headers: () => ({}),
    query: () => `?token=${w.streamForSpare.replace(/\.[A-Za-z0-9_-]{43}$/, `.${"A".repeat(43)}`)}`,
  },
];

describe("tenant isolation: job routes", () => {
  for (const route of JOB_ROUTES) {
    it(`${route.name}: every non-owner is refused (401/403/404), alike for an existing and a non-existent id`, async () => {
      const rows: { label: string; refused: boolean; sameAsMissing: boolean }[] = [];
      for (const target of [w.running, w.done]) {
        const ghost = ghostOf(target);
        for (const caller of NON_OWNERS) {
          const q = caller.query?.() ?? "";
          const headers = { ...route.headers, ...caller.headers() };
          const real = await ask(route.method, route.path(target) + q, headers);
          const none = await ask(route.method, route.path(ghost) + q, headers);
          rows.push({
            label: `${caller.name} → ${real.status} ${real.code ?? ""}`,
            refused: [401, 403, 404].includes(real.status) && real.code !== undefined,
            sameAsMissing: JSON.stringify(normal(real, target)) === JSON.stringify(normal(none, ghost)),
          });
        }
      }
      expect(rows.filter((r) => !r.refused || !r.sameAsMissing)).toEqual([]);
      expect(rows).toHaveLength(NON_OWNERS.length * 2);
    });
  }

  it("another account's job, a job of an unknown model and a malformed id answer alike: 404 job_not_found", async () => {
    const theirs = (await call<{ jobs: { id: string }[] }>("GET", "/v1/jobs", { key: w.other.key })).body.jobs[0]?.id;
    if (!theirs) throw new Error("the other account has no job");
    const unknownModel = `${theirs.slice(0, 26)}zzzz`;
    for (const id of [theirs, unknownModel, "job_nope", "x".repeat(300)]) {
      const r = await ask("GET", `/v1/jobs/${id}`, bearer(w.owner.key));
      expect(normal(r, id)).toEqual({
        status: 404,
        code: "job_not_found",
        message: "no job <id>",
        contentType: expect.stringContaining("json"),
      });
    }
  });
});

async function badUrls(kind: "preview" | "file", target: string): Promise<[string, string][]> {
  const base =
    kind === "preview" ? await signedPreviewUrl(SECRET, ORIGIN, target) : await signedOutputUrl(SECRET, ORIGIN, target);
  const u = new URL(base);
  const path = u.pathname;
  const exp = u.searchParams.get("exp") ?? "";
  const sig = u.searchParams.get("sig") ?? "";
  const past = Math.floor(Date.now() / 1000) - 60;
  const pastSig = await sign(SECRET, `${kind}\n${target}\n${past}`);
  const crossSig = await sign(SECRET, `${kind === "preview" ? "file" : "preview"}\n${target}\n${exp}`);
  return [
    ["no signature", path],
    ["no exp", `${path}?sig=${sig}`],
    ["a tampered signature", `${path}?exp=${exp}&sig=${sig.slice(0, -3)}AAA`],
    ["an empty signature", `${path}?exp=${exp}&sig=`],
    ["a moved exp", `${path}?exp=${Number(exp) + 1}&sig=${sig}`],
    ["an expired URL", `${path}?exp=${past}&sig=${pastSig}`],
    ["the other URL kind's signature", `${path}?exp=${exp}&sig=${crossSig}`],
    [
      "a signature by another secret",
      `${path}?exp=${exp}&sig=${await sign("not-the-secret", `${kind}\n${target}\n${exp}`)}`,
    ],
  ];
}

describe("tenant isolation: signed URLs", () => {
  it("GET /v1/jobs/{id}/preview: only a valid, unexpired signature for that job opens it, alike for any id", async () => {
    const ghost = ghostOf(w.running);
    const real = await badUrls("preview", w.running);
    const none = await badUrls("preview", ghost);
    // A valid signature for another job does not open this one.
    const forDone = new URL(await signedPreviewUrl(SECRET, ORIGIN, w.done));
    real.push(["another job's signature", `/v1/jobs/${w.running}/preview${forDone.search}`]);
    none.push(["another job's signature", `/v1/jobs/${ghost}/preview${forDone.search}`]);
    const rows: { name: string; answer: Reply; missing: Reply }[] = [];
    for (const [i, [name, path]] of real.entries()) {
      for (const headers of [{}, bearer(w.owner.key), bearer(w.other.key)]) {
        const answer = normal(await ask("GET", path, headers), w.running);
        rows.push({ name, answer, missing: normal(await ask("GET", none[i]?.[1] ?? "", headers), ghost) });
      }
    }
    // Each refused with 403, alike for a key or id that does not exist.
    const alike = (r: Reply): Reply => ({ ...r, status: 403, code: "forbidden" });
    expect(rows).toEqual(rows.map((r) => ({ ...r, answer: alike(r.missing), missing: alike(r.missing) })));
    const ok = await exports.default.fetch(new Request(w.previewUrl));
    expect(ok.status).toBe(200);
    expect(new Uint8Array(await ok.arrayBuffer())).toEqual(new Uint8Array([137, 80, 78, 71]));
  });

  it("GET /v1/files/{key}: only a valid, unexpired signature for that key opens it, alike for any key", async () => {
    const ghostKey = w.fileKey.replace(w.done, ghostOf(w.done));
    const real = await badUrls("file", w.fileKey);
    const none = await badUrls("file", ghostKey);
    const rows: { name: string; answer: Reply; missing: Reply }[] = [];
    for (const [i, [name, path]] of real.entries()) {
      for (const headers of [{}, bearer(w.owner.key), bearer(w.other.key)]) {
        const answer = await ask("GET", path, headers);
        rows.push({ name, answer, missing: await ask("GET", none[i]?.[1] ?? "", headers) });
      }
    }
    // Each refused with 403, alike for a key or id that does not exist.
    const alike = (r: Reply): Reply => ({ ...r, status: 403, code: "forbidden" });
    expect(rows).toEqual(rows.map((r) => ({ ...r, answer: alike(r.missing), missing: alike(r.missing) })));
    // A valid signature for one key opens no other key, even of the same job.
    const u = new URL(w.fileUrl);
    const sibling = `/v1/files/${w.fileKey.replace("result.txt", "other.txt")}${u.search}`;
    expect(await ask("GET", sibling)).toMatchObject({ status: 403, code: "forbidden" });
    const file = await exports.default.fetch(new Request(w.fileUrl));
    expect(await file.text()).toBe("only for the owner");
  });
});

describe("tenant isolation: agent uploads", () => {
  interface AgentCaller {
    name: string;
    headers: () => Record<string, string>;
    epoch: () => number;
    status: number;
  }
  const CALLERS: AgentCaller[] = [
    {
      name: "the lease holder at a later epoch",
      headers: () => ({ ...bearer(w.agent.token), "x-floodgate-agent": w.agent.id }),
      epoch: () => w.epoch + 1,
      status: 409,
    },
    {
      name: "another agent of the same pool",
      headers: () => ({ ...bearer(w.peer.token), "x-floodgate-agent": w.peer.id }),
      epoch: () => w.epoch,
      status: 409,
    },
    {
      name: "an agent with a token for another pool and model",
      headers: () => ({ ...bearer(w.foreign.token), "x-floodgate-agent": w.foreign.id }),
      epoch: () => w.epoch,
      status: 409,
    },
    {
      name: "the holder's id with another live token of the same pool",
      headers: () => ({ ...bearer(w.peer.token), "x-floodgate-agent": w.agent.id }),
      epoch: () => w.epoch,
      status: 403,
    },
    {
      name: "the holder's id with a token for another pool and model",
      headers: () => ({ ...bearer(w.foreign.token), "x-floodgate-agent": w.agent.id }),
      epoch: () => w.epoch,
      status: 403,
    },
    {
      name: "the holder's id with a revoked token",
      headers: () => ({ ...bearer(w.revokedAgent), "x-floodgate-agent": w.agent.id }),
      epoch: () => w.epoch,
      status: 401,
    },
    {
      name: "the holder's id with an expired token",
      headers: () => ({ ...bearer(w.expiredAgent), "x-floodgate-agent": w.agent.id }),
      epoch: () => w.epoch,
      status: 401,
    },
    {
      name: "the job owner's API key",
      headers: () => ({ ...bearer(w.owner.key), "x-floodgate-agent": w.agent.id }),
      epoch: () => w.epoch,
      status: 401,
    },
    { name: "no credentials", headers: () => ({ "x-floodgate-agent": w.agent.id }), epoch: () => w.epoch, status: 401 },
  ];

  it("POST /v1/agent/uploads: only the agent holding the job's current epoch may start one, alike for any job id", async () => {
    const ghost = ghostOf(w.running);
    const rows: { name: string; answer: Reply; missing: Reply }[] = [];
    for (const c of CALLERS) {
      const body = (job: string) => ({
        job_id: job,
        epoch: c.epoch(),
        name: "x.bin",
        content_type: "image/png",
        size: 8,
      });
      const answer = normal(await ask("POST", "/v1/agent/uploads", c.headers(), body(w.running)), w.running);
      rows.push({
        name: c.name,
        answer,
        missing: normal(await ask("POST", "/v1/agent/uploads", c.headers(), body(ghost)), ghost),
      });
    }
    expect(rows).toEqual(
      rows.map((r, i) => {
        const alike = { ...r.missing, status: CALLERS[i]?.status ?? 0 };
        return { ...r, answer: alike, missing: alike };
      }),
    );
  });

  it("parts and completes under a job's key are refused to every agent but the holder, alike for any job id", async () => {
    const ghost = ghostOf(w.running);
    const rows: { name: string; statuses: number[]; sameAsMissing: boolean }[] = [];
    for (const c of CALLERS) {
      const answers: Reply[][] = [];
      for (const job of [w.running, ghost]) {
        const key = `outputs/${job}/${c.epoch()}/x.bin`;
        const put = await exports.default.fetch(
          new Request(`${ORIGIN}/v1/agent/uploads/u1/parts/1?key=${encodeURIComponent(key)}`, {
            method: "PUT",
            headers: c.headers(),
            body: new Uint8Array(8),
          }),
        );
        const putBody = (await put.json()) as { error?: { code: string; message: string } };
        const complete = await ask("POST", "/v1/agent/uploads/u1/complete", c.headers(), {
          key,
          parts: [{ part_number: 1, etag: "e" }],
          size: 8,
          sha256: "0".repeat(64),
        });
        const asReply: Reply = {
          status: put.status,
          code: putBody.error?.code,
          message: putBody.error?.message,
          contentType: put.headers.get("content-type"),
        };
        answers.push([normal(asReply, job), normal(complete, job)]);
      }
      const [real, none] = answers as [Reply[], Reply[]];
      rows.push({
        name: c.name,
        statuses: real.map((r) => r.status),
        sameAsMissing: JSON.stringify(real) === JSON.stringify(none),
      });
    }
    expect(rows).toEqual(CALLERS.map((c) => ({ name: c.name, statuses: [c.status, c.status], sameAsMissing: true })));
  });
});

describe("tenant isolation: nothing changed, and the owner still gets everything", () => {
  it("after every refused call the jobs are as they were; then the owner and the lease holder succeed", async () => {
    const running = await call<{ status: string; attempts: { epoch: number }[] }>("GET", `/v1/jobs/${w.running}`, {
      key: w.owner.key,
    });
    expect(running.body).toMatchObject({ status: "running" });
    expect(running.body.attempts.map((a) => a.epoch)).toEqual([w.epoch]);
    const done = await call<{ status: string; outputs: unknown[] }>("GET", `/v1/jobs/${w.done}`, { key: w.owner.key });
    expect(done.body).toMatchObject({ status: "succeeded" });
    expect(done.body.outputs).toHaveLength(1);

    const own = bearer(w.owner.key);
    expect(await ask("GET", `/v1/jobs/${w.running}`, own)).toMatchObject({ status: 200 });
    const st = await call<{ token: string }>("POST", `/v1/jobs/${w.running}/stream-token`, { key: w.owner.key });
    expect(st.status).toBe(201);
    expect(await ask("GET", `/v1/jobs/${w.running}/events`, own)).toMatchObject({ status: 200 });
    expect(await ask("GET", `/v1/jobs/${w.running}/events?token=${st.body.token}`)).toMatchObject({ status: 200 });
    expect(await ask("GET", `/v1/jobs/${w.running}/events`, { ...own, upgrade: "websocket" })).toMatchObject({
      status: 101,
    });
    const holder = { ...bearer(w.agent.token), "x-floodgate-agent": w.agent.id };
    const upload = { job_id: w.running, epoch: w.epoch, name: "x.bin", content_type: "image/png", size: 8 };
    expect(await ask("POST", "/v1/agent/uploads", holder, upload)).toMatchObject({ status: 201 });
    expect(await ask("POST", `/v1/jobs/${w.running}/cancel`, own)).toMatchObject({ status: 200 });
    // Cancelling bumped the epoch: the former holder is fenced off.
    expect(await ask("POST", "/v1/agent/uploads", holder, upload)).toMatchObject({ status: 409, code: "stale_lease" });
    expect(await ask("DELETE", `/v1/jobs/${w.done}`, own)).toMatchObject({ status: 204 });
    // A deleted job answers exactly as one that never existed.
    const gone = await ask("GET", `/v1/jobs/${w.done}`, own);
    const ghost = ghostOf(w.done);
    expect(normal(gone, w.done)).toEqual(normal(await ask("GET", `/v1/jobs/${ghost}`, own), ghost));
    w.agent.conn.ws.close(1000, "done");
  });
});

describe("keys at rest", () => {
  it("API keys are stored hashed: no actor's storage holds a key or its secret in plaintext", async () => {
    const { runInDurableObject } = await import("cloudflare:test");
    const model = await makeModel();
    const acct = await makeAccount("api");
    const added = await call<{ key_id: string; api_key: string }>("POST", `/v1/admin/accounts/${acct.id}/keys`, {
      key: ADMIN,
    });
    const revoked = await call<{ key_id: string; api_key: string }>("POST", `/v1/admin/accounts/${acct.id}/keys`, {
      key: ADMIN,
    });
    await call("DELETE", `/v1/admin/accounts/${acct.id}/keys/${revoked.body.key_id}`, { key: ADMIN });
    const keys = [acct.key, added.body.api_key, revoked.body.api_key];
    const job = await submit(model, added.body.api_key, { prompt: "x" }, { "idempotency-key": "idem-1" });
    const agentToken = await token([model]);

    const dump = async (ns: DurableObjectNamespace, name: string): Promise<string> =>
      await runInDurableObject(ns.get(ns.idFromName(name)) as DurableObjectStub, async (_i, state) => {
        const tables = state.storage.sql
          .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_cf_%'")
          .toArray()
          .map((t) => t.name);
        const rows = tables.map((t) => [t, state.storage.sql.exec(`SELECT * FROM "${t}"`).toArray()]);
        const kv = [...(await state.storage.list()).entries()];
        return JSON.stringify({ tables: rows, kv });
      });
    const account = await dump(env.ACCOUNT, acct.id);
    const registry = await dump(env.REGISTRY, "global");
    const route = parseJobId(job.body.id);
    if (!route) throw new Error("bad job id");
    const sched = await dump(env.SCHEDULER, schedulerName(route));
    // The dump is real: the account's key hashes and the job are in it.
    expect(account).toContain(await sha256Hex(acct.key));
    expect(account).toContain("idem-1");
    expect(sched).toContain(job.body.id);
    for (const k of keys) {
      const secret = k.split(".")[2] ?? "";
      expect(secret).toHaveLength(32);
      for (const d of [account, registry, sched]) {
        expect(d).not.toContain(k);
        expect(d).not.toContain(secret);
      }
    }
    // Agent tokens are recorded by id only, never the signed token.
    const signature = agentToken.token.split(".")[2] ?? "";
    expect(registry).toContain(agentToken.id);
    expect(registry).not.toContain(signature);
  });
});
