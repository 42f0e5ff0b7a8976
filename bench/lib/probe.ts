/**
 * A bare agent-protocol client for taking the agent's round trips apart: one WebSocket to the
 * edge's connect route, frames built with shared/wire.ts, and a wait for the next
 * `job.leases`. No runner, no heartbeats (the benchmark that uses it is over well within one
 * lease TTL), no credits bookkeeping: the caller decides what to send.
 */
import { WebSocket } from "ws";
import {
  AGENT_ID_HEADER,
  AGENT_INSTANCE_HEADER,
  AGENT_PROTOCOL_VERSION,
  AGENT_SUBPROTOCOL,
  decodeFrame,
  encodeFrame,
  ToAgent,
  type FromAgent,
  type LeaseGrant,
} from "../../shared/wire.ts";

export interface Probe {
  send(msg: FromAgent): void;
  /** The next leases the edge sends (queued ones first); rejects after `ms`. */
  nextLeases(ms?: number): Promise<LeaseGrant[]>;
  close(): Promise<void>;
}

/** Connects, says hello with `slots` and `prefetch`, and waits for the welcome. */
export async function openProbe(opts: {
  url: string;
  token: string;
  agentId: string;
  slots: number;
  prefetch: number;
}): Promise<Probe> {
  const u = new URL(opts.url);
  u.protocol = "ws:";
  u.pathname = "/v1/agent/connect";
  const ws = new WebSocket(u.toString(), AGENT_SUBPROTOCOL, {
    headers: {
      authorization: `Bearer ${opts.token}`,
      [AGENT_ID_HEADER]: opts.agentId,
      [AGENT_INSTANCE_HEADER]: `probe-${opts.agentId}`,
    },
    handshakeTimeout: 10_000,
    perMessageDeflate: false,
  });
  ws.binaryType = "nodebuffer";
  const queued: LeaseGrant[][] = [];
  let wake: (() => void) | undefined;
  let welcomed: (() => void) | undefined;
  const welcome = new Promise<void>((res, rej) => {
    welcomed = res;
    setTimeout(() => rej(new Error("no agent.welcome within 10 s")), 10_000).unref();
    ws.once("error", rej);
  });
  ws.on("message", (data: Buffer) => {
    const f = decodeFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), ToAgent);
    if (!f.ok) return;
    if (f.msg.type === "agent.welcome") welcomed?.();
    if (f.msg.type === "job.leases") {
      queued.push(f.msg.leases);
      wake?.();
    }
  });
  const send = (msg: FromAgent): void => ws.send(encodeFrame(msg));
  await new Promise<void>((res, rej) => {
    ws.once("open", () => res());
    ws.once("error", rej);
  });
  send({
    v: AGENT_PROTOCOL_VERSION,
    type: "agent.hello",
    trace: "probe",
    agent_id: opts.agentId,
    name: "probe",
    gpus: [],
    versions: [],
    slots: opts.slots,
    prefetch: opts.prefetch,
    leases: [],
  });
  await welcome;
  return {
    send,
    nextLeases: async (ms = 10_000) => {
      const end = performance.now() + ms;
      while (queued.length === 0) {
        const left = end - performance.now();
        if (left <= 0) throw new Error(`no job.leases within ${ms} ms`);
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((res) => {
          wake = res;
          timer = setTimeout(res, Math.min(left, 100));
        });
        clearTimeout(timer);
        wake = undefined;
      }
      return queued.shift()!;
    },
    close: async () => {
      if (ws.readyState !== WebSocket.OPEN) return;
      await new Promise<void>((res) => {
        ws.once("close", () => res());
        ws.close(1000, "probe done");
        setTimeout(res, 2000).unref();
      });
    },
  };
}
