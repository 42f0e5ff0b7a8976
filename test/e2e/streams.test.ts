import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { openProbe } from "../../bench/lib/probe.ts";
import { startAgent, waitExit } from "../../cli/dev.ts";
import { decode, encode } from "../../shared/codec.ts";
import { AGENT_PROTOCOL_VERSION } from "../../shared/wire.ts";
import { api, startStack, type Stack } from "./stack.ts";

interface Sse {
  id: string;
  event: string;
  data: Record<string, unknown>;
}

const SYNTH = "stream-synth";
let stack: Stack;
let agentProc: ChildProcess | undefined;

/** Reads SSE from a plain HTTP response body (no client library), until the stream ends. */
async function readAll(res: Response, onEvent?: (e: Sse) => boolean): Promise<Sse[]> {
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const dec = new TextDecoder();
  const out: Sse[] = [];
  let buf = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return out;
    buf += dec.decode(value, { stream: true });
    let end: number;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const f: Record<string, string> = {};
      for (const line of block.split("\n")) {
        if (line.startsWith(":") || !line.includes(":")) continue;
        f[line.slice(0, line.indexOf(":"))] = line.slice(line.indexOf(":") + 1).trimStart();
      }
      if (!f.event) continue;
      const e = { id: f.id ?? "", event: f.event, data: JSON.parse(f.data ?? "{}") as Record<string, unknown> };
      out.push(e);
      if (onEvent?.(e)) {
        await reader.cancel();
        return out;
      }
    }
  }
}

function subscribe(id: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${stack.config.url}/v1/jobs/${id}/events`, {
    headers: { authorization: `Bearer ${stack.config.api_key}`, ...headers },
  });
}

beforeAll(async () => {
  stack = await startStack({ agents: 0 });
  const put = await api(
    stack,
    "PUT",
    `/v1/admin/models/${SYNTH}`,
    { input_schema: { type: "object" } },
    stack.config.admin_key,
  );
  if (put.status !== 201) throw new Error(`registering ${SYNTH} failed: ${JSON.stringify(put.body)}`);
  const tok = await api<{ token: string }>(
    stack,
    "POST",
    "/v1/admin/agent-tokens",
    { pool: "streams", models: [SYNTH] },
    stack.config.admin_key,
  );
  agentProc = startAgent({
    url: stack.config.url,
    token: tok.body.token,
    state: stack.state,
    index: 1,
    runner: "synthetic",
    env: { ...process.env, FLOODGATE_SYNTHETIC_MODELS: SYNTH },
    stdio: "ignore",
  });
});

afterAll(async () => {
  agentProc?.kill("SIGTERM");
  if (agentProc) await waitExit(agentProc, 10_000);
  await stack?.stop("SIGTERM");
});

describe("job event streams end to end", () => {
  it("SSE read by a plain HTTP client shows the queue, every step, and the result; a resumed stream has no gap and no duplicate", async () => {
    const sub = await api<{ id: string }>(stack, "POST", `/v1/models/${SYNTH}/jobs`, {
      input: { steps: 20, service_ms: 2000 },
    });
    const first = await subscribe(sub.body.id);
    expect(first.headers.get("content-type")).toContain("text/event-stream");
    // Read until step 8, then drop the connection and come back with Last-Event-ID.
    const a = await readAll(first, (e) => e.event === "progress" && e.data.step === 8);
    const last = a.at(-1)?.id ?? "";
    const b = await readAll(await subscribe(sub.body.id, { "last-event-id": last }));
    const all = [...a, ...b];
    const ids = all.map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    const steps = all.filter((e) => e.event === "progress" && e.data.phase === "sampling").map((e) => e.data.step);
    expect(steps).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(all[0]?.event).toBe("status");
    expect(all.at(-1)).toMatchObject({ event: "succeeded" });
  }, 60_000);

  it("500 subscribers on one job all see every event", async () => {
    // The job waits for an agent of its own model until every subscriber is connected.
    const model = `${SYNTH}-fanout`;
    await api(stack, "PUT", `/v1/admin/models/${model}`, { input_schema: { type: "object" } }, stack.config.admin_key);
    const sub = await api<{ id: string }>(stack, "POST", `/v1/models/${model}/jobs`, {
      input: { steps: 10, service_ms: 1000 },
    });
    const streams = await Promise.all(Array.from({ length: 500 }, () => subscribe(sub.body.id)));
    expect(streams.every((r) => r.status === 200)).toBe(true);
    const reading = Promise.all(streams.map((r) => readAll(r)));
    const tok = await api<{ token: string }>(
      stack,
      "POST",
      "/v1/admin/agent-tokens",
      { pool: "fanout", models: [model] },
      stack.config.admin_key,
    );
    const late = startAgent({
      url: stack.config.url,
      token: tok.body.token,
      state: stack.state,
      index: 2,
      runner: "synthetic",
      env: { ...process.env, FLOODGATE_SYNTHETIC_MODELS: model },
      stdio: "ignore",
    });
    try {
      const results = await reading;
      for (const events of results) {
        const steps = events
          .filter((e) => e.event === "progress" && e.data.phase === "sampling")
          .map((e) => e.data.step);
        expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        expect(events[0]).toMatchObject({ event: "status", data: { status: "queued" } });
        expect(events.at(-1)?.event).toBe("succeeded");
      }
    } finally {
      late.kill("SIGTERM");
      await waitExit(late, 10_000);
    }
  }, 120_000);

  it("a WebSocket subscriber that acknowledges nothing is closed with 1008 once 4 MiB went unacknowledged; a reader that keeps up misses nothing", async () => {
    const model = `${SYNTH}-lag`;
    await api(stack, "PUT", `/v1/admin/models/${model}`, { input_schema: { type: "object" } }, stack.config.admin_key);
    const job = await api<{ id: string }>(stack, "POST", `/v1/models/${model}/jobs`, { input: {} });
    const u = new URL(`${stack.config.url}/v1/jobs/${job.body.id}/events`);
    u.protocol = "ws:";
    const stalled = new WebSocket(u, { headers: { authorization: `Bearer ${stack.config.api_key}` } });
    await new Promise<void>((res, rej) => {
      stalled.once("open", () => res());
      stalled.once("error", rej);
    });
    // It reads and acknowledges nothing from now on.
    stalled.pause();
    // Another WebSocket subscriber acknowledges each event as it takes it.
    const acking = new WebSocket(u, { headers: { authorization: `Bearer ${stack.config.api_key}` } });
    let ackedPreviews = 0;
    let ackingClosed: number | undefined;
    acking.on("message", (data: Buffer) => {
      const e = decode(new Uint8Array(data)) as { id: string; event: string };
      if (e.event === "preview") ackedPreviews++;
      acking.send(encode({ ack: e.id }));
    });
    acking.on("close", (code) => (ackingClosed = code));
    await new Promise<void>((res, rej) => {
      acking.once("open", () => res());
      acking.once("error", rej);
    });
    const reader = await subscribe(job.body.id);
    const frames = 80;
    const seen = readAll(reader, (e) => e.event === "preview" && e.data.size === 256 * 1024 + frames - 1);
    const tok = await api<{ token: string }>(
      stack,
      "POST",
      "/v1/admin/agent-tokens",
      { pool: "lag", models: [model] },
      stack.config.admin_key,
    );
    const probe = await openProbe({
      url: stack.config.url,
      token: tok.body.token,
      agentId: `agt_lag${String(Date.now()).slice(-13)}`,
      slots: 1,
      prefetch: 0,
    });
    try {
      probe.send({ v: AGENT_PROTOCOL_VERSION, type: "work.request", trace: "t", credits: 1 });
      const [lease] = await probe.nextLeases();
      if (!lease) throw new Error("no lease");
      // 80 previews of 256 KiB (20 MiB), one every 25 ms (10 MiB/s), each a byte longer than the
      // last so the readers can tell them apart.
      for (let i = 0; i < frames; i++) {
        await new Promise((r) => setTimeout(r, 25));
        probe.send({
          v: AGENT_PROTOCOL_VERSION,
          type: "job.preview",
          trace: "t",
          job_id: lease.job_id,
          epoch: lease.epoch,
          content_type: "image/png",
          data: new Uint8Array(256 * 1024 + i),
        });
      }
      const read = await seen;
      expect(read.filter((e) => e.event === "preview")).toHaveLength(frames);
      const caughtUp = (): boolean => ackedPreviews >= frames;
      for (const end = Date.now() + 10_000; !caughtUp() && Date.now() < end;)
        await new Promise((r) => setTimeout(r, 50));
      expect({ ackedPreviews, ackingClosed }).toEqual({ ackedPreviews: frames, ackingClosed: undefined });
      // The stalled subscriber reads again: what was sent before it was dropped, then its close.
      const got: string[] = [];
      stalled.on("message", (data: Buffer) => got.push((decode(new Uint8Array(data)) as { event: string }).event));
      const closed = new Promise<number>((res) => stalled.once("close", (code) => res(code)));
      stalled.resume();
      expect(await closed).toBe(1008);
      expect(got.filter((e) => e === "preview").length).toBeLessThan(frames);
    } finally {
      await probe.close();
      stalled.terminate();
      acking.terminate();
    }
  }, 60_000);
});
