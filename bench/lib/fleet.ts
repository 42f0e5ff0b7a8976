/**
 * Protocol-complete GPU agents in the benchmark's own process: each is the real
 * {@link Agent} (gpu-agent/agent.ts) with its own WebSocket to the edge and its own state, but
 * its runner is an in-process stand-in ({@link FakeRunner}) that "runs" a job by waiting, so
 * no GPU, no runner child process and no output upload is involved. The runner records when
 * each job started and ended on this process's clock (`performance.now()`), the same clock the
 * load generators use, so latencies can be joined by job id.
 *
 * Also here: models with a small `expected_runtime_s`, agent tokens, and agent ids.
 */
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import type { ModelConfig } from "../../shared/api.ts";
import { Agent, type Encoder } from "../../gpu-agent/agent.ts";
import type { Frame, RunnerLike } from "../../gpu-agent/runner/like.ts";
import { BENCH_INPUT_SCHEMA, call, type Edge } from "./edge.ts";
import { sleep } from "./stats.ts";

/** Registers (or updates) a model with one shard and a small expected run time. */
export async function registerFastModel(edge: Edge, name: string, expectedRuntimeS: number): Promise<ModelConfig> {
  return call<ModelConfig>(
    edge,
    edge.adminKey,
    "PUT",
    `/v1/admin/models/${name}`,
    { input_schema: BENCH_INPUT_SCHEMA, shards: 1, expected_runtime_s: expectedRuntimeS },
    [200, 201],
  );
}

/** Mints an agent token for `models` (POST /v1/admin/agent-tokens with the admin key). */
export async function mintAgentToken(edge: Edge, models: string[], pool = "bench"): Promise<string> {
  const made = await call<{ id: string; token: string }>(
    edge,
    edge.adminKey,
    "POST",
    "/v1/admin/agent-tokens",
    { pool, models, ttl_s: 3600 },
    [201],
  );
  return made.token;
}

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

/** A valid agent id (`agt_` and 16 of 0-9a-z), distinct per (prefix, index), prefix ≤ 6 chars. */
export function benchAgentId(prefix: string, index: number): string {
  let n = index;
  let tail = "";
  for (let i = 0; i < 6; i++) {
    tail = (ALPHABET[n % 32] as string) + tail;
    n = Math.floor(n / 32);
  }
  const salt = Date.now().toString(36).slice(-4);
  return `agt_${(prefix + salt).padEnd(10, "0").slice(0, 10)}${tail}`;
}

/** What the fake runner hands a job's behaviour: the job and the agent's callbacks. */
export type RunJob = Parameters<RunnerLike["run"]>[0];
export type RunHooks = Parameters<RunnerLike["run"]>[1];

/** Start and end of one run, on `performance.now()`'s clock (ms). */
export interface RunMark {
  jobId: string;
  agent: string;
  start: number;
  end: number;
}

/** Shared across a fleet's runners: when each job started and ended, and how often. */
export class RunLog {
  readonly starts = new Map<string, number>();
  readonly marks: RunMark[] = [];
  /** Jobs whose run() was called more than once (a redelivery: should stay 0). */
  duplicates = 0;
  /** Runs that were cancelled through the agent (should stay 0). */
  cancelled = 0;
  onStart: ((jobId: string, at: number) => void) | undefined;
  onEnd: ((mark: RunMark) => void) | undefined;
}

/**
 * A RunnerLike that stands in for a GPU: `behave` decides what a job does (wait, emit
 * progress or previews) and resolves when the job is done. No frames and no outputs come back,
 * so the agent uploads nothing.
 */
export class FakeRunner implements RunnerLike {
  readonly maxBatch: number;
  readonly models: readonly { model: string; version: string }[];
  readonly alive = true;
  /** Never resolves: this runner does not exit on its own. */
  readonly exited: Promise<{ reason: string }> = new Promise(() => undefined);
  private readonly cancels = new Map<string, () => void>();
  private readonly agentName: string;
  private readonly log: RunLog;
  private readonly behave: (job: RunJob, on: RunHooks, cancelled: () => boolean) => Promise<void>;

  constructor(
    agentName: string,
    models: string[],
    slots: number,
    log: RunLog,
    behave: (job: RunJob, on: RunHooks, cancelled: () => boolean) => Promise<void>,
  ) {
    this.agentName = agentName;
    this.log = log;
    this.behave = behave;
    this.maxBatch = slots;
    this.models = models.map((model) => ({ model, version: "bench-1" }));
  }

  async run(job: RunJob, on: RunHooks): ReturnType<RunnerLike["run"]> {
    const start = performance.now();
    if (this.log.starts.has(job.job_id)) this.log.duplicates++;
    this.log.starts.set(job.job_id, start);
    this.log.onStart?.(job.job_id, start);
    let cancelled = false;
    this.cancels.set(job.job_id, () => (cancelled = true));
    try {
      await this.behave(job, on, () => cancelled);
    } finally {
      this.cancels.delete(job.job_id);
    }
    if (cancelled) {
      this.log.cancelled++;
      throw Object.assign(new Error("cancelled"), { code: "cancelled" });
    }
    const mark = { jobId: job.job_id, agent: this.agentName, start, end: performance.now() };
    this.log.marks.push(mark);
    this.log.onEnd?.(mark);
    return { frames: [], outputs: [] };
  }

  cancel(jobId: string): void {
    this.cancels.get(jobId)?.();
  }

  async close(): Promise<void> {
    // nothing to stop: no process
  }
}

/** A behaviour that holds the slot for `ms` milliseconds and reports nothing. */
export function sleepFor(ms: number): (job: RunJob, on: RunHooks) => Promise<void> {
  return () => sleep(ms);
}

/** An encoder with no outputs (nothing to upload) and a fixed preview image. */
export function fixedEncoder(preview?: (frame: Frame) => Uint8Array): Encoder {
  return {
    outputs: async () => [],
    preview: async (frame) => ({ content_type: "image/png", data: preview ? preview(frame) : new Uint8Array(8) }),
  };
}

/** A fleet of in-process agents on one edge. */
export interface Fleet {
  agents: Agent[];
  log: RunLog;
  /** Agents that reported a fatal error, with the message. */
  fatal: string[];
  /** How many agents connected (received agent.welcome) before the deadline. */
  connected: number;
  /** Time to connect them all (ms). */
  connectMs: number;
  /** Jobs the agents reported done (their job.results sent), summed. */
  completed(): number;
  /** Closes every agent's socket (bounded: 2 s each, in parallel groups). */
  stop(): Promise<void>;
}

/**
 * Starts `count` agents, `parallel` connects at a time, each waiting at most `connectTimeoutMs`
 * for its welcome. Resolves once all connected or the overall deadline passed; never throws
 * for a slow agent (see {@link Fleet.connected}).
 */
export async function startFleet(opts: {
  edge: Edge;
  token: string;
  models: string[];
  count: number;
  slots: number;
  prefetch: number;
  behave: (job: RunJob, on: RunHooks, cancelled: () => boolean) => Promise<void>;
  encoder?: Encoder;
  idPrefix: string;
  log?: RunLog;
  parallel?: number;
  deadlineMs?: number;
}): Promise<Fleet> {
  const log = opts.log ?? new RunLog();
  const agents: Agent[] = [];
  const fatal: string[] = [];
  const encoder = opts.encoder ?? fixedEncoder();
  const parallel = opts.parallel ?? 25;
  const t0 = performance.now();
  const deadline = t0 + (opts.deadlineMs ?? 60_000);
  let connected = 0;
  for (let first = 0; first < opts.count && performance.now() < deadline; first += parallel) {
    const group = Array.from({ length: Math.min(parallel, opts.count - first) }, (_, k) => first + k);
    await Promise.all(
      group.map(async (i) => {
        const name = `${opts.idPrefix}-${i}`;
        const agent = new Agent({
          url: opts.edge.url,
          token: opts.token,
          name,
          agentId: benchAgentId(opts.idPrefix, i),
          slots: opts.slots,
          prefetch: opts.prefetch,
          maxVramPct: 100,
          startRunner: async () => new FakeRunner(name, opts.models, opts.slots, log, opts.behave),
          encoder,
          gpus: async () => [],
          log: () => {},
        });
        agent.on("fatal", (err: Error) => fatal.push(`${name}: ${err.message}`));
        agents.push(agent);
        const welcomed = new Promise<boolean>((res) => {
          const timer = setTimeout(() => res(false), Math.max(0, Math.min(10_000, deadline - performance.now())));
          agent.once("connected", () => {
            clearTimeout(timer);
            res(true);
          });
        });
        await agent.start();
        if (await welcomed) connected++;
      }),
    );
  }
  const connectMs = performance.now() - t0;
  return {
    agents,
    log,
    fatal,
    connected,
    connectMs,
    completed: () => agents.reduce((n, a) => n + a.completed, 0),
    stop: async () => {
      for (let i = 0; i < agents.length; i += 100) {
        await Promise.all(agents.slice(i, i + 100).map((a) => a.close().catch(() => undefined)));
      }
    },
  };
}

/**
 * A fresh model `model` (1 shard, `expected_runtime_s` = the service time) with `count` agents
 * on it whose runners hold a slot `serviceMs` each: connected 25 at a time (90 s at most), then
 * a second for each agent's first work request to park it on the shard. The caller stops the
 * fleet.
 */
export async function modelFleet(
  edge: Edge,
  opts: {
    model: string;
    count: number;
    slots: number;
    prefetch: number;
    serviceMs: number;
    idPrefix: string;
    log: (line: string) => void;
  },
): Promise<{ config: ModelConfig; fleet: Fleet }> {
  const config = await registerFastModel(edge, opts.model, opts.serviceMs / 1000);
  const token = await mintAgentToken(edge, [opts.model]);
  opts.log(`${opts.count} agents (${opts.slots} slots, prefetch ${opts.prefetch}) connecting…`);
  const fleet = await startFleet({
    edge,
    token,
    models: [opts.model],
    count: opts.count,
    slots: opts.slots,
    prefetch: opts.prefetch,
    behave: sleepFor(opts.serviceMs),
    idPrefix: opts.idPrefix,
    parallel: 25,
    deadlineMs: 90_000,
  });
  opts.log(`${fleet.connected}/${opts.count} connected in ${(fleet.connectMs / 1000).toFixed(1)} s`);
  await sleep(1000);
  return { config, fleet };
}

/** Polls `done` every 5 ms until it holds or `timeoutMs` passes; answers whether it held. */
export async function waitFor(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  while (!done()) {
    if (performance.now() > end) return false;
    await sleep(5);
  }
  return true;
}

/** Submits `n` jobs in batches of up to 100 (one request each, in order); answers their ids. */
export async function submitBatches(edge: Edge, key: string, model: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let done = 0; done < n;) {
    const size = Math.min(100, n - done);
    const answer = await call<{ jobs: { ok: boolean; id?: string; error?: unknown }[] }>(
      edge,
      key,
      "POST",
      `/v1/models/${model}/jobs/batch`,
      { jobs: Array.from({ length: size }, (_, i) => ({ input: { prompt: `job ${done + i}` } })) },
      [202],
    );
    for (const j of answer.jobs) {
      if (!j.ok || !j.id) throw new Error(`a batch item was refused: ${JSON.stringify(j.error)}`);
      ids.push(j.id);
    }
    done += size;
  }
  return ids;
}

/** `p`, or `fallback` once `ms` pass first; the timer is cleared either way, so it holds nothing. */
export async function within<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((res) => {
    timer = setTimeout(() => res(fallback), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Where the edge's durable state lives (bench/lib/edge.ts keeps it under the OS temporary
 * directory, so `TMPDIR` moves it) and on what filesystem: every actor commit writes there.
 */
export function stateFilesystem(): string {
  const dir = tmpdir();
  try {
    let best = { mount: "", type: "unknown" };
    for (const line of readFileSync("/proc/mounts", "utf8").split("\n")) {
      const [, mount, type] = line.split(" ");
      if (!mount || !type) continue;
      const inside = dir === mount || dir.startsWith(mount.endsWith("/") ? mount : `${mount}/`);
      if (inside && mount.length > best.mount.length) best = { mount, type };
    }
    return `${dir} (${best.type})`;
  } catch {
    return dir;
  }
}
