import { env } from "cloudflare:workers";
import { SignJWT, importJWK, type JWK } from "jose";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../edge/app.ts";
import { verifyAgentToken } from "../../edge/tokens.ts";
import { MAX_BATCH } from "../../shared/api.ts";
import { leaseOne, welcomed } from "./agent-helpers.ts";
import { ADMIN, call, makeAccount, makeModel, submit } from "./helpers.ts";

describe("admin authentication", () => {
  it("admin routes refuse user keys and missing keys", async () => {
    const acct = await makeAccount();
    expect((await call("GET", "/v1/admin/tiers")).status).toBe(401);
    expect((await call("GET", "/v1/admin/tiers", { key: acct.key })).status).toBe(403);
    expect((await call("GET", "/v1/admin/tiers", { key: "fga_wrong" })).status).toBe(401);
  });
});

describe("accounts and keys", () => {
  it("a second key works, and a revoked key stops working while the other keeps working", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const added = await call<{ key_id: string; api_key: string }>("POST", `/v1/admin/accounts/${acct.id}/keys`, {
      key: ADMIN,
    });
    expect(added.status).toBe(201);
    expect((await submit(model, added.body.api_key)).status).toBe(202);
    expect((await call("DELETE", `/v1/admin/accounts/${acct.id}/keys/${acct.keyId}`, { key: ADMIN })).status).toBe(204);
    expect((await submit(model, acct.key)).status).toBe(401);
    expect((await submit(model, added.body.api_key)).status).toBe(202);
  });

  it("an account with an unknown tier is refused, naming the tiers", async () => {
    const r = await call("POST", "/v1/admin/accounts", { key: ADMIN, body: { name: "x", tier: "platinum" } });
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.body)).toContain("plus");
  });

  it("keys are stored hashed: the account actor's storage holds no key in plaintext", async () => {
    const acct = await makeAccount();
    const stub = env.ACCOUNT.get(env.ACCOUNT.idFromName(acct.id));
    const { runInDurableObject } = await import("cloudflare:test");
    const dump = await runInDurableObject(stub, (_i, state) =>
      JSON.stringify(state.storage.sql.exec("SELECT * FROM keys").toArray()),
    );
    expect(dump).not.toContain(acct.key);
    expect(dump).not.toContain(acct.key.split(".")[2]);
  });

  it("a per-account rate limit answers 429 with Retry-After before any actor", async () => {
    const model = await makeModel();
    const acct = await makeAccount("free", 60);
    let limited: { status: number; headers: Headers } | undefined;
    for (let i = 0; i < 80 && !limited; i++) {
      const r = await submit(model, acct.key);
      if (r.status === 429) limited = r;
    }
    expect(limited?.status).toBe(429);
    expect(Number(limited?.headers.get("retry-after"))).toBeGreaterThan(0);
  });
});

describe("tiers and queues", () => {
  it("the default tiers are api, enterprise, plus, light and free with their SLOs", async () => {
    const r = await call<{ tiers: { name: string; slo_s: number }[] }>("GET", "/v1/admin/tiers", { key: ADMIN });
    expect(r.body.tiers.map((t) => [t.name, t.slo_s])).toEqual([
      ["api", 120],
      ["enterprise", 180],
      ["plus", 300],
      ["light", 600],
      ["free", 1800],
    ]);
  });

  it("a tier table with duplicate names or a bad SLO is refused", async () => {
    const dup = {
      tiers: [
        { name: "a", slo_s: 1, admission_k: 2, rate_limit_per_min: 60 },
        { name: "a", slo_s: 2, admission_k: 2, rate_limit_per_min: 60 },
      ],
    };
    expect((await call("PUT", "/v1/admin/tiers", { key: ADMIN, body: dup })).status).toBe(400);
    const bad = { tiers: [{ name: "a", slo_s: -1, admission_k: 2, rate_limit_per_min: 60 }] };
    expect((await call("PUT", "/v1/admin/tiers", { key: ADMIN, body: bad })).status).toBe(400);
  });

  it("queues report depth and largest wait/SLO per model and tier", async () => {
    const model = await makeModel();
    const acct = await makeAccount("light");
    await submit(model, acct.key);
    await submit(model, acct.key);
    const r = await call<{ queues: { model: string; tier: string; depth: number; max_wait_over_slo: number }[] }>(
      "GET",
      "/v1/admin/queues",
      { key: ADMIN },
    );
    const row = r.body.queues.find((q) => q.model === model && q.tier === "light");
    expect(row?.depth).toBe(2);
    expect(row?.max_wait_over_slo).toBeGreaterThanOrEqual(0);
  });
});

describe("admission control", () => {
  it("a tier whose projected wait passes k × SLO answers 429 overloaded with Retry-After", async () => {
    const before = await call<{ tiers: Record<string, unknown>[] }>("GET", "/v1/admin/tiers", { key: ADMIN });
    const tiny = { name: "tiny", slo_s: 0.001, admission_k: 1, rate_limit_per_min: 60_000 };
    const put = await call("PUT", "/v1/admin/tiers", { key: ADMIN, body: { tiers: [...before.body.tiers, tiny] } });
    expect(put.status).toBe(200);
    try {
      const model = await makeModel();
      const acct = await makeAccount("tiny");
      expect((await submit(model, acct.key)).status).toBe(202);
      await new Promise((r) => setTimeout(r, 20));
      const refused = await submit(model, acct.key);
      expect(refused.status).toBe(429);
      expect(refused.body).toMatchObject({ error: { code: "overloaded" } });
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      // Other tiers of the same model are not affected.
      const plus = await makeAccount("plus");
      expect((await submit(model, plus.key)).status).toBe(202);
    } finally {
      await call("PUT", "/v1/admin/tiers", { key: ADMIN, body: { tiers: before.body.tiers } });
    }
  });

  it("three batches of 100 max-size demo jobs from one api account shed that account, while another api account is still admitted", async () => {
    // The demo model's configuration (5 s a job); an agent has taken one api job, so the tier
    // drains at a measured rate (one job per 5 s at least) and a queue projects a wait.
    const model = await makeModel();
    const flooder = await makeAccount("api");
    const other = await makeAccount("api");
    const { conn } = await welcomed(model);
    expect((await submit(model, (await makeAccount("api")).key)).status).toBe(202);
    await leaseOne(conn);
    const input = { prompt: "x".repeat(2000), seed: 4294967295, steps: 100, frames: 64, size: 512 };
    const answers: string[][] = [];
    for (let b = 0; b < 3; b++) {
      const r = await call<{ jobs: { ok: boolean; error?: { code: string; retry_after_s?: number } }[] }>(
        "POST",
        `/v1/models/${model}/jobs/batch`,
        { key: flooder.key, body: { jobs: Array.from({ length: MAX_BATCH }, () => ({ input })) } },
      );
      expect(r.status).toBe(202);
      answers.push([...new Set(r.body.jobs.map((j) => (j.ok ? "ok" : (j.error?.code ?? "?"))))]);
    }
    // 100 queued project 500 s of the tier's 960 (8 × its 120 s SLO): past half of it, an
    // account with jobs queued is refused; one with none is not.
    const admitted = await submit(model, other.key, input);
    expect(admitted.status).toBe(202);
    expect(answers).toEqual([["ok"], ["overloaded"], ["overloaded"]]);
    const shed = await submit(model, flooder.key, input);
    expect(shed.status).toBe(429);
    expect(shed.body).toMatchObject({ error: { code: "overloaded" } });
    expect(Number(shed.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    conn.ws.close(1000, "done");
  });
});

describe("models", () => {
  it("a model with an unusable input schema is refused; re-registering keeps its number", async () => {
    const bad = await call("PUT", "/v1/admin/models/broken", { key: ADMIN, body: { input_schema: { type: 12 } } });
    expect(bad.status).toBe(400);
    const name = await makeModel();
    const again = await call<{ number: number }>("PUT", `/v1/admin/models/${name}`, {
      key: ADMIN,
      body: { input_schema: { type: "object", properties: { prompt: { type: "string" } } }, max_attempts: 5 },
    });
    expect(again.status).toBe(200);
    const list = await call<{ models: { name: string; number: number; max_attempts: number }[] }>(
      "GET",
      "/v1/admin/models",
      { key: ADMIN },
    );
    const m = list.body.models.find((x) => x.name === name);
    expect(m).toMatchObject({ number: again.body.number, max_attempts: 5 });
  });
});

describe("agent tokens", () => {
  it("a minted token verifies with its pool and models; a revoked one is marked dead in the registry", async () => {
    const r = await call<{ id: string; token: string }>("POST", "/v1/admin/agent-tokens", {
      key: ADMIN,
      body: { pool: "gpu-east", models: ["demo"], ttl_s: 3600 },
    });
    expect(r.status).toBe(201);
    const claims = await verifyAgentToken(env, r.body.token);
    expect(claims).toMatchObject({ pool: "gpu-east", models: ["demo"], jti: r.body.id });
    const registry = env.REGISTRY.get(env.REGISTRY.idFromName("global"));
    expect(await registry.tokenLive(r.body.id)).toBe(true);
    expect((await call("DELETE", `/v1/admin/agent-tokens/${r.body.id}`, { key: ADMIN })).status).toBe(204);
    expect(await registry.tokenLive(r.body.id)).toBe(false);
  });

  it("tokens signed by an older key of the set still verify (rotation by kid)", async () => {
    const set = JSON.parse(env.AGENT_SIGNING_KEYS) as { keys: (JWK & { kid: string })[] };
    const old = set.keys.find((k) => k.kid === "k-test-1") as JWK;
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ pool: "p", models: ["demo"] })
      .setProtectedHeader({ alg: "EdDSA", kid: "k-test-1", typ: "floodgate-agent+jwt" })
      .setIssuer("floodgate")
      .setAudience("floodgate.agent")
      .setSubject("pool:p")
      .setJti("tok_0123456789abcdef")
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + 60)
      .sign(await importJWK(old, "EdDSA"));
    expect(await verifyAgentToken(env, token)).toMatchObject({ pool: "p" });
  });

  it("expired, wrong-audience, unsigned and garbage tokens are refused", async () => {
    const set = JSON.parse(env.AGENT_SIGNING_KEYS) as { keys: (JWK & { kid: string })[] };
    const key = await importJWK(set.keys[0] as JWK, "EdDSA");
    const now = Math.floor(Date.now() / 1000);
    const base = () =>
      new SignJWT({ pool: "p", models: ["demo"] })
        .setProtectedHeader({ alg: "EdDSA", kid: "k-test-2", typ: "floodgate-agent+jwt" })
        .setIssuer("floodgate")
        .setSubject("pool:p")
        .setJti("tok_0123456789abcdef")
        .setIssuedAt(now)
        .setNotBefore(now);
    const expired = await base()
      .setAudience("floodgate.agent")
      .setExpirationTime(now - 10)
      .sign(key);
    const wrongAud = await base()
      .setAudience("someone.else")
      .setExpirationTime(now + 60)
      .sign(key);
    const header = btoa(JSON.stringify({ alg: "none", typ: "floodgate-agent+jwt" })).replaceAll("=", "");
    const payload = btoa(JSON.stringify({ iss: "floodgate", aud: "floodgate.agent", exp: now + 60 })).replaceAll(
      "=",
      "",
    );
    for (const t of [expired, wrongAud, `${header}.${payload}.`, "garbage", "a.b.c", `${expired}x`]) {
      expect(await verifyAgentToken(env, t)).toBeUndefined();
    }
  });
});

/** `get /v1/jobs/{}`: a method and a path with its parameters unnamed (`:id`, `{id}` and `*` alike). */
function unnamed(method: string, path: string): string {
  return `${method.toLowerCase()} ${path.replace(/:\w+(\{[^}]*\})?|\{\w+\}|\*$/g, "{}")}`;
}

/** The credential a path asks for, as edge/app.ts applies its authentication middleware. */
function schemeOf(path: string): string | undefined {
  if (path.startsWith("/v1/admin/")) return "admin";
  if (path.startsWith("/v1/agent/")) return "agent";
  if (path.startsWith("/v1/provisioner/")) return "provisioner";
  if (path.startsWith("/v1/files/outputs/")) return undefined;
  if (/^\/v1\/(models|jobs|webhooks|usage|files)(\/|$)/.test(path) && !path.endsWith("/preview")) return "user";
  return undefined;
}

describe("system routes", () => {
  type Operation = {
    summary?: string;
    security?: Record<string, string[]>[];
    parameters?: { name: string; in: string }[];
    requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown> } }> };
    responses: Record<string, { description: string; content?: Record<string, { schema: unknown }> }>;
  };
  type Document = {
    openapi: string;
    components: { securitySchemes: Record<string, unknown> };
    paths: Record<string, Record<string, Operation>>;
  };
  const openapi = async () => (await call<Document>("GET", "/openapi.json")).body;

  it("openapi.json documents every route the app serves, and nothing else", async () => {
    const served = new Set(
      buildApp()
        .routes.filter((r) => r.method !== "ALL") // middleware
        .map((r) => unnamed(r.method, r.path)),
    );
    const doc = await openapi();
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => unnamed(m, path)),
    );
    expect(new Set(documented).size).toBe(documented.length);
    expect([...served].sort()).toEqual([...documented].sort());
    expect(served.size).toBeGreaterThanOrEqual(30);
  });

  it("openapi.json is OpenAPI 3.1 with a summary, its credential and the error answer on every route", async () => {
    const doc = await openapi();
    const errorAnswer = {
      type: "object",
      properties: {
        error: {
          type: "object",
          properties: { code: { type: "string" }, message: { type: "string" } },
          required: ["code", "message"],
        },
      },
      required: ["error"],
    };
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(["admin", "agent", "provisioner", "user"]);
    const problems: string[] = [];
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const where = `${method} ${path}`;
        if (!op.summary) problems.push(`${where}: no summary`);
        const schemes = (op.security ?? []).flatMap((s) => Object.keys(s));
        const scheme = schemeOf(path);
        if (JSON.stringify(schemes) !== JSON.stringify(scheme ? [scheme] : [])) {
          problems.push(`${where}: security ${JSON.stringify(op.security)}`);
        }
        for (const status of ["400", "404", "413", "429", ...(scheme ? ["401"] : [])]) {
          const schema = op.responses[status]?.content?.["application/json"]?.schema;
          if (JSON.stringify(schema) !== JSON.stringify(errorAnswer))
            problems.push(`${where}: ${status} is not ErrorAnswer`);
        }
        for (const param of path.match(/\{\w+\}/g) ?? []) {
          if (!op.parameters?.some((p) => p.in === "path" && `{${p.name}}` === param))
            problems.push(`${where}: ${param} is not a parameter`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it("openapi.json gives request bodies, queries and answers their schemas, and non-JSON routes their content types", async () => {
    const { paths } = await openapi();
    const submitBody = paths["/v1/models/{model}/jobs"]?.post?.requestBody?.content["application/json"]?.schema;
    expect(Object.keys(submitBody?.properties ?? {})).toEqual(
      expect.arrayContaining(["input", "metadata", "deadline", "version", "webhook"]),
    );
    expect(paths["/v1/jobs"]?.get?.parameters?.map((p) => `${p.in}:${p.name}`)).toEqual([
      "query:status",
      "query:limit",
      "query:cursor",
    ]);
    expect(paths["/v1/jobs/{id}"]?.get?.responses["200"]?.content?.["application/json"]?.schema).toMatchObject({
      properties: { id: { type: "string" }, status: {} },
    });
    expect(Object.keys(paths["/v1/jobs/{id}/events"]?.get?.responses["200"]?.content ?? {})).toEqual([
      "text/event-stream",
    ]);
    expect(paths["/v1/jobs/{id}/events"]?.get?.responses["101"]).toBeDefined();
    expect(paths["/v1/agent/connect"]?.get?.responses["101"]).toBeDefined();
    expect(Object.keys(paths["/v1/agent/uploads/{upload_id}/parts/{n}"]?.put?.requestBody?.content ?? {})).toEqual([
      "application/octet-stream",
    ]);
    expect(Object.keys(paths["/v1/files/outputs/{path}"]?.get?.responses["200"]?.content ?? {})).toEqual(["*/*"]);
    expect(Object.keys(paths["/v1/jobs/{id}/preview"]?.get?.responses["200"]?.content ?? {})).toEqual(["image/*"]);
  });

  it("unknown routes answer 404 in the error shape", async () => {
    const r = await call("GET", "/nope");
    expect(r.status).toBe(404);
    expect(r.body).toMatchObject({ error: { code: "not_found" } });
    expect((await call("GET", "/healthz")).status).toBe(200);
  });
});
