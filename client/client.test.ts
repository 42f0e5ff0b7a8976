import { afterEach, describe, expect, it } from "vitest";
import { createAdminClient } from "./admin.ts";
import { createClient } from "./client.ts";
import { FloodgateApiError, FloodgateNetworkError, MalformedAnswerError } from "./errors.ts";
import { json, jobView, startServer, type TestServer } from "../test/support/http-server.ts";

const JOB = "job_0000000000aaaaaaaaaaaaaaaa0000";
const ANSWER = { id: JOB, status: "queued", model: "demo", tier: "plus", created_at: "2025-01-01T00:00:00.000Z" };

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("createClient", () => {
  it("submits the body with the key, and the idempotency key when given", async () => {
    server = await startServer((_req, res) => json(res, 202, ANSWER));
    const fg = createClient({ url: `${server.url}/`, apiKey: "fgk_a.b.c" });
    const answer = await fg.jobs.submit(
      "demo",
      { prompt: "a red fox" },
      {
        idempotencyKey: "k-1",
        metadata: { user: "u1" },
        deadline: new Date("2030-01-01T00:00:00Z"),
      },
    );
    expect(answer).toEqual(ANSWER);
    const [req] = server.requests;
    expect(req).toMatchObject({ method: "POST", path: "/v1/models/demo/jobs" });
    expect(req!.headers).toMatchObject({
      authorization: "Bearer fgk_a.b.c",
      "idempotency-key": "k-1",
      "content-type": "application/json",
    });
    expect(JSON.parse(req!.body)).toEqual({
      input: { prompt: "a red fox" },
      metadata: { user: "u1" },
      deadline: "2030-01-01T00:00:00.000Z",
    });
  });

  it("turns an error body into FloodgateApiError with status, code, message, request id and Retry-After", async () => {
    server = await startServer((_req, res) =>
      json(res, 429, { error: { code: "overloaded", message: "tier plus is over its SLO" } }, { "retry-after": "7" }),
    );
    const fg = createClient({ url: server.url, apiKey: "k" });
    const err = await fg.jobs.submit("demo", {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FloodgateApiError);
    expect(err).toMatchObject({
      status: 429,
      code: "overloaded",
      message: "tier plus is over its SLO",
      requestId: "req-test",
      retryAfterS: 7,
    });
  });

  it("names the status of an error answer that is not JSON (a proxy's page)", async () => {
    server = await startServer((_req, res) => {
      res.writeHead(502, { "content-type": "text/html" });
      res.end("<html><body>Bad gateway</body></html>");
    });
    const fg = createClient({ url: server.url, apiKey: "k", retries: 0 });
    const err = await fg.jobs.get(JOB).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FloodgateApiError);
    expect(err).toMatchObject({ status: 502, code: "unavailable" });
    expect((err as Error).message).toMatch(/HTTP 502.*Bad gateway/);
  });

  it("refuses an answer that does not match its schema instead of casting it", async () => {
    server = await startServer((_req, res) => json(res, 200, { ...jobView(JOB), status: "exploded" }));
    const fg = createClient({ url: server.url, apiKey: "k" });
    const err = await fg.jobs.get(JOB).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MalformedAnswerError);
    expect((err as Error).message).toMatch(/status/);
  });

  it("does not retry a submit without an idempotency key, which could make a second job", async () => {
    server = await startServer((_req, res) => res.socket?.destroy());
    const fg = createClient({ url: server.url, apiKey: "k" });
    await expect(fg.jobs.submit("demo", {})).rejects.toBeInstanceOf(FloodgateNetworkError);
    expect(server.requests).toHaveLength(1);
  });

  it("retries a keyed submit after a dropped connection, with the same key", async () => {
    server = await startServer((_req, res) => {
      if (server!.requests.length === 1) res.socket?.destroy();
      else json(res, 202, ANSWER);
    });
    const fg = createClient({ url: server.url, apiKey: "k" });
    expect(await fg.jobs.submit("demo", {}, { idempotencyKey: "same" })).toEqual(ANSWER);
    expect(server.requests.map((r) => r.headers["idempotency-key"])).toEqual(["same", "same"]);
  });

  it("retries reads on 503 and gives up after `retries`", async () => {
    server = await startServer((_req, res) => json(res, 503, { error: { code: "unavailable", message: "later" } }));
    const fg = createClient({ url: server.url, apiKey: "k", retries: 1 });
    await expect(fg.jobs.get(JOB)).rejects.toMatchObject({ status: 503, code: "unavailable" });
    expect(server.requests).toHaveLength(2);
  });

  it("times out a request that gets no answer, as FloodgateNetworkError with timedOut", async () => {
    server = await startServer(() => {
      // never answers
    });
    const fg = createClient({ url: server.url, apiKey: "k", timeoutMs: 100, retries: 0 });
    const err = await fg.jobs.get(JOB).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FloodgateNetworkError);
    expect(err).toMatchObject({ timedOut: true });
  });

  it("reports an edge it cannot reach as FloodgateNetworkError without timedOut", async () => {
    const probe = await startServer(() => undefined);
    const url = probe.url;
    await probe.close();
    const fg = createClient({ url, apiKey: "k", retries: 0 });
    const err = await fg.jobs.get(JOB).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FloodgateNetworkError);
    expect(err).toMatchObject({ timedOut: false });
  });

  it("lists with a query, cancels, deletes (204) and mints a stream token", async () => {
    server = await startServer((req, res) => {
      if (req.path.startsWith("/v1/jobs?")) json(res, 200, { jobs: [jobView(JOB)], next_cursor: null });
      else if (req.path.endsWith("/cancel"))
        json(res, 200, jobView(JOB, { status: "cancelled", phase: "done", queue: null }));
      else if (req.path.endsWith("/stream-token"))
        json(res, 201, { token: "t", expires_at: "2030-01-01T00:00:00.000Z" });
      else if (req.method === "DELETE") {
        res.writeHead(204);
        res.end();
      } else json(res, 404, { error: { code: "not_found", message: "no" } });
    });
    const fg = createClient({ url: server.url, apiKey: "k" });
    const page = await fg.jobs.list({ status: "queued", limit: 5, cursor: "job_x" });
    expect(page.jobs).toHaveLength(1);
    expect((await fg.jobs.cancel(JOB)).status).toBe("cancelled");
    await expect(fg.jobs.delete(JOB)).resolves.toBeUndefined();
    expect(await fg.jobs.streamToken(JOB)).toEqual({ token: "t", expires_at: "2030-01-01T00:00:00.000Z" });
    expect(server.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      "GET /v1/jobs?status=queued&limit=5&cursor=job_x",
      `POST /v1/jobs/${JOB}/cancel`,
      `DELETE /v1/jobs/${JOB}`,
      `POST /v1/jobs/${JOB}/stream-token`,
    ]);
  });

  it("answers batch submits one by one, in order", async () => {
    server = await startServer((_req, res) =>
      json(res, 202, {
        jobs: [
          { ok: true, ...ANSWER },
          { ok: false, error: { code: "invalid_input", message: "jobs.1.input.prompt: required" } },
        ],
      }),
    );
    const fg = createClient({ url: server.url, apiKey: "k" });
    const out = await fg.jobs.submitBatch("demo", [{ input: { prompt: "a" } }, { input: {} }]);
    expect(out.jobs.map((j) => j.ok)).toEqual([true, false]);
    expect(JSON.parse(server.requests[0]!.body)).toEqual({ jobs: [{ input: { prompt: "a" } }, { input: {} }] });
  });

  it("refuses a URL that is not http(s) when built", () => {
    expect(() => createClient({ url: "ftp://x", apiKey: "k" })).toThrow(/http or https/);
    expect(() => createClient({ url: "not a url", apiKey: "k" })).toThrow(/not a URL/);
  });
});

describe("createAdminClient", () => {
  it("sends the admin key and parses accounts, tokens, agents and queues", async () => {
    server = await startServer((req, res) => {
      switch (`${req.method} ${req.path}`) {
        case "POST /v1/admin/accounts":
          return json(res, 201, { id: "acc_1", key_id: "key_1", api_key: "fgk_x" });
        case "POST /v1/admin/agent-tokens":
          return json(res, 201, { id: "tok_1", token: "jwt", expires_at: "2030-01-01T00:00:00.000Z" });
        case "DELETE /v1/admin/agent-tokens/tok_1":
          res.writeHead(204);
          return res.end();
        case "GET /v1/admin/agents":
          return json(res, 200, {
            agents: [
              {
                connected: true,
                agent_id: "agt_1",
                name: "local-0",
                pool: "local",
                models: ["demo"],
                versions: [],
                slots: 2,
                prefetch: 1,
                gpus: [{ name: "H100", util_pct: 50 }],
                last_heartbeat: "2025-01-01T00:00:00.000Z",
                connected_at: "2025-01-01T00:00:00.000Z",
              },
            ],
          });
        case "GET /v1/admin/queues":
          return json(res, 200, {
            queues: [
              {
                model: "demo",
                shard: 0,
                tier: "plus",
                depth: 3,
                running: 1,
                oldest_wait_s: 4,
                max_wait_over_slo: 0.1,
                drain_per_s: 0.5,
              },
            ],
          });
        default:
          return json(res, 404, { error: { code: "not_found", message: "no" } });
      }
    });
    const admin = createAdminClient({ url: server.url, adminKey: "fga_admin" });
    expect(await admin.accounts.create({ name: "acme", tier: "api" })).toMatchObject({ api_key: "fgk_x" });
    expect(await admin.tokens.create({ pool: "p", models: ["demo"] })).toMatchObject({ id: "tok_1" });
    await admin.tokens.revoke("tok_1");
    expect((await admin.agents.list())[0]).toMatchObject({ name: "local-0", slots: 2 });
    expect((await admin.queues.list())[0]).toMatchObject({ depth: 3 });
    expect(server.requests.every((r) => r.headers.authorization === "Bearer fga_admin")).toBe(true);
    expect(JSON.parse(server.requests[0]!.body)).toEqual({ name: "acme", tier: "api" });
  });

  it("sends a piece as raw bytes (application/octet-stream) and reads the versions' answers", async () => {
    const sha = "ab".repeat(32);
    server = await startServer((req, res) => {
      switch (`${req.method} ${req.path}`) {
        case `PUT /v1/admin/pieces/${sha}`:
          return json(res, 201, { sha256: sha, size: Buffer.byteLength(req.body) });
        case "GET /v1/admin/versions":
        case "GET /v1/admin/models/demo/versions":
          return json(res, 200, { versions: [] });
        default:
          return json(res, 404, { error: { code: "version_not_found", message: "no" } });
      }
    });
    const admin = createAdminClient({ url: server.url, adminKey: "fga_admin" });
    expect(await admin.versions.putPiece(sha, new Uint8Array(Buffer.from("piece bytes")))).toEqual({
      sha256: sha,
      size: 11,
    });
    expect(server.requests[0]).toMatchObject({ body: "piece bytes" });
    expect(server.requests[0]!.headers["content-type"]).toBe("application/octet-stream");
    expect(await admin.versions.list()).toEqual([]);
    expect(await admin.versions.list("demo")).toEqual([]);
    await expect(admin.versions.get("demo", "1")).rejects.toMatchObject({ code: "version_not_found", status: 404 });
  });
});
