/**
 * The webhook API in workerd: endpoints and their secrets, the address guard, what a submit
 * records, and deliveries, which only the job's owner reads. Sending is proved end to end
 * (test/e2e/webhooks.test.ts) against a real receiver.
 */
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { SchedulerActor, WebhookActor } from "../../mesh/index.ts";
import { parseJobId, schedulerName, type JobRoute } from "../../shared/ids.ts";
import { ADMIN, call, makeAccount, makeModel, submit } from "./helpers.ts";

interface Created {
  id: string;
  url: string;
  events: string[];
  secret: string;
  disabled_at: string | null;
}

describe("webhook endpoints", () => {
  it("an endpoint is made with a whsec_ secret shown once, listed without it, rotated and removed", async () => {
    const acct = await makeAccount();
    const made = await call<Created>("POST", "/v1/webhooks", {
      key: acct.key,
      body: { url: "https://hooks.example.com/fg", events: ["job.succeeded", "job.failed"] },
    });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({ url: "https://hooks.example.com/fg", events: ["job.succeeded", "job.failed"] });
    expect(made.body.secret).toMatch(/^whsec_/);
    const list = await call<{ webhooks: Record<string, unknown>[] }>("GET", "/v1/webhooks", { key: acct.key });
    expect(list.body.webhooks).toHaveLength(1);
    expect(JSON.stringify(list.body)).not.toContain("whsec_");
    const rotated = await call<Created>("POST", `/v1/webhooks/${made.body.id}/rotate`, { key: acct.key });
    expect(rotated.status).toBe(200);
    expect(rotated.body.secret).not.toBe(made.body.secret);
    expect((await call("DELETE", `/v1/webhooks/${made.body.id}`, { key: acct.key })).status).toBe(204);
    expect((await call("DELETE", `/v1/webhooks/${made.body.id}`, { key: acct.key })).status).toBe(404);
    expect((await call<{ webhooks: unknown[] }>("GET", "/v1/webhooks", { key: acct.key })).body.webhooks).toEqual([]);
  });

  it("another account cannot see, rotate or remove an endpoint", async () => {
    const [a, b] = [await makeAccount(), await makeAccount()];
    const made = await call<Created>("POST", "/v1/webhooks", { key: a.key, body: { url: "https://a.example.com/" } });
    expect((await call<{ webhooks: unknown[] }>("GET", "/v1/webhooks", { key: b.key })).body.webhooks).toEqual([]);
    expect((await call("POST", `/v1/webhooks/${made.body.id}/rotate`, { key: b.key })).status).toBe(404);
    expect((await call("DELETE", `/v1/webhooks/${made.body.id}`, { key: b.key })).status).toBe(404);
  });

  it("private, loopback, metadata and plain-http addresses are refused at registration with invalid_webhook", async () => {
    const acct = await makeAccount();
    for (const url of [
      "https://10.0.0.1/hook",
      "https://169.254.169.254/latest",
      "https://127.0.0.1/",
      "https://[::1]/",
      "https://localhost/",
      "https://metadata.google.internal/",
      "http://hooks.example.com/",
    ]) {
      const r = await call<{ error: { code: string } }>("POST", "/v1/webhooks", { key: acct.key, body: { url } });
      expect({ url, status: r.status, code: r.body.error.code }).toEqual({ url, status: 400, code: "invalid_webhook" });
    }
  });

  it("an unknown event is refused with invalid_body", async () => {
    const acct = await makeAccount();
    const r = await call<{ error: { code: string } }>("POST", "/v1/webhooks", {
      key: acct.key,
      body: { url: "https://a.example.com/", events: ["job.exploded"] },
    });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("invalid_body");
  });
});

describe("a job's own webhook", () => {
  it("is refused until the account made its job-webhook secret, then accepted", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const body = { input: { prompt: "x" }, webhook: { url: "https://hooks.example.com/", events: ["job.succeeded"] } };
    const before = await call<{ error: { code: string; message: string } }>("POST", `/v1/models/${model}/jobs`, {
      key: acct.key,
      body,
    });
    expect(before.status).toBe(400);
    expect(before.body.error).toMatchObject({ code: "invalid_webhook" });
    expect(before.body.error.message).toContain("POST /v1/webhooks/job-secret");
    const secret = await call<{ secret: string }>("POST", "/v1/webhooks/job-secret", { key: acct.key });
    expect(secret.status).toBe(201);
    expect(secret.body.secret).toMatch(/^whsec_/);
    expect((await call("POST", `/v1/models/${model}/jobs`, { key: acct.key, body })).status).toBe(202);
  });

  it("a private address is refused at submit", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    await call("POST", "/v1/webhooks/job-secret", { key: acct.key });
    const r = await call<{ error: { code: string } }>("POST", `/v1/models/${model}/jobs`, {
      key: acct.key,
      body: { input: { prompt: "x" }, webhook: "https://192.168.0.10/hook" },
    });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("invalid_webhook");
  });
});

describe("deliveries", () => {
  it("a cancelled job's message is queued durably in the account's WebhookActor, and only its owner reads it", async () => {
    const model = await makeModel();
    const [acct, other] = [await makeAccount(), await makeAccount()];
    // An address nothing answers at: the message stays pending, retried later.
    const made = await call<Created>("POST", "/v1/webhooks", {
      key: acct.key,
      body: { url: "https://hooks.invalid/fg", events: ["job.cancelled"] },
    });
    expect(made.status).toBe(201);
    const job = await submit(model, acct.key);
    expect((await call("POST", `/v1/jobs/${job.body.id}/cancel`, { key: acct.key })).status).toBe(200);
    const deadline = Date.now() + 10_000;
    let deliveries: { id: string; type: string; endpoint: string; state: string; attempts: unknown[] }[] = [];
    while (Date.now() < deadline) {
      const r = await call<{ deliveries: typeof deliveries }>("GET", `/v1/jobs/${job.body.id}/deliveries`, {
        key: acct.key,
      });
      expect(r.status).toBe(200);
      deliveries = r.body.deliveries;
      if (deliveries[0]?.attempts.length) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    expect(deliveries).toHaveLength(1);
    // Its first attempt found no receiver: kept pending for the schedule's next try.
    expect(deliveries[0]).toMatchObject({
      type: "job.cancelled",
      endpoint: made.body.id,
      state: "pending",
      attempts: [{ status: null }],
    });
    expect(deliveries[0]!.id).toMatch(/^msg_/);
    const stub = env.WEBHOOK.get(env.WEBHOOK.idFromName(acct.id));
    await runInDurableObject(stub, async (_instance: WebhookActor, state) => {
      const rows = state.storage.sql.exec("SELECT id, state FROM messages").toArray();
      expect(rows).toHaveLength(1);
    });
    expect((await call("GET", `/v1/jobs/${job.body.id}/deliveries`, { key: other.key })).status).toBe(404);
    expect((await call("POST", `/v1/jobs/${job.body.id}/redeliver`, { key: other.key, body: {} })).status).toBe(404);
    // Admins read any account's deliveries (the dashboard's job inspector); users do not.
    const admin = await call<{ deliveries: typeof deliveries }>("GET", `/v1/admin/jobs/${job.body.id}/deliveries`, {
      key: ADMIN,
    });
    expect(admin.status).toBe(200);
    expect(admin.body.deliveries.map((d) => d.id)).toEqual([deliveries[0]!.id]);
    expect((await call("GET", `/v1/admin/jobs/${job.body.id}/deliveries`, { key: acct.key })).status).toBe(403);
  });
});

describe("the scheduler's outbox", () => {
  it("a message left in a shard's outbox (its hand-over cut short) is handed over by the shard's alarm and then deleted", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const made = await call<Created>("POST", "/v1/webhooks", {
      key: acct.key,
      body: { url: "https://hooks.invalid/outbox", events: ["job.cancelled"] },
    });
    const job = await submit(model, acct.key);
    const route = parseJobId(job.body.id) as JobRoute;
    const shard = env.SCHEDULER.get(env.SCHEDULER.idFromName(schedulerName(route)));
    // As if the shard went down between its commit and the hand-over: a row only the outbox holds.
    await runInDurableObject(shard, async (_i: SchedulerActor, state) => {
      state.storage.sql.exec(
        `INSERT INTO webhook_outbox (account_id, job_id, endpoint, url, type, payload, at)
         VALUES (?, ?, ?, NULL, 'job.cancelled', '{"type":"job.cancelled","timestamp":"2026-01-01T00:00:00.000Z","data":{}}', ?)`,
        acct.id,
        job.body.id,
        made.body.id,
        Date.now(),
      );
      await state.storage.setAlarm(Date.now());
    });
    expect(await runDurableObjectAlarm(shard)).toBe(true);
    const deadline = Date.now() + 10_000;
    let left = 1;
    while (left > 0 && Date.now() < deadline) {
      left = await runInDurableObject(
        shard,
        async (_i: SchedulerActor, state) =>
          state.storage.sql.exec("SELECT count(*) AS n FROM webhook_outbox").one().n as number,
      );
      if (left > 0) await new Promise((r) => setTimeout(r, 50));
    }
    expect(left).toBe(0);
    const d = await call<{ deliveries: { endpoint: string; type: string }[] }>(
      "GET",
      `/v1/jobs/${job.body.id}/deliveries`,
      { key: acct.key },
    );
    expect(d.body.deliveries).toEqual([expect.objectContaining({ endpoint: made.body.id, type: "job.cancelled" })]);
  });
});
