import type { ServerResponse } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import type { JobEvent } from "../shared/events.ts";
import { createClient } from "./client.ts";
import { JobCancelledError, JobExpiredError, JobFailedError, TimeoutError } from "./errors.ts";
import { json, sse, startServer, type Recorded, type TestServer } from "../test/support/http-server.ts";

const JOB = "job_0000000000bbbbbbbbbbbbbbbb0000";
const ANSWER = { id: JOB, status: "queued", model: "demo", tier: "plus", created_at: "2025-01-01T00:00:00.000Z" };
const QUEUED = sse("g.1", "status", {
  status: "queued",
  phase: "waiting",
  queue: { position: 0, eta_s: 5, reason: "capacity" },
  attempt: null,
});
const OUTPUT = { name: "video.gif", content_type: "image/gif", size: 3, sha256: "b".repeat(64), url: "http://x/f" };

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** A server that accepts the submit and streams `frames` on the events route (open if `end` is false). */
async function edge(frames: string[], end = true): Promise<TestServer> {
  return await startServer((req: Recorded, res: ServerResponse) => {
    if (req.method === "POST") return json(res, 202, ANSWER);
    res.writeHead(200, { "content-type": "text/event-stream" });
    if (end) res.end(frames.join(""));
    else res.write(frames.join(""));
  });
}

describe("run", () => {
  it("calls onSubmitted with the id before any waiting, then resolves with the outputs", async () => {
    server = await edge([
      QUEUED,
      sse("g.2", "progress", { phase: "sampling", step: 1, total: 2 }),
      sse("g.3", "succeeded", { outputs: [OUTPUT] }),
    ]);
    const fg = createClient({ url: server.url, apiKey: "k" });
    const order: string[] = [];
    const seen: JobEvent[] = [];
    const result = await fg.run(
      "demo",
      { prompt: "fox" },
      {
        onSubmitted: (id) => {
          order.push(`submitted ${id}`);
          // Nothing has been asked of the event stream yet.
          order.push(`requests so far: ${server!.requests.map((r) => r.method).join(",")}`);
        },
        onEvent: (e) => {
          seen.push(e);
        },
      },
    );
    expect(result).toEqual({ id: JOB, outputs: [OUTPUT] });
    expect(order).toEqual([`submitted ${JOB}`, "requests so far: POST"]);
    expect(seen.map((e) => e.event)).toEqual(["status", "progress", "succeeded"]);
    expect(server.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      "POST /v1/models/demo/jobs",
      `GET /v1/jobs/${JOB}/events`,
    ]);
  });

  it("makes an idempotency key when none is given, so a retried submit never makes two jobs", async () => {
    server = await startServer((req, res) => {
      if (req.method === "POST") {
        // The first submit is lost with its connection; the client cannot know whether it landed.
        if (server!.requests.length === 1) return res.socket?.destroy();
        return json(res, 202, ANSWER);
      }
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(sse("g.1", "succeeded", { outputs: [] }));
    });
    const fg = createClient({ url: server.url, apiKey: "k" });
    await fg.run("demo", {});
    const keys = server.requests.filter((r) => r.method === "POST").map((r) => r.headers["idempotency-key"]);
    expect(keys).toHaveLength(2);
    expect(keys[0]).toMatch(/^fgc_[0-9a-f]{32}$/);
    expect(keys[1]).toBe(keys[0]);
  });

  it("keeps the caller's idempotency key", async () => {
    server = await edge([sse("g.1", "succeeded", { outputs: [] })]);
    const fg = createClient({ url: server.url, apiKey: "k" });
    await fg.run("demo", {}, { idempotencyKey: "mine" });
    expect(server.requests[0]!.headers["idempotency-key"]).toBe("mine");
  });

  it("rejects with JobFailedError carrying the job id, code and message", async () => {
    server = await edge([QUEUED, sse("g.2", "failed", { error: { code: "oom", message: "CUDA out of memory" } })]);
    const fg = createClient({ url: server.url, apiKey: "k" });
    const err = await fg.run("demo", {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobFailedError);
    expect(err).toMatchObject({ jobId: JOB, code: "oom" });
    expect((err as Error).message).toMatch(/CUDA out of memory/);
  });

  it("rejects with JobCancelledError and JobExpiredError on those ends", async () => {
    server = await edge([sse("g.1", "cancelled", {})]);
    const fg = createClient({ url: server.url, apiKey: "k" });
    const cancelled = await fg.run("demo", {}).catch((e: unknown) => e);
    expect(cancelled).toBeInstanceOf(JobCancelledError);
    expect(cancelled).toMatchObject({ jobId: JOB });
    await server.close();
    server = await edge([sse("g.1", "expired", { error: { code: "expired", message: "waited 86400 s" } })]);
    const fg2 = createClient({ url: server.url, apiKey: "k" });
    const expired = await fg2.run("demo", {}).catch((e: unknown) => e);
    expect(expired).toBeInstanceOf(JobExpiredError);
    expect(expired).toMatchObject({ jobId: JOB, code: "expired" });
  });

  it("rejects with a TimeoutError that carries the job id when the deadline passes first", async () => {
    server = await edge([QUEUED], false);
    const fg = createClient({ url: server.url, apiKey: "k" });
    let submitted: string | undefined;
    const started = Date.now();
    const err = await fg
      .run("demo", {}, { timeoutMs: 200, onSubmitted: (id) => void (submitted = id) })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err).toMatchObject({ jobId: JOB, timeoutMs: 200 });
    expect(submitted).toBe(JOB);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("times out while reconnecting too, not only while reading", async () => {
    server = await startServer((req, res) => {
      if (req.method === "POST") return json(res, 202, ANSWER);
      json(res, 503, { error: { code: "unavailable", message: "busy" } }, { "retry-after": "20" });
    });
    const fg = createClient({ url: server.url, apiKey: "k" });
    const err = await fg.run("demo", {}, { timeoutMs: 150 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err).toMatchObject({ jobId: JOB });
  });

  it("stops waiting with the caller's abort reason, the job untouched", async () => {
    server = await edge([QUEUED], false);
    const fg = createClient({ url: server.url, apiKey: "k" });
    const ctl = new AbortController();
    const reason = new Error("user left");
    const p = fg.run("demo", {}, { signal: ctl.signal, onEvent: () => ctl.abort(reason) });
    await expect(p).rejects.toBe(reason);
    expect(server.requests.some((r) => r.path.endsWith("/cancel"))).toBe(false);
  });

  it("waits for an existing job with jobs.wait", async () => {
    server = await edge([sse("g.1", "succeeded", { outputs: [OUTPUT] })]);
    const fg = createClient({ url: server.url, apiKey: "k" });
    expect(await fg.jobs.wait(JOB)).toEqual({ id: JOB, outputs: [OUTPUT] });
  });
});
