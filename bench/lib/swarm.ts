/**
 * A swarm of simulated agents in a worker thread: bare agent-protocol clients (one WebSocket
 * each, frames from shared/wire.ts, as bench/lib/probe.ts) that say hello, heartbeat at the
 * welcome's `heartbeat_ms` (each at its own phase, as real agents started at different times
 * are), ask for work, and answer each lease with a success after a fixed service time. No
 * runner, no outputs: what the edge pays per connected agent is what is measured, and the
 * benchmark's process stays light enough to hold a thousand sockets.
 *
 * Times are absolute (`performance.timeOrigin + performance.now()`, ms), so the main thread can
 * join lease receipts with its submits. The same file is the worker's entry: loaded in a worker
 * thread with {@link MARK} set, it serves the commands of {@link SwarmThread}.
 */
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
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
} from "../../shared/wire.ts";

const MARK = "floodgate-bench-swarm";

/** What a swarm thread is told to start with. */
export interface SwarmOptions {
  url: string;
  token: string;
  ids: string[];
  /** Connections opened at once (the rest wait their turn). */
  concurrency: number;
  slots: number;
  /** How long a lease is "run" before its success is sent (ms). */
  serviceMs: number;
}

/** One agent's connect: from opening the socket to `agent.welcome` (ms), or why it failed. */
export interface ConnectResult {
  id: string;
  ms: number;
  error?: string;
}

/** What the swarm saw since the last {@link SwarmThread.stats} call. */
export interface SwarmStats {
  heartbeats: number;
  acks: number;
  /** Each lease received: job id and absolute time (ms). */
  leases: { job: string; at: number }[];
  results: number;
  /** Sockets that closed on their own (code and reason). */
  closes: string[];
  /** This thread's CPU since the last call (ms). */
  cpuMs: number;
}

type Command = { type: "connect"; opts: SwarmOptions } | { type: "stats" } | { type: "close" };

/** A worker thread holding part of the swarm. */
export interface SwarmThread {
  /** Connects its agents; answers each one's connect time. */
  connect(opts: SwarmOptions): Promise<ConnectResult[]>;
  /** What it saw since the last call (or the connect). */
  stats(): Promise<SwarmStats>;
  /** Closes every socket and ends the thread. */
  close(): Promise<void>;
}

/** Starts a swarm thread. */
export async function startSwarmThread(): Promise<SwarmThread> {
  const worker = new Worker(new URL(import.meta.url), { workerData: { [MARK]: true } });
  let failed: Error | undefined;
  const waiting: ((m: unknown, err?: Error) => void)[] = [];
  worker.on("message", (m: unknown) => waiting.shift()?.(m));
  const fail = (err: Error): void => {
    failed ??= err;
    for (const w of waiting.splice(0)) w(undefined, err);
  };
  worker.on("error", fail);
  worker.once("exit", (code) => fail(new Error(`the swarm thread exited (${code})`)));
  const ask = <T>(command: Command | { type: "ready" }): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (failed) {
        reject(failed);
        return;
      }
      waiting.push((m, err) => (err ? reject(err) : resolve(m as T)));
      if (command.type !== "ready") worker.postMessage(command, []);
    });
  await ask<void>({ type: "ready" });
  return {
    connect: (opts) => ask<ConnectResult[]>({ type: "connect", opts }),
    stats: () => ask<SwarmStats>({ type: "stats" }),
    close: async () => {
      await ask<void>({ type: "close" }).catch(() => undefined);
      await worker.terminate();
    },
  };
}

// ---- the worker's side ----

const now = (): number => performance.timeOrigin + performance.now();

/** A fresh trace id for one frame. */
const trace = (): string =>
  Math.floor(Math.random() * 2 ** 48)
    .toString(16)
    .padStart(16, "0");

class Swarm {
  private sockets: WebSocket[] = [];
  private timers: NodeJS.Timeout[] = [];
  private stats: Omit<SwarmStats, "cpuMs"> = { heartbeats: 0, acks: 0, leases: [], results: 0, closes: [] };
  private cpu = process.threadCpuUsage();
  private closing = false;

  async connect(opts: SwarmOptions): Promise<ConnectResult[]> {
    const results: ConnectResult[] = [];
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < opts.ids.length) {
        const id = opts.ids[next++] as string;
        results.push(await this.one(opts, id));
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.ids.length) }, lane));
    return results;
  }

  private one(opts: SwarmOptions, id: string): Promise<ConnectResult> {
    const t0 = now();
    const u = new URL(opts.url);
    u.protocol = "ws:";
    u.pathname = "/v1/agent/connect";
    const ws = new WebSocket(u.toString(), AGENT_SUBPROTOCOL, {
      headers: {
        authorization: `Bearer ${opts.token}`,
        [AGENT_ID_HEADER]: id,
        [AGENT_INSTANCE_HEADER]: `swarm-${id.slice(4)}`,
      },
      handshakeTimeout: 30_000,
      perMessageDeflate: false,
    });
    ws.binaryType = "nodebuffer";
    this.sockets.push(ws);
    const held = new Map<string, number>();
    const send = (msg: FromAgent): void => {
      if (ws.readyState === WebSocket.OPEN) ws.send(encodeFrame(msg));
    };
    const heartbeat = (): void => {
      this.stats.heartbeats++;
      send({
        v: AGENT_PROTOCOL_VERSION,
        type: "agent.heartbeat",
        trace: trace(),
        leases: [...held].map(([job_id, epoch]) => ({ job_id, epoch })),
        gpus: [],
        credits: Math.max(0, opts.slots - held.size),
        draining: false,
        versions: [],
      });
    };
    return new Promise<ConnectResult>((resolve) => {
      let welcomed = false;
      ws.on("message", (data: Buffer) => {
        const f = decodeFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), ToAgent);
        if (!f.ok) return;
        const msg = f.msg;
        if (msg.type === "agent.welcome" && !welcomed) {
          welcomed = true;
          resolve({ id, ms: now() - t0 });
          send({ v: AGENT_PROTOCOL_VERSION, type: "work.request", trace: trace(), credits: opts.slots });
          // Each agent at its own phase of the period, then every period.
          const period = msg.heartbeat_ms;
          const first = setTimeout(() => {
            heartbeat();
            this.timers.push(setInterval(heartbeat, period));
          }, Math.random() * period);
          this.timers.push(first);
        } else if (msg.type === "agent.heartbeat_ack") {
          this.stats.acks++;
        } else if (msg.type === "job.leases") {
          const at = now();
          for (const lease of msg.leases) {
            this.stats.leases.push({ job: lease.job_id, at });
            held.set(lease.job_id, lease.epoch);
            this.timers.push(
              setTimeout(() => {
                held.delete(lease.job_id);
                this.stats.results++;
                send({
                  v: AGENT_PROTOCOL_VERSION,
                  type: "job.results",
                  trace: trace(),
                  results: [{ job_id: lease.job_id, epoch: lease.epoch, status: "succeeded", outputs: [] }],
                  credits: Math.max(0, opts.slots - held.size),
                });
              }, opts.serviceMs),
            );
          }
        }
      });
      ws.once("open", () =>
        send({
          v: AGENT_PROTOCOL_VERSION,
          type: "agent.hello",
          trace: trace(),
          agent_id: id,
          name: "swarm",
          gpus: [],
          versions: [],
          slots: opts.slots,
          prefetch: 0,
          leases: [],
        }),
      );
      ws.once("close", (code, reason) => {
        if (!this.closing) this.stats.closes.push(`${code} ${reason.toString()}`);
        if (!welcomed) resolve({ id, ms: now() - t0, error: `closed ${code} before the welcome` });
      });
      ws.once("error", (err) => {
        if (!welcomed) resolve({ id, ms: now() - t0, error: err.message });
      });
    });
  }

  take(): SwarmStats {
    const used = process.threadCpuUsage(this.cpu);
    this.cpu = process.threadCpuUsage();
    const out = { ...this.stats, cpuMs: (used.user + used.system) / 1000 };
    this.stats = { heartbeats: 0, acks: 0, leases: [], results: 0, closes: [] };
    return out;
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const t of this.timers) clearTimeout(t);
    await Promise.all(
      this.sockets.map(
        (ws) =>
          new Promise<void>((resolve) => {
            if (ws.readyState !== WebSocket.OPEN) {
              ws.terminate();
              resolve();
              return;
            }
            ws.once("close", () => resolve());
            ws.close(1000, "swarm done");
            setTimeout(() => {
              ws.terminate();
              resolve();
            }, 2_000).unref();
          }),
      ),
    );
  }
}

if (!isMainThread && (workerData as Record<string, unknown> | null)?.[MARK]) {
  const port = parentPort!;
  const swarm = new Swarm();
  port.on("message", (command: Command) => {
    switch (command.type) {
      case "connect":
        void swarm.connect(command.opts).then((r) => port.postMessage(r, []));
        break;
      case "stats":
        port.postMessage(swarm.take(), []);
        break;
      case "close":
        void swarm.close().then(() => port.postMessage(null, []));
        break;
    }
  });
  port.postMessage(null, []);
}
