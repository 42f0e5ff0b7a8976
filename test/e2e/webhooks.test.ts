/**
 * Webhooks end to end: `floodgate dev` (its local switch lets webhooks reach 127.0.0.1, and its
 * retry schedule is shortened tenfold here) sends to a real receiver on this machine, which
 * verifies every delivery with the Standard Webhooks reference library.
 */
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type Recorded, type TestServer } from "../support/http-server.ts";
import { api, freePort, startStack, type Stack } from "./stack.ts";

/** Waits for `check` to hold, polling, up to `ms`. */
async function until(what: string, check: () => boolean | Promise<boolean>, ms = 90_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function headersOf(r: Recorded): Record<string, string> {
  return Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, String(v)]));
}

/** The payload, verified with `secret` by the reference library (it throws on a bad signature). */
function verified(r: Recorded, secret: string): { type: string; data: { id: string; status: string } } {
  return new Webhook(secret).verify(r.body, headersOf(r)) as { type: string; data: { id: string; status: string } };
}

async function cancelledJob(stack: Stack, extra: Record<string, unknown> = {}): Promise<string> {
  const sub = await api<{ id: string }>(stack, "POST", "/v1/models/demo/jobs", {
    input: { prompt: "a fox" },
    ...extra,
  });
  expect(sub.status).toBe(202);
  expect((await api(stack, "POST", `/v1/jobs/${sub.body.id}/cancel`)).status).toBe(200);
  return sub.body.id;
}

describe("webhooks", () => {
  const stacks: Stack[] = [];
  let receiver: TestServer;
  /** Answers per path: a queue of statuses, then 200. */
  const plan = new Map<string, number[]>();
  const hits = (path: string): Recorded[] => receiver.requests.filter((r) => r.path === path);

  beforeAll(async () => {
    process.env.FLOODGATE_WEBHOOK_RETRY_SCALE = "0.1";
    receiver = await startServer((req, res) => {
      const status = plan.get(req.path)?.shift() ?? 200;
      res.writeHead(status, { "content-type": "text/plain" });
      res.end(status === 200 ? "ok" : "not now");
    });
  });
  afterAll(async () => {
    for (const s of stacks) await s.stop("SIGKILL");
    await receiver?.close();
    delete process.env.FLOODGATE_WEBHOOK_RETRY_SCALE;
  });

  it("a delivery answered 500 twice is retried with the same webhook-id across an edge restart, and every attempt verifies", async () => {
    const port = await freePort();
    const first = await startStack({ port, agents: 0 });
    stacks.push(first);
    const made = await api<{ id: string; secret: string }>(first, "POST", "/v1/webhooks", {
      url: `${receiver.url}/retry`,
      events: ["job.cancelled"],
    });
    expect(made.status).toBe(201);
    plan.set("/retry", [500, 500]);
    const jobId = await cancelledJob(first);
    await until("two failed attempts", () => hits("/retry").length >= 2);
    // The edge goes down with the message pending; its state on disk must bring it back.
    expect(await first.stop("SIGTERM")).toBe(0);
    const second = await startStack({ port, state: first.state, agents: 1 });
    stacks.push(second);
    await until("the third attempt", async () => {
      // Reading the deliveries wakes the account's WebhookActor, which re-arms its alarm.
      await api(second, "GET", `/v1/jobs/${jobId}/deliveries`);
      return hits("/retry").length >= 3;
    });
    const got = hits("/retry");
    expect(got).toHaveLength(3);
    const ids = new Set(got.map((r) => r.headers["webhook-id"]));
    expect(ids.size).toBe(1);
    for (const r of got)
      expect(verified(r, made.body.secret)).toMatchObject({
        type: "job.cancelled",
        data: { id: jobId, status: "cancelled" },
      });
    const list = await api<{ deliveries: { id: string; state: string; attempts: { status: number | null }[] }[] }>(
      second,
      "GET",
      `/v1/jobs/${jobId}/deliveries`,
    );
    expect(list.body.deliveries).toHaveLength(1);
    expect(list.body.deliveries[0]).toMatchObject({ id: [...ids][0], state: "delivered" });
    expect(list.body.deliveries[0]!.attempts.map((a) => a.status)).toEqual([500, 500, 200]);
    // A manual redelivery sends the same message again, with its id.
    const again = await api<{ redelivered: number }>(second, "POST", `/v1/jobs/${jobId}/redeliver`, {});
    expect(again.body.redelivered).toBe(1);
    await until("the redelivery", () => hits("/retry").length >= 4);
    expect(hits("/retry")[3]!.headers["webhook-id"]).toBe([...ids][0]);
  });

  it("a rotated secret verifies with either the old or the new secret during the overlap", async () => {
    const stack = stacks.at(-1)!;
    const made = await api<{ id: string; secret: string }>(stack, "POST", "/v1/webhooks", {
      url: `${receiver.url}/rotate`,
      events: ["job.cancelled"],
    });
    const rotated = await api<{ secret: string }>(stack, "POST", `/v1/webhooks/${made.body.id}/rotate`);
    expect(rotated.status).toBe(200);
    const jobId = await cancelledJob(stack);
    await until("the delivery", () => hits("/rotate").length >= 1);
    const r = hits("/rotate")[0]!;
    expect(verified(r, made.body.secret).data.id).toBe(jobId);
    expect(verified(r, rotated.body.secret).data.id).toBe(jobId);
  });

  it("a job's own webhook is signed with the account's job-webhook secret", async () => {
    const stack = stacks.at(-1)!;
    const secret = await api<{ secret: string }>(stack, "POST", "/v1/webhooks/job-secret");
    expect(secret.status).toBe(201);
    const jobId = await cancelledJob(stack, { webhook: { url: `${receiver.url}/own`, events: ["job.cancelled"] } });
    await until("the delivery", () => hits("/own").length >= 1);
    expect(verified(hits("/own")[0]!, secret.body.secret)).toMatchObject({
      type: "job.cancelled",
      data: { id: jobId },
    });
  });

  it("a job that runs tells running then succeeded, in order, with its outputs' signed URLs", async () => {
    const stack = stacks.at(-1)!;
    const made = await api<{ secret: string }>(stack, "POST", "/v1/webhooks", {
      url: `${receiver.url}/run`,
      events: ["job.running", "job.succeeded"],
    });
    const sub = await api<{ id: string }>(stack, "POST", "/v1/models/demo/jobs", { input: { prompt: "a red fox" } });
    expect(sub.status).toBe(202);
    await until("both events", () => hits("/run").length >= 2, 120_000);
    const events = hits("/run").map((r) => verified(r, made.body.secret));
    expect(events.map((e) => [e.type, e.data.id, e.data.status])).toEqual([
      ["job.running", sub.body.id, "running"],
      ["job.succeeded", sub.body.id, "succeeded"],
    ]);
    const outputs = (events[1]!.data as unknown as { outputs: { url: string }[] }).outputs;
    expect(outputs.length).toBeGreaterThan(0);
    const file = await fetch(outputs[0]!.url);
    expect(file.status).toBe(200);
  });

  it("an endpoint answering 410 is disabled, and the account's other endpoints are told", async () => {
    const stack = stacks.at(-1)!;
    const watcher = await api<{ secret: string }>(stack, "POST", "/v1/webhooks", {
      url: `${receiver.url}/watcher`,
      events: ["webhook.disabled"],
    });
    const gone = await api<{ id: string }>(stack, "POST", "/v1/webhooks", {
      url: `${receiver.url}/gone`,
      events: ["job.cancelled"],
    });
    plan.set("/gone", [410]);
    await cancelledJob(stack);
    await until("the notice", () => hits("/watcher").length >= 1);
    const notice = verified(hits("/watcher")[0]!, watcher.body.secret) as unknown as {
      type: string;
      data: { webhook: { id: string; disabled_reason: string } };
    };
    expect(notice.type).toBe("webhook.disabled");
    expect(notice.data.webhook.id).toBe(gone.body.id);
    const list = await api<{ webhooks: { id: string; disabled_at: string | null; disabled_reason: string | null }[] }>(
      stack,
      "GET",
      "/v1/webhooks",
    );
    expect(list.body.webhooks.find((w) => w.id === gone.body.id)).toMatchObject({
      disabled_reason: "the endpoint answered 410 Gone",
    });
    // Nothing more is sent to it: a message made for it fails without an attempt reaching it.
    const later = await cancelledJob(stack);
    await until("the later message to fail", async () => {
      const d = await api<{ deliveries: { endpoint: string; state: string }[] }>(
        stack,
        "GET",
        `/v1/jobs/${later}/deliveries`,
      );
      const mine = d.body.deliveries.filter((m) => m.endpoint === gone.body.id);
      return mine.every((m) => m.state === "failed");
    });
    expect(hits("/gone")).toHaveLength(1);
  });

  it("a private address is refused at registration, even with the local switch on", async () => {
    const stack = stacks.at(-1)!;
    for (const url of ["http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data"]) {
      const r = await api<{ error: { code: string } }>(stack, "POST", "/v1/webhooks", { url });
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe("invalid_webhook");
    }
  });
});
