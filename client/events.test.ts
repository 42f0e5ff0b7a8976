import type { ServerResponse } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import type { JobEvent } from "../shared/events.ts";
import { createClient } from "./client.ts";
import { FloodgateApiError, FloodgateNetworkError, MalformedAnswerError } from "./errors.ts";
import { json, jobView, sse, startServer, type TestServer } from "../test/support/http-server.ts";

const JOB = "job_0000000000aaaaaaaaaaaaaaaa0000";
const FAST = { backoff: { baseMs: 5, maxMs: 20 } };

const running = (n: number) => ({
  status: "running",
  phase: "sampling",
  queue: null,
  attempt: n,
});
const progress = (step: number) => ({ phase: "sampling", step, total: 10 });
const OUTPUT = { name: "video.gif", content_type: "image/gif", size: 3, sha256: "a".repeat(64), url: "http://x/f" };

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function sseHead(res: ServerResponse): void {
  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store" });
}

/** Writes `text`, then cuts the connection without ending the response (a dropped link). */
function writeThenCut(res: ServerResponse, text: string): void {
  res.write(text, () => res.socket?.destroy());
}

async function collect(stream: AsyncIterable<JobEvent>): Promise<JobEvent[]> {
  const out: JobEvent[] = [];
  for await (const e of stream) out.push(e);
  return out;
}

/** The log of a job: g.1 … g.12, the last one terminal. */
const LOG: string[] = [
  sse("g.1", "status", {
    status: "queued",
    phase: "waiting",
    queue: { position: 2, eta_s: 30, reason: "capacity" },
    attempt: null,
  }),
  sse("g.2", "status", running(1)),
  ...Array.from({ length: 9 }, (_, i) => sse(`g.${i + 3}`, "progress", progress(i + 1))),
  sse("g.12", "succeeded", { outputs: [OUTPUT] }),
];

function after(lastId: string | undefined): string[] {
  const n = lastId === undefined ? 0 : Number(lastId.split(".")[1]);
  return LOG.slice(n);
}

describe("jobs.events", () => {
  it("resumes a dropped connection with Last-Event-ID: every event once, in order, ending after the terminal one", async () => {
    let connections = 0;
    server = await startServer((req, res) => {
      connections++;
      sseHead(res);
      const backlog = after(req.headers["last-event-id"] as string | undefined);
      // Each connection delivers four events, then the connection is cut mid-frame.
      if (backlog.length > 4) writeThenCut(res, backlog.slice(0, 4).join("") + backlog[4]!.slice(0, 12));
      else res.end(backlog.join(""));
    });
    const fg = createClient({ url: server.url, apiKey: "fgk_test" });
    const events = await collect(fg.jobs.events(JOB, FAST));
    expect(events.map((e) => e.id)).toEqual(LOG.map((_, i) => `g.${i + 1}`));
    expect(events.at(-1)).toMatchObject({ event: "succeeded", data: { outputs: [OUTPUT] } });
    expect(connections).toBe(3);
    const sent = server.requests.map((r) => r.headers["last-event-id"]);
    expect(sent).toEqual([undefined, "g.4", "g.8"]);
    expect(server.requests.every((r) => r.headers.authorization === "Bearer fgk_test")).toBe(true);
    expect(server.requests[0]!.path).toBe(`/v1/jobs/${JOB}/events`);
  });

  it("never yields an event twice, even when the server resends some after a resume", async () => {
    server = await startServer((req, res) => {
      sseHead(res);
      if (req.headers["last-event-id"] === undefined) {
        writeThenCut(res, LOG.slice(0, 5).join(""));
        return;
      }
      // A misbehaving server: starts three events too early.
      for (const f of LOG.slice(2)) res.write(f);
      res.end();
    });
    const fg = createClient({ url: server.url, apiKey: "k" });
    const ids = (await collect(fg.jobs.events(JOB, FAST))).map((e) => e.id);
    expect(ids).toEqual(LOG.map((_, i) => `g.${i + 1}`));
  });

  it("reconnects when the server closes cleanly before the terminal event", async () => {
    server = await startServer((req, res) => {
      sseHead(res);
      const backlog = after(req.headers["last-event-id"] as string | undefined);
      res.end(backlog.slice(0, 6).join(""));
    });
    const fg = createClient({ url: server.url, apiKey: "k" });
    const ids = (await collect(fg.jobs.events(JOB, FAST))).map((e) => e.id);
    expect(ids).toHaveLength(12);
    expect(server.requests.map((r) => r.headers["last-event-id"])).toEqual([undefined, "g.6"]);
  });

  it("passes a reset status through and then takes the new state's events, older ids included", async () => {
    server = await startServer((req, res) => {
      sseHead(res);
      if (req.headers["last-event-id"] === undefined) {
        writeThenCut(res, LOG.slice(0, 3).join(""));
        return;
      }
      // The job actor restarted: a new generation, a snapshot marked reset, then the latest
      // progress (logged before the snapshot) and the end.
      res.write(sse("h.5", "status", { ...running(1), reset: true }));
      res.write(sse("h.4", "progress", progress(7)));
      res.end(sse("h.6", "succeeded", { outputs: [] }));
    });
    const fg = createClient({ url: server.url, apiKey: "k" });
    const events = await collect(fg.jobs.events(JOB, FAST));
    expect(events.map((e) => e.id)).toEqual(["g.1", "g.2", "g.3", "h.5", "h.4", "h.6"]);
    expect(events[3]).toMatchObject({ event: "status", data: { reset: true } });
  });

  it("takes a connection that sends nothing for idleTimeoutMs as dead and resumes", async () => {
    server = await startServer((req, res) => {
      sseHead(res);
      if (req.headers["last-event-id"] === undefined) {
        res.write(LOG.slice(0, 2).join(""));
        return; // then silence, connection open
      }
      res.end(after(req.headers["last-event-id"] as string).join(""));
    });
    const fg = createClient({ url: server.url, apiKey: "k" });
    const events = await collect(fg.jobs.events(JOB, { ...FAST, idleTimeoutMs: 150 }));
    expect(events).toHaveLength(12);
    expect(server.requests[1]!.headers["last-event-id"]).toBe("g.2");
  });

  it("starts after lastEventId when asked to", async () => {
    server = await startServer((req, res) => {
      sseHead(res);
      res.end(after(req.headers["last-event-id"] as string | undefined).join(""));
    });
    const fg = createClient({ url: server.url, apiKey: "k" });
    const events = await collect(fg.jobs.events(JOB, { lastEventId: "g.10" }));
    expect(events.map((e) => e.id)).toEqual(["g.11", "g.12"]);
  });

  it("decodes UTF-8 split across chunks and skips events it does not know", async () => {
    const msg = "ünïcødé 🦊";
    const frame = Buffer.from(sse("g.1", "log", { level: "info", message: msg }));
    server = await startServer(async (_req, res) => {
      sseHead(res);
      const cut = frame.indexOf(Buffer.from("🦊")) + 2;
      res.write(frame.subarray(0, cut));
      await new Promise((r) => setTimeout(r, 20));
      res.write(frame.subarray(cut));
      res.write(sse("g.2", "heartbeat", { future: true }));
      res.end(sse("g.3", "cancelled", {}));
    });
    const fg = createClient({ url: server.url, apiKey: "k" });
    const events = await collect(fg.jobs.events(JOB));
    expect(events).toEqual([
      { id: "g.1", event: "log", data: { level: "info", message: msg } },
      { id: "g.3", event: "cancelled", data: {} },
    ]);
  });

  it("throws a known event whose data fails its schema as MalformedAnswerError, never casting it", async () => {
    server = await startServer((_req, res) => {
      sseHead(res);
      res.end(sse("g.1", "progress", { phase: "sampling", step: "three", total: 10 }));
    });
    const fg = createClient({ url: server.url, apiKey: "k" });
    await expect(collect(fg.jobs.events(JOB))).rejects.toBeInstanceOf(MalformedAnswerError);
  });

  it("throws an error answer that retrying cannot fix at once, as FloodgateApiError", async () => {
    server = await startServer((_req, res) =>
      json(res, 404, { error: { code: "job_not_found", message: `no job ${JOB}` } }),
    );
    const fg = createClient({ url: server.url, apiKey: "k" });
    const err = await collect(fg.jobs.events(JOB, FAST)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FloodgateApiError);
    expect(err).toMatchObject({ status: 404, code: "job_not_found", requestId: "req-test" });
    expect(server.requests).toHaveLength(1);
  });

  it("retries 503 answers, honouring Retry-After", async () => {
    server = await startServer((req, res) => {
      if (server!.requests.length === 1) {
        json(res, 503, { error: { code: "unavailable", message: "busy" } }, { "retry-after": "0" });
        return;
      }
      sseHead(res);
      res.end(after(req.headers["last-event-id"] as string | undefined).join(""));
    });
    const fg = createClient({ url: server.url, apiKey: "k" });
    expect(await collect(fg.jobs.events(JOB, FAST))).toHaveLength(12);
  });

  it("gives up with FloodgateNetworkError after maxReconnects fruitless tries", async () => {
    server = await startServer((_req, res) => res.socket?.destroy());
    const fg = createClient({ url: server.url, apiKey: "k" });
    const err = await collect(fg.jobs.events(JOB, { ...FAST, maxReconnects: 3 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FloodgateNetworkError);
    expect(server.requests).toHaveLength(4);
  });

  it("closes the connection when the consumer stops early", async () => {
    let closed!: () => void;
    const closedP = new Promise<void>((r) => (closed = r));
    server = await startServer((_req, res, raw) => {
      sseHead(res);
      res.write(LOG.slice(0, 3).join(""));
      raw.socket.once("close", () => closed());
    });
    const fg = createClient({ url: server.url, apiKey: "k" });
    const seen: string[] = [];
    for await (const e of fg.jobs.events(JOB)) {
      seen.push(e.id);
      if (e.id === "g.2") break;
    }
    await closedP;
    expect(seen).toEqual(["g.1", "g.2"]);
  });

  it("rejects with the caller's abort reason", async () => {
    server = await startServer((_req, res) => {
      sseHead(res);
      res.write(LOG[0]!);
    });
    const fg = createClient({ url: server.url, apiKey: "k" });
    const ctl = new AbortController();
    const reason = new Error("stop");
    const err = await (async () => {
      try {
        for await (const e of fg.jobs.events(JOB, { signal: ctl.signal })) if (e.id === "g.1") ctl.abort(reason);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBe(reason);
  });

  it("falls back to polling the job when the edge has no events route", async () => {
    let reads = 0;
    server = await startServer((req, res) => {
      if (req.path.endsWith("/events")) {
        json(res, 404, { error: { code: "not_found", message: "no such route" } });
        return;
      }
      reads++;
      const views = [
        jobView(JOB),
        jobView(JOB, {
          status: "running",
          phase: "sampling",
          queue: null,
          attempts: [
            {
              n: 1,
              version: null,
              epoch: 1,
              started_at: "2025-01-01T00:00:01.000Z",
              ended_at: null,
              executing_s: null,
              outcome: "running",
              reason: null,
            },
          ],
          progress: { step: 3, total: 10, phase: "sampling", updated_at: "2025-01-01T00:00:02.000Z" },
        }),
        jobView(JOB, { status: "succeeded", phase: "done", queue: null, outputs: [OUTPUT] }),
      ];
      json(res, 200, views[Math.min(reads - 1, 2)]);
    });
    const fg = createClient({ url: server.url, apiKey: "k" });
    const events = await collect(fg.jobs.events(JOB, { pollIntervalMs: 5 }));
    // As the edge does: a status for the end, then the terminal event.
    expect(events.map((e) => e.event)).toEqual(["status", "status", "progress", "status", "succeeded"]);
    expect(events[2]).toMatchObject({ data: { step: 3, total: 10 } });
    expect(events[1]).toMatchObject({ data: { status: "running", attempt: 1 } });
    expect(events[1]?.data).not.toHaveProperty("agent");
  });
});
