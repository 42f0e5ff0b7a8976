/**
 * The peer stack of the `dispatch` benchmark, as a Node team would build it: Redis
 * (`redis-server` from the OS packages, AOF on, in a temporary directory), a Fastify HTTP
 * server that adds jobs with BullMQ (bench/lib/bullmq-server.ts) and BullMQ Workers
 * (bench/lib/bullmq-worker.ts), each in its own process on 127.0.0.1. The workers report when
 * each job started and ended on CLOCK_MONOTONIC (`monotonicMs` in bench/lib/stats.ts); they are turned into
 * this process's `performance.now()` clock here and recorded in a {@link RunLog}, as the
 * in-process agents of bench/lib/fleet.ts record theirs.
 */
import { fork, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RunLog } from "./fleet.ts";
import { monotonicOffsetMs } from "./stats.ts";

/** A run a worker reports: job id, start and end (ms, CLOCK_MONOTONIC). */
export type PeerRun = [id: string, start: number, end: number];

/** What a worker process sends over IPC. */
export type WorkerMessage = { ready: true } | { runs: PeerRun[] };

function packageVersion(pkg: string): string {
  const url = new URL(`../../node_modules/${pkg}/package.json`, import.meta.url);
  return (JSON.parse(readFileSync(url, "utf8")) as { version: string }).version;
}

/** Versions of the peer's parts, for the report; throws when redis-server is missing. */
export function peerVersions(): { redis: string; fastify: string; bullmq: string; ioredis: string } {
  return {
    redis: redisVersion(),
    fastify: packageVersion("fastify"),
    bullmq: packageVersion("bullmq"),
    ioredis: packageVersion("ioredis"),
  };
}

/** `redis-server --version`'s version; throws, saying how to install it, when it is missing. */
export function redisVersion(): string {
  const out = spawnSync("redis-server", ["--version"], { encoding: "utf8", timeout: 10_000 });
  if (out.error || out.status !== 0) {
    throw new Error(
      "redis-server is not installed (or did not run): the dispatch benchmark runs its peer, BullMQ, on a local Redis. " +
        "Install it with `apt-get install redis-server` (Debian/Ubuntu; `sudo` unless root) and run the benchmark again." +
        (out.error ? ` (${out.error.message})` : ` (exit ${out.status}: ${out.stderr})`),
    );
  }
  return /v=(\S+)/.exec(out.stdout)?.[1] ?? out.stdout.trim();
}

/** Children started here and not yet stopped: killed when this process exits without stopping them. */
const live = new Set<ChildProcess>();
let exitHook = false;

function track(child: ChildProcess, what: string): { child: ChildProcess; output: () => string } {
  if (!exitHook) {
    exitHook = true;
    process.on("exit", () => {
      for (const c of live) c.kill("SIGKILL");
    });
  }
  live.add(child);
  child.once("exit", () => live.delete(child));
  let tail = "";
  const keep = (chunk: Buffer): void => {
    tail = (tail + chunk.toString("utf8")).slice(-4000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  child.once("error", (err) => keep(Buffer.from(`${what}: ${err.message}\n`)));
  return { child, output: () => tail };
}

/** Stops a child: SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
async function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((res) => child.once("exit", () => res()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Resolves with `pick(message)` of the first message it accepts; rejects on exit or after `timeoutMs`. */
function awaitMessage<T>(
  child: ChildProcess,
  what: string,
  output: () => string,
  timeoutMs: number,
  pick: (m: unknown) => T | undefined,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      child.off("message", onMessage);
      child.off("exit", onExit);
    };
    const onMessage = (m: unknown): void => {
      const v = pick(m);
      if (v === undefined) return;
      done();
      resolve(v);
    };
    const onExit = (code: number | null, signal: string | null): void => {
      done();
      reject(new Error(`${what} exited (${code ?? signal}) before it was ready: ${output()}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${what} was not ready within ${timeoutMs} ms: ${output()}`));
    }, timeoutMs);
    child.on("message", onMessage);
    child.once("exit", onExit);
  });
}

/** A free TCP port on 127.0.0.1 (the OS picks it; freed again before it is answered). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((res, rej) => server.once("error", rej).listen(0, "127.0.0.1", res));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((res) => server.close(() => res()));
  return port;
}

/** A running process of the peer. */
export interface PeerProcess {
  pid: number | undefined;
  stop(): Promise<void>;
}

/**
 * Starts `redis-server` on 127.0.0.1 (a free port) with its data in a new temporary directory:
 * `appendonly yes` (appendfsync everysec, Redis's default), RDB snapshots off. `stop` kills it
 * and removes the directory.
 */
export async function startRedis(): Promise<PeerProcess & { port: number; dir: string }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "floodgate-bench-redis-"));
  const args = ["--bind", "127.0.0.1", "--port", String(port), "--dir", dir, "--appendonly", "yes", "--save", ""];
  const { child, output } = track(
    spawn("redis-server", [...args, "--daemonize", "no", "--logfile", ""], { stdio: ["ignore", "pipe", "pipe"] }),
    "redis-server",
  );
  const stop = async (): Promise<void> => {
    try {
      await stopChild(child);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server was not ready within 10 s: ${output()}`)), 10_000);
      const onData = (): void => {
        if (!/Ready to accept connections/.test(output())) return;
        clearTimeout(timer);
        child.stdout?.off("data", onData);
        resolve();
      };
      child.stdout?.on("data", onData);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${code}): ${output()}`));
      });
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, dir, pid: child.pid, stop };
}

function forkPeer(file: string, env: Record<string, string>, what: string): ReturnType<typeof track> {
  return track(
    fork(new URL(file, import.meta.url), [], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    }),
    what,
  );
}

/**
 * Starts the Fastify server (its own process) on 127.0.0.1, a port of its choosing, on the
 * Redis at `redisPort`; submits need `authorization: Bearer <apiKey>` and inputs must match
 * `inputSchema` (a JSON Schema, draft-07).
 */
export async function startPeerServer(opts: {
  redisPort: number;
  apiKey: string;
  inputSchema: object;
}): Promise<PeerProcess & { url: string }> {
  const { child, output } = forkPeer(
    "./bullmq-server.ts",
    {
      PEER_REDIS_PORT: String(opts.redisPort),
      PEER_API_KEY: opts.apiKey,
      PEER_INPUT_SCHEMA: JSON.stringify(opts.inputSchema),
    },
    "the Fastify server",
  );
  try {
    const port = await awaitMessage(child, "the Fastify server", output, 20_000, (m) =>
      typeof m === "object" && m !== null && "port" in m ? Number(m.port) : undefined,
    );
    return { url: `http://127.0.0.1:${port}`, pid: child.pid, stop: () => stopChild(child) };
  } catch (err) {
    await stopChild(child);
    throw err;
  }
}

/** BullMQ worker processes on one queue. */
export interface PeerWorkers {
  pids: (number | undefined)[];
  /** Concurrency of each process. */
  concurrency: number[];
  stop(): Promise<void>;
}

/**
 * Starts `processes` worker processes on queue `queue`, `concurrency` job slots in all spread
 * evenly over them; each job holds its slot `serviceMs` (a timer). Every run is recorded in
 * `log` on this process's `performance.now()` clock.
 */
export async function startPeerWorkers(opts: {
  redisPort: number;
  queue: string;
  concurrency: number;
  processes: number;
  serviceMs: number;
  log: RunLog;
}): Promise<PeerWorkers> {
  const n = Math.min(opts.processes, opts.concurrency);
  const shares = Array.from(
    { length: n },
    (_, k) => Math.floor(opts.concurrency / n) + (k < opts.concurrency % n ? 1 : 0),
  );
  // performance.now() = CLOCK_MONOTONIC − offset.
  const offset = monotonicOffsetMs();
  const children = shares.map((share, k) => {
    const what = `BullMQ worker process ${k}`;
    const started = forkPeer(
      "./bullmq-worker.ts",
      {
        PEER_REDIS_PORT: String(opts.redisPort),
        PEER_QUEUE: opts.queue,
        PEER_CONCURRENCY: String(share),
        PEER_SERVICE_MS: String(opts.serviceMs),
      },
      what,
    );
    started.child.on("message", (m: WorkerMessage) => {
      if (!("runs" in m)) return;
      for (const [jobId, s, e] of m.runs) {
        const start = s - offset;
        const mark = { jobId, agent: `w${k}`, start, end: e - offset };
        if (opts.log.starts.has(jobId)) opts.log.duplicates++;
        opts.log.starts.set(jobId, start);
        opts.log.onStart?.(jobId, start);
        opts.log.marks.push(mark);
        opts.log.onEnd?.(mark);
      }
    });
    return { ...started, what };
  });
  const stop = async (): Promise<void> => {
    await Promise.all(children.map((c) => stopChild(c.child)));
  };
  try {
    await Promise.all(
      children.map((c) =>
        awaitMessage(c.child, c.what, c.output, 20_000, (m) =>
          typeof m === "object" && m !== null && "ready" in m ? true : undefined,
        ),
      ),
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { pids: children.map((c) => c.child.pid), concurrency: shares, stop };
}
