import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer, type WebSocket } from "ws";
import {
  AGENT_PROTOCOL_VERSION,
  AGENT_SUBPROTOCOL,
  CLOSE,
  CONTROL_FRAME_CAP,
  decodeFrame,
  encodeFrame,
  FromAgent,
  PREVIEW_FRAME_CAP,
  type LeaseGrant,
} from "../shared/wire.ts";
import { Agent } from "./agent.ts";
import type { RunnerLike } from "./runner/like.ts";

const JOB = (n: number): string => `job_${String(n).padStart(30, "0")}`;

function lease(n: number, input: Record<string, unknown>): LeaseGrant {
  return { job_id: JOB(n), epoch: 1, deadline: Date.now() + 30_000, attempt: 1, model: "demo", version: "v1", input };
}

/** A runner that finishes every job at once with no frames and no outputs. */
function instantRunner(ran: string[]): RunnerLike {
  return {
    maxBatch: 4,
    models: [{ model: "demo", version: "v1" }],
    run: async (job) => {
      ran.push(job.job_id);
      return { frames: [], outputs: [] };
    },
    cancel: () => {},
    close: async () => {},
    alive: true,
    exited: new Promise(() => {}),
  };
}

/** An edge that welcomes the agent and answers its first request for work with `frame`. */
async function fakeEdge(frame: Uint8Array): Promise<{
  url: string;
  received: FromAgent[];
  close: () => void;
  /** Closes every agent socket with `code`; answers how many connections the edge has seen. */
  closeAll: (code: number, reason: string) => void;
  connections: () => number;
}> {
  const server = new WebSocketServer({ port: 0, host: "127.0.0.1", handleProtocols: () => AGENT_SUBPROTOCOL });
  const received: FromAgent[] = [];
  let sent = false;
  let connections = 0;
  server.on("connection", (ws: WebSocket) => {
    connections++;
    ws.on("message", (data: Buffer) => {
      const f = decodeFrame(new Uint8Array(data), FromAgent);
      if (!f.ok) return;
      received.push(f.msg);
      if (f.msg.type === "agent.hello") {
        ws.send(
          encodeFrame({
            v: AGENT_PROTOCOL_VERSION,
            type: "agent.welcome",
            trace: "t",
            heartbeat_ms: 60_000,
            lease_ttl_ms: 30_000,
            control_frame_cap: CONTROL_FRAME_CAP,
            preview_frame_cap: PREVIEW_FRAME_CAP,
            resumed: [],
            stale: [],
          }),
        );
      }
      if (f.msg.type === "work.request" && !sent) {
        sent = true;
        ws.send(frame);
      }
    });
  });
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () => {
      for (const c of server.clients) c.terminate();
      server.close();
    },
    closeAll: (code, reason) => {
      for (const c of server.clients) c.close(code, reason);
    },
    connections: () => connections,
  };
}

let cleanup: (() => Promise<void>)[] = [];

/** An agent on `edge` over `runner`, with no encoder work and no GPUs; closed after the test. */
function testAgent(
  edge: { url: string; close: () => void },
  runner: RunnerLike,
  opts: { agentId: string; slots: number; prefetch: number; preemptible?: boolean },
): Agent {
  const agent = new Agent({
    url: edge.url,
    token: "t".repeat(40),
    name: "test",
    ...opts,
    maxVramPct: 100,
    startRunner: async () => runner,
    encoder: {
      outputs: async () => [],
      preview: async () => ({ content_type: "image/png", data: new Uint8Array() }),
    },
    gpus: async () => [],
    log: () => {},
  });
  cleanup.push(async () => {
    await agent.close();
    edge.close();
  });
  return agent;
}
afterEach(async () => {
  for (const c of cleanup) await c();
  cleanup = [];
});

describe("the agent and its leases", () => {
  it("a job.leases frame with leases the agent cannot decode fails only those jobs (invalid_input, not retryable) and runs the others", async () => {
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 40; i++) deep = { a: deep };
    const frame = encodeFrame({
      v: AGENT_PROTOCOL_VERSION,
      type: "job.leases",
      trace: "t",
      leases: [
        lease(1, { prompt: "fine" }),
        lease(2, { constructor: { name: "x" } }),
        lease(3, { a: [{ prototype: 1 }] }),
        lease(4, deep),
        lease(5, { prompt: "also fine" }),
      ],
    });
    const edge = await fakeEdge(frame);
    const ran: string[] = [];
    const agent = testAgent(edge, instantRunner(ran), { agentId: "agt_0000000000000001", slots: 4, prefetch: 1 });
    await agent.start();
    const ended = () => edge.received.flatMap((m) => (m.type === "job.results" ? m.results : []));
    const deadline = Date.now() + 3_000;
    while (ended().length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const outcome = Object.fromEntries(ended().map((r) => [r.job_id, r.status === "failed" ? r.code : "complete"]));
    expect(outcome).toEqual({
      [JOB(1)]: "complete",
      [JOB(2)]: "invalid_input",
      [JOB(3)]: "invalid_input",
      [JOB(4)]: "invalid_input",
      [JOB(5)]: "complete",
    });
    expect(ran.toSorted()).toEqual([JOB(1), JOB(5)]);
  });

  it("a drained agent sends its last job's result before its socket closes", async () => {
    const edge = await fakeEdge(
      encodeFrame({ v: AGENT_PROTOCOL_VERSION, type: "job.leases", trace: "t", leases: [lease(1, {})] }),
    );
    const running = Promise.withResolvers<void>();
    const finished = Promise.withResolvers<void>();
    const runner: RunnerLike = {
      ...instantRunner([]),
      run: async () => {
        running.resolve();
        await finished.promise;
        return { frames: [], outputs: [] };
      },
    };
    const agent = testAgent(edge, runner, { agentId: "agt_0000000000000002", slots: 1, prefetch: 0 });
    await agent.start();
    await running.promise;
    const drained = agent.drain();
    finished.resolve();
    await drained;
    // What the agent's main does on SIGTERM: close as soon as the drain resolves.
    await agent.close();
    const deadline = Date.now() + 3_000;
    const results = () => edge.received.flatMap((m) => (m.type === "job.results" ? m.results : []));
    while (results().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(results()).toMatchObject([{ job_id: JOB(1), epoch: 1, status: "succeeded" }]);
  });

  it("a preemptible agent says so in its hello, and reclaimed (4411) it stops its job, reports nothing and does not reconnect", async () => {
    const edge = await fakeEdge(
      encodeFrame({ v: AGENT_PROTOCOL_VERSION, type: "job.leases", trace: "t", leases: [lease(1, {})] }),
    );
    const running = Promise.withResolvers<void>();
    const cancelled: string[] = [];
    const runner: RunnerLike = {
      ...instantRunner([]),
      run: async () => {
        running.resolve();
        return await new Promise(() => {});
      },
      cancel: (id) => void cancelled.push(id),
    };
    const agent = testAgent(edge, runner, {
      agentId: "agt_0000000000000003",
      slots: 1,
      prefetch: 0,
      preemptible: true,
    });
    const reclaimed = new Promise<void>((resolve) => agent.once("reclaimed", () => resolve()));
    await agent.start();
    await running.promise;
    expect(edge.received.find((m) => m.type === "agent.hello")).toMatchObject({ preemptible: true });
    edge.closeAll(CLOSE.reclaimed, "the training cluster takes it back");
    await reclaimed;
    expect(cancelled).toEqual([JOB(1)]);
    // Whatever it would have sent next: it never reconnects, and never reports the job.
    await new Promise((r) => setTimeout(r, 300));
    expect(edge.connections()).toBe(1);
    expect(edge.received.some((m) => m.type === "job.results" || m.type === "job.release")).toBe(false);
  });
});
