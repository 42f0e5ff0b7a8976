/**
 * The GPU agent: one outbound WebSocket to the edge, runner processes for the models, and the
 * loop between them. Started with `--runner`, it serves that one runner; otherwise it serves
 * what `agent.desired` says, as replicas its version manager (versions/manager.ts) fetches and
 * starts, and runs each lease on a replica of the version it names (pool.ts). It asks for work only for its free slots plus prefetch (credits), runs
 * leases in its runner, streams progress and previews, uploads outputs, and reports results
 * fenced by the lease epoch. It reconnects with jittered exponential backoff and resumes the
 * leases it still runs; results produced while disconnected wait for the next connection. Results
 * go several to a frame, each frame with the agent's room for more, so the next job comes back
 * in the answer to the last. SIGTERM drains
 * (finish running jobs, take none new, give back staged ones); a second SIGTERM gives back the
 * running ones too, without spending their attempts.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { WebSocket } from "ws";
import {
  AGENT_ID_HEADER,
  AGENT_INSTANCE_HEADER,
  AGENT_PROTOCOL_VERSION,
  AGENT_SUBPROTOCOL,
  CLOSE,
  decodeFrame,
  encodeFrame,
  PREVIEW_FRAME_CAP,
  salvageLeases,
  ToAgent,
  MAX_RESULTS_PER_FRAME,
  type FromAgent,
  type GpuHealth,
  type JobResult,
  type LeaseGrant,
  type LeaseRef,
  type OutputRecord,
  type VersionState,
} from "../shared/wire.ts";
import { assertExhaustive } from "../shared/errors.ts";
import { backoffMs, type Backoff } from "../shared/backoff.ts";
import { gpuHealth, vramAbove } from "./gpu.ts";
import { type Replica, routeLease, RunnerPool } from "./pool.ts";
import { agentFailure } from "./runner/host.ts";
import { fetchInputs, InputError, type LocalInputs } from "./inputs.ts";
import { uploadOutput, UploadError } from "./upload.ts";
import { type ServeOptions, VersionManager } from "./versions/manager.ts";
import type { Frame, RunnerLike } from "./runner/like.ts";

/** Encodes result frames into outputs and a preview frame into a small image. */
export interface Encoder {
  outputs(frames: Frame[]): Promise<{ name: string; content_type: string; data: Uint8Array }[]>;
  preview(frame: Frame): Promise<{ content_type: "image/png" | "image/gif"; data: Uint8Array }>;
}

/** A runner failure as the agent reports it. */
export interface RunnerFailure {
  code: string;
  message: string;
}

export interface AgentOptions {
  url: string;
  token: string;
  name: string;
  /** The id this agent speaks as (gpu-agent/identity.ts). */
  agentId: string;
  /**
   * Called when the edge refuses the id as in use by another live agent process (close 4410, a
   * machine image cloned with its identity): answers a fresh id to reconnect with. Absent, the
   * agent stops with an error that says what to do.
   */
  freshId?: () => string;
  slots?: number | undefined;
  prefetch: number;
  maxVramPct: number;
  /** The machine may be taken back at short notice (`--preemptible`): the hello says so. */
  preemptible?: boolean;
  /** The one runner of an agent started with `--runner`: it serves every lease; `agent.desired` is ignored. */
  startRunner?: () => Promise<RunnerLike>;
  /** Without `startRunner`: serve what `agent.desired` says, as these options tell. */
  serve?: ServeOptions;
  encoder: Encoder;
  /** Where the input files of leases are downloaded (each attempt's deleted when it ends); a temporary folder when absent. */
  inputsDir?: string;
  /** Health of the GPUs this agent serves with (nvidia-smi by default, all it sees). */
  gpus?: () => Promise<GpuHealth[]>;
  log?: (line: string) => void;
}

interface Held {
  lease: LeaseGrant;
  state: "staged" | "running" | "finishing";
  /** Where it runs, once running. */
  replica?: Replica;
  runner?: RunnerLike;
  abandoned: boolean;
  /** Stops its input downloads when it is abandoned before its runner starts. */
  downloads?: AbortController;
  /**
   * Run alone, after a runner crash took it down with others: a crash kills every job in the
   * batch, so each is retried once by itself to find the one that caused it. Only a job that
   * crashes alone is reported (and spends an attempt).
   */
  solo: boolean;
}

/** The agent cannot go on (e.g. its token was refused); exit, do not retry. */
export class FatalAgentError extends Error {}

/** How long a cancelled job may take to end before its runner is taken for hung and restarted (ms). */
const CANCEL_GRACE_MS = 10_000;
/** Reconnects: 0.25 s doubling to 30 s, each wait drawn from [½, 1] of it. */
const RECONNECT_BACKOFF: Backoff = { baseMs: 250, maxMs: 30_000 };

export class Agent extends EventEmitter {
  private readonly opts: AgentOptions;
  private ws: WebSocket | undefined;
  private readonly pool: RunnerPool;
  /** Serving what `agent.desired` says (no fixed runner). */
  private readonly versionManager: VersionManager | undefined;
  private readonly held = new Map<string, Held>();
  /** Attempts ended and not yet told to the edge: sent together, with the agent's room for more. */
  private readonly results: JobResult[] = [];
  private flushing = false;
  private heartbeatMs = 5_000;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private gpus: GpuHealth[] = [];
  private attempt = 0;
  private stopping: "no" | "drain" | "now" = "no";
  private welcomed = false;
  private closed = false;
  private readonly log: (line: string) => void;
  /** The id this agent speaks as now (a fresh one after the edge refused a cloned id). */
  private agentId: string;
  /** This process, as the edge tells it from another process with the same id. */
  private readonly instance = randomBytes(12).toString("base64url");
  /** What the last hello or heartbeat said of versions and slots, to tell changes at once. */
  private announced = "";
  private announcing = false;
  /** Jobs that ended here (for tests and benchmarks). */
  completed = 0;

  constructor(opts: AgentOptions) {
    super();
    this.opts = opts;
    this.agentId = opts.agentId;
    this.log = opts.log ?? ((l) => process.stderr.write(`[agent ${opts.name}] ${l}\n`));
    if ((opts.startRunner === undefined) === (opts.serve === undefined)) {
      throw new Error("an agent has either a fixed runner (startRunner) or serves the rollout (serve), not both");
    }
    this.pool = new RunnerPool(this.log);
    this.pool.on("changed", () => {
      this.pump();
      this.announceSoon();
    });
    this.pool.on("failed", (replica, err) => {
      if (replica.fixed) this.emit("fatal", err);
    });
    if (opts.serve) {
      const edge = {
        baseUrl: opts.url.replace(/\/$/, ""),
        token: opts.token,
        agentId: () => this.agentId,
        fetch: opts.serve.fetch?.fetch,
      };
      this.versionManager = new VersionManager(this.pool, edge, opts.serve, this.log);
      this.versionManager.on("changed", () => this.announceSoon());
    }
  }

  /** The fixed runner's replica (agents started with `--runner`). */
  private get fixed(): Replica | undefined {
    return this.pool.replicas.find((r) => r.fixed);
  }

  private get slots(): number {
    if (this.versionManager) return this.pool.slots();
    return this.opts.slots ?? this.fixed?.runner?.maxBatch ?? 1;
  }

  /** Free slots plus prefetch, or 0 while draining, above the VRAM threshold, or serving nothing. */
  credits(): number {
    if (this.stopping !== "no" || vramAbove(this.gpus, this.opts.maxVramPct) || this.slots === 0) return 0;
    return Math.max(0, this.slots + this.opts.prefetch - this.held.size);
  }

  private trace(): string {
    return randomBytes(8).toString("hex");
  }

  private send(msg: FromAgent): boolean {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || !this.welcomed) return false;
    const bytes = encodeFrame(msg);
    if (msg.type === "job.preview" && bytes.length > PREVIEW_FRAME_CAP) return false;
    this.ws.send(bytes);
    return true;
  }

  /**
   * An attempt ended: its result goes to the edge in the next `job.results` frame, with this
   * agent's room for more (the request for its next job), together with whatever else ended
   * in the same turn. Results must not be lost to a dropped socket: they wait for the next
   * connection.
   */
  private report(result: JobResult): void {
    this.results.push(result);
    this.flushSoon();
  }

  private flushSoon(): void {
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => {
      this.flushing = false;
      this.flush();
    });
  }

  /** Sends the results waiting (at most a frame's worth at a time) with the credits now. */
  private flush(): void {
    while (this.results.length > 0) {
      const batch = this.results.slice(0, MAX_RESULTS_PER_FRAME);
      const sent = this.send({
        v: AGENT_PROTOCOL_VERSION,
        type: "job.results",
        trace: this.trace(),
        results: batch,
        credits: this.credits(),
      });
      if (!sent) return;
      this.results.splice(0, batch.length);
    }
  }

  /** Starts the fixed runner (an agent serving the rollout waits for `agent.desired`), then connects. */
  async start(): Promise<void> {
    const startRunner = this.opts.startRunner;
    if (startRunner) await this.pool.add({ gpus: [], start: () => startRunner() });
    this.connect();
  }

  private wsUrl(): string {
    const u = new URL(this.opts.url);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    u.pathname = "/v1/agent/connect";
    return u.toString();
  }

  private connect(): void {
    if (this.closed) return;
    this.welcomed = false;
    const ws = new WebSocket(this.wsUrl(), AGENT_SUBPROTOCOL, {
      headers: {
        authorization: `Bearer ${this.opts.token}`,
        [AGENT_ID_HEADER]: this.agentId,
        [AGENT_INSTANCE_HEADER]: this.instance,
      },
      maxPayload: PREVIEW_FRAME_CAP,
      handshakeTimeout: 10_000,
      // Frames are small msgpack maps and previews already-compressed images: deflating each
      // one would cost CPU on both ends for nothing.
      perMessageDeflate: false,
    });
    this.ws = ws;
    ws.binaryType = "nodebuffer";
    ws.on("unexpected-response", (_req, res) => {
      if (res.statusCode === 403) {
        this.log(
          `the edge refused agent id ${this.agentId} (403): it is bound to another live agent token; retrying (revoke the other token, or remove this agent's identity directory for a fresh id)`,
        );
      }
      if (res.statusCode === 401) {
        this.closed = true;
        this.emit(
          "fatal",
          new FatalAgentError(
            "the edge refused the agent token (401): mint a new one with POST /v1/admin/agent-tokens",
          ),
        );
      }
      ws.terminate();
    });
    ws.on("open", () => {
      this.attempt = 0;
      const hello: FromAgent = {
        v: AGENT_PROTOCOL_VERSION,
        type: "agent.hello",
        trace: this.trace(),
        agent_id: this.agentId,
        name: this.opts.name,
        gpus: this.gpus,
        versions: this.versions(),
        // The hello's slots are at least 1; an agent serving nothing yet asks for no work.
        slots: Math.max(1, this.slots),
        prefetch: this.opts.prefetch,
        leases: this.refs(),
        ...(this.opts.preemptible ? { preemptible: true } : {}),
      };
      this.announced = this.announcement();
      ws.send(encodeFrame(hello));
    });
    ws.on("message", (data: Buffer) => this.onFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)));
    ws.on("close", (code, reason) => {
      clearInterval(this.heartbeatTimer);
      this.welcomed = false;
      if (this.ws === ws) this.ws = undefined;
      if (this.closed) return;
      if (code === CLOSE.id_in_use) {
        const taken = this.agentId;
        if (!this.opts.freshId) {
          this.closed = true;
          this.emit(
            "fatal",
            new FatalAgentError(
              `agent id ${taken} is in use by another live agent process (a machine image cloned with its identity?): give this agent a fresh id`,
            ),
          );
          return;
        }
        this.agentId = this.opts.freshId();
        // Leases held under the old id belong to the other process's id now; none of ours.
        this.log(
          `agent id ${taken} is in use by another live agent process (a machine image cloned with its identity?); reconnecting as ${this.agentId}`,
        );
      }
      if (code === CLOSE.reclaimed) {
        // The edge already gave every lease back (preempted, no attempt spent): stop them, say
        // nothing more of them, and go.
        this.closed = true;
        this.abandonAll();
        this.log(`reclaimed: ${reason.toString() || "the machine is taken back"}`);
        this.emit("reclaimed");
        return;
      }
      if (code === CLOSE.unauthorized) {
        this.closed = true;
        this.emit(
          "fatal",
          new FatalAgentError(`the edge closed the connection: ${reason.toString() || "token revoked"}`),
        );
        return;
      }
      this.reconnectLater(`closed ${code} ${reason.toString()}`);
    });
    ws.on("error", (err) => this.log(`connection error: ${err.message}`));
  }

  private reconnectLater(why: string): void {
    this.attempt += 1;
    const wait = backoffMs(this.attempt, RECONNECT_BACKOFF);
    this.log(`connection lost (${why}); reconnecting in ${Math.round(wait)} ms`);
    setTimeout(() => this.connect(), wait).unref();
  }

  private refs(): LeaseRef[] {
    return [...this.held.values()].map((h) => ({ job_id: h.lease.job_id, epoch: h.lease.epoch }));
  }

  private onFrame(bytes: Uint8Array): void {
    const frame = decodeFrame(bytes, ToAgent);
    if (!frame.ok) {
      const salvaged = salvageLeases(bytes);
      if (!salvaged) {
        this.log(`dropping a malformed frame from the edge: ${frame.reason}`);
        return;
      }
      // One bad lease does not cost the others: they run, and each bad one fails on its own.
      for (const { job_id, epoch, reason } of salvaged.refused) this.refuseLease({ job_id, epoch }, reason);
      for (const lease of salvaged.leases) this.accept(lease);
      this.pump();
      return;
    }
    const msg = frame.msg;
    switch (msg.type) {
      case "agent.welcome": {
        this.welcomed = true;
        this.heartbeatMs = msg.heartbeat_ms;
        for (const s of msg.stale) this.refusedStale(s, "resume", "stale after reconnect");
        clearInterval(this.heartbeatTimer);
        this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.heartbeatMs);
        this.heartbeatTimer.unref();
        // Results that waited for this connection carry the request for work; without any, ask.
        if (this.results.length > 0) this.flush();
        else this.requestWork();
        this.emit("connected");
        return;
      }
      case "job.leases": {
        for (const lease of msg.leases) this.accept(lease);
        this.pump();
        return;
      }
      case "agent.heartbeat_ack":
        for (const s of msg.stale) this.refusedStale(s, "renewal", "lease no longer held");
        return;
      case "lease.stale":
        this.refusedStale(msg, "result, progress or log", "stale");
        return;
      case "job.cancel":
        this.abandon(msg.job_id, msg.epoch, "cancelled by the client");
        return;
      case "job.refused":
        // The attempt has ended as a failure on the edge's side; it may be retried elsewhere.
        this.log(`the edge refused the result of ${msg.job_id} at epoch ${msg.epoch} (${msg.code}): ${msg.message}`);
        this.abandon(msg.job_id, msg.epoch, "result refused");
        return;
      case "agent.drain":
        void this.drain(msg.reason);
        return;
      case "agent.desired":
        // What the rollout says to serve; an agent started with a fixed runner serves that.
        this.versionManager?.desire(msg.models);
        if (msg.purged) this.versionManager?.purge(msg.purged);
        this.emit("desired", msg.models);
        return;
      default:
        assertExhaustive(msg);
    }
  }

  /** Fails a lease this agent cannot read (its job cannot run on any agent), without running it. */
  private refuseLease(ref: LeaseRef, reason: string): void {
    this.log(`failing ${ref.job_id}: its lease could not be decoded (${reason})`);
    this.report({
      ...ref,
      status: "failed",
      code: "invalid_input",
      message: `the lease could not be decoded: ${reason}`.slice(0, 4096),
    });
  }

  /** Takes a lease, or gives it straight back when it is over the credits asked for. */
  private accept(lease: LeaseGrant): void {
    if (this.held.has(lease.job_id)) return;
    if (this.stopping !== "no" || this.held.size >= this.slots + this.opts.prefetch) {
      this.send({
        v: AGENT_PROTOCOL_VERSION,
        type: "job.release",
        trace: this.trace(),
        leases: [{ job_id: lease.job_id, epoch: lease.epoch }],
        reason: this.stopping === "no" ? "preempted" : "drained",
      });
      return;
    }
    this.held.set(lease.job_id, { lease, state: "staged", abandoned: false, solo: false });
  }

  private requestWork(): void {
    const credits = this.credits();
    if (credits > 0) this.send({ v: AGENT_PROTOCOL_VERSION, type: "work.request", trace: this.trace(), credits });
  }

  /** The model versions this agent serves: its fixed runner's, or each version's state. */
  private versions(): VersionState[] {
    if (this.versionManager) return this.versionManager.states();
    return (this.fixed?.runner?.models ?? []).map((m) => ({ model: m.model, version: m.version, state: "serving" }));
  }

  /** What a heartbeat would say of the versions and slots, to tell when it changed. */
  private announcement(): string {
    return JSON.stringify([this.versions().map((v) => [v.model, v.version, v.state]), this.slots]);
  }

  /**
   * A version's state or the slots changed: heartbeat at once (an agent serving the rollout), so
   * the edge hears of a version that serves, or stopped serving, without waiting a period.
   */
  private announceSoon(): void {
    if (!this.versionManager || this.announcing) return;
    this.announcing = true;
    setImmediate(() => {
      this.announcing = false;
      if (this.closed || !this.welcomed || this.announcement() === this.announced) return;
      void this.heartbeat(false);
    });
  }

  /** Sends a heartbeat; `fresh` reads the GPUs' health first (nvidia-smi), else the last reading is sent. */
  private async heartbeat(fresh = true): Promise<void> {
    if (fresh) this.gpus = await (this.opts.gpus ?? gpuHealth)();
    const announced = this.announcement();
    const sent = this.send({
      v: AGENT_PROTOCOL_VERSION,
      type: "agent.heartbeat",
      trace: this.trace(),
      leases: this.refs(),
      gpus: this.gpus,
      credits: this.credits(),
      draining: this.stopping !== "no",
      versions: this.versions(),
      ...(this.versionManager ? { slots: this.slots } : {}),
    });
    if (sent) this.announced = announced;
  }

  /**
   * The edge refused, as stale, something this agent sent under a lease (its resume, renewal,
   * result, progress or upload): the lease is no longer its. Logged whether or not it still
   * runs the job.
   */
  private refusedStale(ref: LeaseRef, what: string, why: string): void {
    this.log(`the edge refused the ${what} of ${ref.job_id} at epoch ${ref.epoch} as stale`);
    this.abandon(ref.job_id, ref.epoch, why);
  }

  private abandon(jobId: string, epoch: number, why: string): void {
    const h = this.held.get(jobId);
    if (!h || h.lease.epoch !== epoch) return;
    h.abandoned = true;
    h.downloads?.abort();
    this.log(`abandoning ${jobId}: ${why}`);
    if (h.state === "running") {
      const { runner, replica } = h;
      runner?.cancel(jobId);
      // A runner that does not end a cancelled job is hung inside it, and the slot with it:
      // restart the runner (its other jobs are retried alone, as after a crash).
      setTimeout(() => {
        if (this.held.get(jobId) !== h || replica?.runner !== runner || !runner?.alive || this.closed) return;
        this.log(`${jobId} did not end ${CANCEL_GRACE_MS / 1000} s after its cancel; restarting the runner`);
        void runner.close();
      }, CANCEL_GRACE_MS).unref();
    } else this.held.delete(jobId);
    this.pump();
  }

  /**
   * Starts staged leases on replicas of their versions while slots are free. A job retried alone
   * after a crash waits for an idle replica, which takes nothing else meanwhile; a lease whose
   * version no replica here serves (any more) goes back without spending an attempt.
   */
  private pump(): void {
    if (this.stopping === "drain" && this.held.size === 0) this.emit("drained");
    if (this.stopping === "now") return;
    const reserved = new Set<Replica>();
    const release: Held[] = [];
    const staged = [...this.held.values()].filter((h) => h.state === "staged");
    const opts = {
      capacity: (r: Replica) => (r.fixed ? this.slots : r.maxBatch),
      stable: (model: string) => this.versionManager?.stableOf(model),
      reserved,
    };
    for (const h of [...staged.filter((x) => x.solo), ...staged.filter((x) => !x.solo)]) {
      const route = routeLease(h.lease, h.solo, this.pool.replicas, opts);
      if (route.kind === "run") {
        const { replica } = route;
        const runner = replica.runner!;
        h.state = "running";
        h.replica = replica;
        h.runner = runner;
        replica.running.set(h.lease.job_id, h.solo);
        void this.execute(h, replica, runner);
      } else if (route.kind === "wait") {
        if (h.solo) for (const r of route.on) reserved.add(r);
      } else release.push(h);
    }
    if (release.length > 0) {
      for (const h of release) this.held.delete(h.lease.job_id);
      this.log(
        `giving back ${release.length} lease(s) of versions not served here: ${release.map((h) => `${h.lease.job_id} (${h.lease.model}@${h.lease.version ?? "any"})`).join(", ")}`,
      );
      this.send({
        v: AGENT_PROTOCOL_VERSION,
        type: "job.release",
        trace: this.trace(),
        leases: release.map((h) => ({ job_id: h.lease.job_id, epoch: h.lease.epoch })),
        reason: "preempted",
      });
      if (this.stopping === "drain" && this.held.size === 0) this.emit("drained");
      if (this.results.length === 0) this.requestWork();
    }
  }

  private async execute(h: Held, replica: Replica, runner: RunnerLike): Promise<void> {
    const { lease } = h;
    const ref = { job_id: lease.job_id, epoch: lease.epoch };
    const version =
      replica.version ?? lease.version ?? runner.models.find((m) => m.model === lease.model)?.version ?? "unknown";
    const target = { baseUrl: this.opts.url.replace(/\/$/, ""), token: this.opts.token, agentId: this.agentId };
    // Usage: the runner's time on the job (not the downloads before or the uploads after), and
    // the GPUs its replica holds.
    let started = performance.now();
    let executingMs: number | undefined;
    const run = () => ({
      executing_ms: executingMs ?? Math.round(performance.now() - started),
      gpus: replica.gpus.length,
    });
    let local: LocalInputs | undefined;
    try {
      // Only a lease that names files pays for any of it.
      if (lease.files !== undefined) {
        const dir = this.opts.inputsDir ?? join(tmpdir(), `floodgate-inputs-${this.agentId}`);
        h.downloads = new AbortController();
        local = await fetchInputs(target, ref, lease.input, lease.files, dir, h.downloads.signal);
        if (h.abandoned) return;
        started = performance.now();
      }
      const result = await runner.run(
        { job_id: lease.job_id, model: lease.model, version, input: local?.input ?? lease.input },
        {
          progress: (p) => {
            if (!h.abandoned)
              this.send({ v: AGENT_PROTOCOL_VERSION, type: "job.progress", trace: this.trace(), ...ref, ...p });
          },
          preview: (f) => {
            if (h.abandoned) return;
            void this.opts.encoder.preview(f).then((img) => {
              if (!h.abandoned)
                this.send({
                  v: AGENT_PROTOCOL_VERSION,
                  type: "job.preview",
                  trace: this.trace(),
                  ...ref,
                  content_type: img.content_type,
                  data: img.data,
                });
            });
          },
          log: (level, message) => {
            if (!h.abandoned)
              this.send({
                v: AGENT_PROTOCOL_VERSION,
                type: "job.log",
                trace: this.trace(),
                ...ref,
                level,
                message: message.slice(0, 4096),
              });
          },
        },
      );
      executingMs = Math.round(performance.now() - started);
      if (h.abandoned) return;
      h.state = "finishing";
      this.send({
        v: AGENT_PROTOCOL_VERSION,
        type: "job.progress",
        trace: this.trace(),
        ...ref,
        phase: "uploading",
        step: 0,
        total: 1,
      });
      const encoded = [...(await this.opts.encoder.outputs(result.frames)), ...result.outputs];
      const records: OutputRecord[] = [];
      for (const o of encoded) {
        if (h.abandoned) return;
        records.push(
          await uploadOutput(target, ref, {
            name: o.name,
            content_type: o.content_type,
            size: o.data.length,
            source: [o.data],
          }),
        );
      }
      this.report({ ...ref, status: "succeeded", ...run(), outputs: records });
      this.completed++;
    } catch (err) {
      if (h.abandoned) return;
      if (err instanceof InputError) {
        if (err.stale) this.refusedStale(ref, "input download", "stale");
        else {
          this.log(`${lease.job_id}: ${err.message}`);
          this.report({
            ...ref,
            status: "failed",
            executing_ms: 0,
            gpus: replica.gpus.length,
            code: "input_unavailable",
            message: err.message.slice(0, 4096),
          });
        }
        return;
      }
      if (err instanceof UploadError) {
        if (err.stale) this.refusedStale(ref, "upload", "stale");
        else
          this.report({
            ...ref,
            status: "failed",
            ...run(),
            code: "upload_failed",
            message: err.message.slice(0, 4096),
          });
        return;
      }
      const f = err as Partial<RunnerFailure>;
      const code = typeof f.code === "string" ? f.code : "runner_crashed";
      if (code === "cancelled") return;
      if ((code === "runner_crashed" || code === "runner_closed") && !h.solo && this.stopping === "no") {
        h.solo = true;
        h.state = "staged";
        this.log(`runner lost while running ${lease.job_id}; retrying it alone before reporting`);
        return;
      }
      this.report({
        ...ref,
        status: "failed",
        ...run(),
        code: agentFailure(code),
        message: String(f.message ?? err).slice(0, 4096),
      });
    } finally {
      void local?.cleanup();
      replica.running.delete(lease.job_id);
      if (h.state !== "staged") {
        this.held.delete(lease.job_id);
        this.emit("job-ended", lease.job_id);
      }
      this.pool.settle(replica);
      this.pump();
      // A result on its way carries the room this job freed; otherwise the agent asks for work.
      if (this.results.length === 0) this.requestWork();
    }
  }

  /** Finish running jobs, take none new, give back the staged ones; resolves when idle. */
  drain(why = "SIGTERM"): Promise<void> {
    if (this.stopping === "no") {
      this.stopping = "drain";
      this.log(`draining (${why}): finishing ${this.held.size} job(s), taking none new`);
      const staged = [...this.held.values()].filter((h) => h.state === "staged");
      for (const h of staged) this.held.delete(h.lease.job_id);
      if (staged.length > 0) {
        this.send({
          v: AGENT_PROTOCOL_VERSION,
          type: "job.release",
          trace: this.trace(),
          leases: staged.map((h) => ({ job_id: h.lease.job_id, epoch: h.lease.epoch })),
          reason: "drained",
        });
      }
      void this.heartbeat();
    }
    return new Promise((res) => (this.held.size === 0 ? res() : this.once("drained", () => res())));
  }

  /** Stops every held job (cancelled in its runner, its result never sent) and forgets it. */
  private abandonAll(): void {
    this.stopping = "now";
    for (const h of this.held.values()) {
      h.abandoned = true;
      h.runner?.cancel(h.lease.job_id);
    }
    this.held.clear();
  }

  /**
   * Gives back every lease without spending attempts, and stops: `drained` when the agent shuts
   * down, `preempted` when its machine is taken away (a preemptible agent's SIGTERM deadline).
   */
  async abort(reason: "drained" | "preempted" = "drained"): Promise<void> {
    const refs = this.refs();
    this.abandonAll();
    if (refs.length > 0)
      this.send({
        v: AGENT_PROTOCOL_VERSION,
        type: "job.release",
        trace: this.trace(),
        leases: refs,
        reason,
      });
    await this.close();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.heartbeatTimer);
    // Results still waiting for their turn go before the socket closes.
    this.flush();
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      await new Promise<void>((res) => {
        ws.once("close", () => res());
        ws.close(1000, "agent stopping");
        setTimeout(res, 2000).unref();
      });
    }
    this.versionManager?.close();
    await this.pool.close();
  }
}

/** The name an agent shows when none is given. */
export function defaultName(): string {
  return hostname().slice(0, 64);
}
