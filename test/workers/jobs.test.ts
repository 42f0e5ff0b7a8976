import { describe, expect, it } from "vitest";
import { ADMIN, call, makeAccount, makeModel, submit } from "./helpers.ts";

describe("submitting jobs", () => {
  it("a valid submit answers 202 with a queued job that the owner can read back", async () => {
    const model = await makeModel();
    const acct = await makeAccount("plus");
    const r = await submit(model, acct.key);
    expect(r.status).toBe(202);
    expect(r.headers.get("x-request-id")).toBeTruthy();
    expect(r.body).toMatchObject({ status: "queued", model, tier: "plus" });
    expect(r.body.id).toMatch(/^job_[0-9a-z]{30}$/);
    const got = await call<Record<string, unknown>>("GET", `/v1/jobs/${r.body.id}`, { key: acct.key });
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ id: r.body.id, status: "queued", phase: "waiting", attempts: [] });
    expect(got.body.queue).toEqual({ position: 0, eta_s: null, reason: "no_agent" });
  });

  it("job ids sort by creation time", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const a = await submit(model, acct.key);
    await new Promise((r) => setTimeout(r, 3));
    const b = await submit(model, acct.key);
    expect(a.body.id < b.body.id).toBe(true);
  });

  it("a body that does not match the schema is 400 naming the offending field", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const wrongType = await submit(model, acct.key, { prompt: 42 });
    expect(wrongType.status).toBe(400);
    expect(wrongType.body).toMatchObject({ error: { code: "invalid_input" } });
    expect(JSON.stringify(wrongType.body)).toContain("input.prompt");
    const outOfBounds = await submit(model, acct.key, { prompt: "x", steps: 1000 });
    expect(outOfBounds.status).toBe(400);
    expect(JSON.stringify(outOfBounds.body)).toContain("input.steps");
    const missingInput = await call("POST", `/v1/models/${model}/jobs`, { key: acct.key, body: { inputs: {} } });
    expect(missingInput.status).toBe(400);
    expect(missingInput.body).toMatchObject({ error: { code: "invalid_body" } });
    const badJson = await call("POST", `/v1/models/${model}/jobs`, {
      key: acct.key,
      raw: "{nope",
      headers: { "content-type": "application/json" },
    });
    expect(badJson.status).toBe(400);
    const notJson = await call("POST", `/v1/models/${model}/jobs`, {
      key: acct.key,
      raw: "prompt=x",
      headers: { "content-type": "text/plain" },
    });
    expect(notJson.status).toBe(415);
  });

  it("a body over the size limit is 413", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const r = await call("POST", `/v1/models/${model}/jobs`, {
      key: acct.key,
      body: { input: { prompt: "x".repeat(1_100_000) } },
    });
    expect(r.status).toBe(413);
    expect(r.body).toMatchObject({ error: { code: "payload_too_large" } });
  });

  it("an unknown model is 404", async () => {
    const acct = await makeAccount();
    const r = await submit("no-such-model", acct.key);
    expect(r.status).toBe(404);
    expect(r.body).toMatchObject({ error: { code: "model_not_found" } });
  });

  it("no key or a bad key is 401", async () => {
    const model = await makeModel();
    expect((await call("POST", `/v1/models/${model}/jobs`, { body: { input: { prompt: "x" } } })).status).toBe(401);
    expect((await submit(model, "garbage")).status).toBe(401);
    const acct = await makeAccount();
    const forged = acct.key.slice(0, -4) + "AAAA";
    expect((await submit(model, forged)).status).toBe(401);
    expect((await call("GET", "/v1/jobs", { key: ADMIN })).status).toBe(401);
  });

  it("another account's job is 404 and never its data", async () => {
    const model = await makeModel();
    const owner = await makeAccount();
    const other = await makeAccount();
    const { body: job } = await submit(model, owner.key, { prompt: "secret plans" });
    for (const [method, path] of [
      ["GET", `/v1/jobs/${job.id}`],
      ["POST", `/v1/jobs/${job.id}/cancel`],
      ["DELETE", `/v1/jobs/${job.id}`],
    ] as const) {
      const r = await call(method, path, { key: other.key });
      expect(r.status).toBe(404);
      expect(JSON.stringify(r.body)).not.toContain("secret plans");
    }
    const list = await call<{ jobs: unknown[] }>("GET", "/v1/jobs", { key: other.key });
    expect(list.body.jobs).toEqual([]);
    expect((await call("GET", `/v1/jobs/${job.id}`, { key: owner.key })).status).toBe(200);
  });

  it("metadata, deadline, version and webhook are accepted and stored", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    expect((await call("POST", "/v1/webhooks/job-secret", { key: acct.key })).status).toBe(201);
    const r = await call<{ id: string }>("POST", `/v1/models/${model}/jobs`, {
      key: acct.key,
      body: {
        input: { prompt: "x" },
        metadata: { campaign: "launch" },
        deadline: "2030-01-01T00:00:00Z",
        version: "1.2.3",
        webhook: "https://example.com/hook",
      },
    });
    expect(r.status).toBe(202);
    const got = await call("GET", `/v1/jobs/${r.body.id}`, { key: acct.key });
    expect(got.body).toMatchObject({
      metadata: { campaign: "launch" },
      deadline: "2030-01-01T00:00:00Z",
      version: "1.2.3",
    });
  });
});

describe("idempotency", () => {
  it("the same Idempotency-Key and body return the same job; another body is 409", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const key = { "idempotency-key": "order-17" };
    const a = await submit(model, acct.key, { prompt: "fox" }, key);
    const b = await submit(model, acct.key, { prompt: "fox" }, key);
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect(b.body.id).toBe(a.body.id);
    const c = await submit(model, acct.key, { prompt: "wolf" }, key);
    expect(c.status).toBe(409);
    expect(c.body).toMatchObject({ error: { code: "idempotency_conflict" } });
  });

  it("three concurrent submits with one key make exactly one job", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const key = { "idempotency-key": "concurrent-1" };
    const answers = await Promise.all([1, 2, 3].map(() => submit(model, acct.key, { prompt: "fox" }, key)));
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202]);
    expect(new Set(answers.map((a) => a.body.id)).size).toBe(1);
    const list = await call<{ jobs: { id: string }[] }>("GET", "/v1/jobs", { key: acct.key });
    expect(list.body.jobs.map((j) => j.id)).toEqual([answers[0]?.body.id]);
  });

  it("an idempotency key is scoped to its account", async () => {
    const model = await makeModel();
    const a = await makeAccount();
    const b = await makeAccount();
    const key = { "idempotency-key": "shared-name" };
    const ja = await submit(model, a.key, { prompt: "fox" }, key);
    const jb = await submit(model, b.key, { prompt: "fox" }, key);
    expect(ja.body.id).not.toBe(jb.body.id);
  });
});

describe("batch submits", () => {
  it("a batch answers each job on its own, invalid ones with their error", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const r = await call<{ jobs: { ok: boolean; id?: string; error?: { code: string; message: string } }[] }>(
      "POST",
      `/v1/models/${model}/jobs/batch`,
      {
        key: acct.key,
        body: {
          jobs: [
            { input: { prompt: "a" } },
            { input: { prompt: 7 } },
            { input: { prompt: "c" }, idempotency_key: "b-1" },
            { input: { prompt: "c" }, idempotency_key: "b-1" },
          ],
        },
      },
    );
    expect(r.status).toBe(202);
    expect(r.body.jobs.map((j) => j.ok)).toEqual([true, false, true, true]);
    expect(r.body.jobs[1]?.error?.code).toBe("invalid_input");
    expect(r.body.jobs[1]?.error?.message).toContain("jobs.1.input.prompt");
    expect(r.body.jobs[2]?.id).toBe(r.body.jobs[3]?.id);
    const list = await call<{ jobs: unknown[] }>("GET", "/v1/jobs", { key: acct.key });
    expect(list.body.jobs).toHaveLength(2);
  });

  it("a batch over 100 jobs is refused", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const jobs = Array.from({ length: 101 }, () => ({ input: { prompt: "x" } }));
    const r = await call("POST", `/v1/models/${model}/jobs/batch`, { key: acct.key, body: { jobs } });
    expect(r.status).toBe(400);
  });
});

describe("reading, listing, cancelling, deleting", () => {
  it("the list is the caller's jobs newest first, paginated by cursor, filterable by status", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await submit(model, acct.key)).body.id);
      await new Promise((r) => setTimeout(r, 2));
    }
    const first = await call<{ jobs: { id: string }[]; next_cursor: string | null }>("GET", "/v1/jobs?limit=3", {
      key: acct.key,
    });
    expect(first.body.jobs.map((j) => j.id)).toEqual(ids.slice(2).toReversed());
    expect(first.body.next_cursor).toBe(ids[2]);
    const second = await call<{ jobs: { id: string }[]; next_cursor: string | null }>(
      "GET",
      `/v1/jobs?limit=3&cursor=${first.body.next_cursor}`,
      { key: acct.key },
    );
    expect(second.body.jobs.map((j) => j.id)).toEqual(ids.slice(0, 2).toReversed());
    expect(second.body.next_cursor).toBeNull();
    await call("POST", `/v1/jobs/${ids[0]}/cancel`, { key: acct.key });
    const cancelled = await call<{ jobs: { id: string }[] }>("GET", "/v1/jobs?status=cancelled", { key: acct.key });
    expect(cancelled.body.jobs.map((j) => j.id)).toEqual([ids[0]]);
    expect((await call("GET", "/v1/jobs?status=bogus", { key: acct.key })).status).toBe(400);
    expect((await call("GET", "/v1/jobs?limit=0", { key: acct.key })).status).toBe(400);
  });

  it("cancel ends a queued job at once and is idempotent; delete needs a finished job", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    expect((await call("DELETE", `/v1/jobs/${job.id}`, { key: acct.key })).status).toBe(409);
    const c1 = await call("POST", `/v1/jobs/${job.id}/cancel`, { key: acct.key });
    expect(c1.status).toBe(200);
    expect(c1.body).toMatchObject({ status: "cancelled", error: { code: "cancelled" } });
    const c2 = await call("POST", `/v1/jobs/${job.id}/cancel`, { key: acct.key });
    expect(c2.body).toMatchObject({ status: "cancelled" });
    expect((await call("DELETE", `/v1/jobs/${job.id}`, { key: acct.key })).status).toBe(204);
    expect((await call("GET", `/v1/jobs/${job.id}`, { key: acct.key })).status).toBe(404);
  });

  it("a malformed or unknown job id is 404", async () => {
    const acct = await makeAccount();
    expect((await call("GET", "/v1/jobs/not-a-job", { key: acct.key })).status).toBe(404);
    expect((await call("GET", `/v1/jobs/job_${"0".repeat(30)}`, { key: acct.key })).status).toBe(404);
  });
});
