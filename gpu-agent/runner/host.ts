/**
 * The agent's side of one runner process: spawns it, waits for its `runner.hello`, then
 * multiplexes up to `max_batch` jobs over its stdio (shared/runner.ts) and turns each job's
 * frames into one promise. The agent holds one host per runner; when the process dies the host
 * rejects every job in flight, emits `exit` with the reason, and is spent: the agent starts a
 * new one (`RunnerHost.start`) after reporting the loss.
 *
 * Trust: the runner is a separate program (possibly another language, possibly a model that
 * misbehaves). Every frame is length-capped, decoded by the hardened codec and checked by its
 * schema (./io.ts); any violation of the protocol (garbage on stdout, a message for a job not in
 * flight, result frames out of order or of the wrong size) kills the runner with SIGKILL and
 * fails its jobs with `protocol_error`. Runs over `max_batch` are refused (`runner_busy`), not
 * queued, so the agent's count of free slots is the runner's.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import {
  FromRunner,
  JobRun,
  RUNNER_PROTOCOL_VERSION,
  type RunnerErrorCode,
  RunnerLoad,
  type ToRunner,
} from "../../shared/runner.ts";
import { decode } from "../../shared/codec.ts";
import type { AgentFailure, RunnerPhase } from "../../shared/job.ts";
import { encodeFrame, readFrames } from "./io.ts";
import { assertExhaustive } from "../../shared/errors.ts";

/** How to start a runner and how patient to be with it. */
export interface RunnerHostOptions {
  /** Executable and arguments, e.g. `process.execPath, ["gpu-agent/runners/demo.ts"]`. */
  command: string;
  args?: readonly string[];
  /** The runner's complete environment (default: this process's). Pass `{ ...process.env, X }` to add. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** How long the runner has to say `runner.hello` (ms, default 60 000: model runtimes import slowly). */
  helloTimeoutMs?: number;
  /** Each step of `close()`'s escalation waits this long (ms, default 5 000). */
  closeGraceMs?: number;
  /** One line of the runner's stderr (without the newline), as it arrives. */
  onLog?: (line: string) => void;
}

/** Why a job (or a load) failed: the runner's own codes plus the host's. */
export type RunnerJobErrorCode =
  | RunnerErrorCode
  /** The runner process died (crash, signal) with the job in flight. */
  | "runner_crashed"
  /** The runner broke the protocol and was killed. */
  | "protocol_error"
  /** `max_batch` jobs are in flight already, or this job id is. */
  | "runner_busy"
  /** The host is closing or its runner has exited. */
  | "runner_closed";

/**
 * How each runner or host failure is reported to the edge (shared/job.ts, AgentFailure): one
 * table, so a new code cannot go unreported. Whether the job is retried is the edge's decision.
 */
const AGENT_FAILURE: Readonly<Record<RunnerJobErrorCode, AgentFailure>> = {
  oom: "oom",
  invalid_input: "invalid_input",
  model_error: "model_error",
  cancelled: "cancelled",
  timeout: "run_timeout",
  runner_crashed: "runner_crashed",
  protocol_error: "runner_crashed",
  runner_busy: "runner_crashed",
  runner_closed: "runner_crashed",
};

/** The failure to report for a job that failed in its runner with `code` (anything unknown: a crash). */
export function agentFailure(code: string): AgentFailure {
  return Object.hasOwn(AGENT_FAILURE, code) ? AGENT_FAILURE[code as RunnerJobErrorCode] : "runner_crashed";
}

/**
 * A job's expected failure: `job.error` from the runner, or the loss of the runner.
 *
 * @example
 * try { await host.run(job) } catch (e) { if (e instanceof RunnerJobError && e.code === "oom") retry(job) }
 */
export class RunnerJobError extends Error {
  readonly code: RunnerJobErrorCode;
  /** The job it ended; undefined for a load. */
  readonly jobId: string | undefined;

  constructor(code: RunnerJobErrorCode, message: string, jobId?: string) {
    super(message);
    this.name = "RunnerJobError";
    this.code = code;
    this.jobId = jobId;
  }
}

/** Why a runner process ended. */
export type RunnerExitReason =
  /** `close()` was called. */
  | "closed"
  /** Exited or was killed without being asked to (including a failure to spawn). */
  | "crashed"
  /** Killed by SIGKILL (the kernel's OOM killer) after the runner reported running out of memory. */
  | "oom"
  /** Broke the protocol; the host killed it. */
  | "protocol_error"
  /** Said no `runner.hello` in time; the host killed it. */
  | "hello_timeout";

/** The `exit` event. */
export interface RunnerExit {
  reason: RunnerExitReason;
  /** Exit status, or null when killed by a signal or never started. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** For people: what happened, with the runner's last stderr lines. */
  message: string;
  /** Jobs that were in flight and were rejected because of this exit. */
  jobs: string[];
}

/** `RunnerHost.start` failed: the runner exited or timed out before its hello. */
export class RunnerStartError extends Error {
  readonly exit: RunnerExit;

  constructor(exit: RunnerExit) {
    super(`runner did not start (${exit.reason}): ${exit.message}`);
    this.name = "RunnerStartError";
    this.exit = exit;
  }
}

/** What the runner said in `runner.hello`. */
export type RunnerHello = Omit<Extract<FromRunner, { type: "runner.hello" }>, "v" | "type">;

/** One job for the runner. `id` is the job id on the wire (1–64 chars). */
export interface RunnerJob {
  id: string;
  model: string;
  version: string;
  input: Record<string, unknown>;
}

/** One RGBA8 frame, row-major, `data.length === width * height * 4`. */
export interface RunnerFrame {
  index: number;
  width: number;
  height: number;
  data: Uint8Array;
}

/** A non-frame output of a job. */
export interface RunnerOutput {
  name: string;
  content_type: string;
  data: Uint8Array;
}

/** What a finished job produced: the result frames in index order, and its outputs in arrival order. */
export interface RunResult {
  frames: RunnerFrame[];
  outputs: RunnerOutput[];
}

/** Called as a job's messages arrive. They must not throw (a throw is rethrown asynchronously, as the bug it is). */
export interface RunCallbacks {
  onProgress?(p: { phase: RunnerPhase; step: number; total: number }): void;
  onPreview?(f: RunnerFrame): void;
  onLog?(l: { level: "debug" | "info" | "warn" | "error"; message: string }): void;
}

export interface RunnerHostEvents {
  exit: [RunnerExit];
}

interface InFlight {
  callbacks: RunCallbacks;
  frames: RunnerFrame[];
  outputs: RunnerOutput[];
  cancelled: boolean;
  resolve(r: RunResult): void;
  reject(e: RunnerJobError): void;
}

interface LoadWaiter {
  resolve(): void;
  reject(e: RunnerJobError): void;
}

const DEFAULT_HELLO_TIMEOUT_MS = 60_000;
const DEFAULT_CLOSE_GRACE_MS = 5_000;
/** An OOM report counts for a SIGKILL that follows within this long (ms). */
const OOM_WINDOW_MS = 30_000;
/** After `exit`, how long to wait for the stdio pipes to close (a grandchild may hold them) (ms). */
const CLOSE_AFTER_EXIT_MS = 2_000;
/** A stderr line longer than this is cut (chars): a runner printing without newlines cannot grow our memory. */
const MAX_LOG_LINE = 16 * 1024;
const STDERR_TAIL_LINES = 5;
const OOM_LINE = /out of memory|\bOOM\b/i;

/** Runs a callback; a throw is a bug of the caller, rethrown outside our message loop. */
function guarded(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    queueMicrotask(() => {
      throw err;
    });
  }
}

/**
 * One runner process. Create with {@link RunnerHost.start}.
 *
 * @example
 * const host = await RunnerHost.start({ command: process.execPath, args: ["gpu-agent/runners/demo.ts"] });
 * host.on("exit", (e) => report(e));
 * const { frames } = await host.run({ id: "j1", model: "demo", version: host.hello.version, input: { prompt: "a fox" } });
 * await host.close();
 */
export class RunnerHost extends EventEmitter<RunnerHostEvents> {
  /** What the runner said in `runner.hello`. */
  readonly hello: RunnerHello;
  /** The runner's process id. */
  readonly pid: number | undefined;
  /** Resolves once the runner process has ended (same value as the `exit` event). */
  readonly exited: Promise<RunnerExit>;
  readonly #core: HostCore;

  private constructor(core: HostCore, hello: RunnerHello) {
    super();
    this.#core = core;
    this.hello = hello;
    this.pid = core.child.pid;
    this.exited = core.exited;
    core.onExit = (e) => this.emit("exit", e);
  }

  /**
   * Spawns a runner and resolves once it has said `runner.hello`. Rejects with a
   * {@link RunnerStartError} if it exits, breaks the protocol or stays silent past
   * `helloTimeoutMs` first (the process is killed then).
   */
  static async start(opts: RunnerHostOptions): Promise<RunnerHost> {
    const core = new HostCore(opts);
    const hello = await core.ready;
    return new RunnerHost(core, hello);
  }

  /** Jobs in flight. */
  get inFlight(): number {
    return this.#core.jobs.size;
  }

  /** How many more jobs `run` takes now: `max_batch - inFlight`, 0 once closing or exited. */
  get free(): number {
    return this.#core.accepting ? Math.max(0, this.hello.max_batch - this.#core.jobs.size) : 0;
  }

  /** The exit, once the runner has exited. */
  get exit(): RunnerExit | undefined {
    return this.#core.exit;
  }

  /**
   * Asks the runner to load (warm) a model version. Resolves on `runner.loaded`; rejects with a
   * {@link RunnerJobError} on `runner.load_failed` (its code), the runner's exit, or `timeout`
   * after `timeoutMs` (default: none).
   */
  load(model: string, version: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    return this.#core.load(model, version, opts.timeoutMs);
  }

  /**
   * Runs a job. Resolves on `job.done` with its result frames (in index order) and outputs;
   * rejects with a {@link RunnerJobError}: the runner's `job.error` code, `runner_crashed` /
   * `oom` / `protocol_error` when the runner is lost, `runner_busy` when `max_batch` jobs (or
   * this id) are in flight already — extra runs are refused, never queued —, `invalid_input`
   * when the job cannot be encoded, and `runner_closed` once closing. `callbacks` get progress,
   * previews and logs as they arrive.
   */
  run(job: RunnerJob, callbacks: RunCallbacks = {}): Promise<RunResult> {
    return this.#core.run(job, callbacks, this.hello.max_batch);
  }

  /**
   * Asks the runner to cancel a job in flight; it stops at its next step boundary and the
   * job's promise rejects with `cancelled` (or resolves, if it finished first). Returns false
   * when the job is not in flight or was cancelled already.
   */
  cancel(jobId: string): boolean {
    return this.#core.cancel(jobId);
  }

  /**
   * Stops the runner: `runner.shutdown` and the end of its stdin, then SIGTERM after
   * `graceMs`, then SIGKILL after another `graceMs`. Jobs still in flight reject with
   * `runner_closed`. Resolves with the exit (reason `closed`, unless it had exited already).
   */
  close(graceMs?: number): Promise<RunnerExit> {
    return this.#core.close(graceMs);
  }
}

/** The process and its state; kept apart so that the public class exists only after the hello. */
class HostCore {
  readonly child: ChildProcess;
  readonly ready: Promise<RunnerHello>;
  readonly exited: Promise<RunnerExit>;
  readonly jobs = new Map<string, InFlight>();
  onExit: (e: RunnerExit) => void = () => {};
  exit: RunnerExit | undefined;

  readonly #opts: RunnerHostOptions;
  readonly #loads = new Map<string, LoadWaiter[]>();
  #hello: RunnerHello | undefined;
  #closing = false;
  #killedByUs = false;
  #violation: string | undefined;
  #helloTimedOut = false;
  #lastOomReport = -Infinity; // ms (performance.now())
  #stderrTail: string[] = [];
  #stderrPartial = "";
  #exitStatus: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  #resolveReady: (h: RunnerHello) => void = () => {};
  #rejectReady: (e: RunnerStartError) => void = () => {};
  #resolveExited: (e: RunnerExit) => void = () => {};
  #helloTimer: NodeJS.Timeout | undefined;
  #closeTimer: NodeJS.Timeout | undefined;

  constructor(opts: RunnerHostOptions) {
    this.#opts = opts;
    this.ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.exited = new Promise((resolve) => {
      this.#resolveExited = resolve;
    });
    this.child = spawn(opts.command, opts.args ?? [], {
      stdio: ["pipe", "pipe", "pipe"],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    const { stdin, stdout, stderr } = this.child;
    // A write to a runner that just died fails with EPIPE: its exit is reported by `close`.
    stdin?.on("error", () => {});
    if (stdout) {
      readFrames(stdout, FromRunner, {
        message: (m) => this.#onMessage(m),
        error: (e) => this.#violate(e.message),
        // stdout ends when the process does: a frame cut short by a crash is the crash's
        // doing, and the exit reports it.
        truncated: (e) => this.#logLine(`(runner stdout: ${e.message})`),
      });
    }
    if (stderr) {
      stderr.setEncoding("utf8");
      stderr.on("data", (s: string) => this.#onStderr(s));
      stderr.on("end", () => {
        if (this.#stderrPartial !== "") this.#logLine(this.#stderrPartial);
        this.#stderrPartial = "";
      });
    }
    this.child.on("error", (err) => {
      // Spawning failed (no such command); later errors (a signal that could not be sent) change nothing.
      if (this.child.pid === undefined) this.#finish(null, null, `could not start the runner: ${err.message}`);
    });
    this.child.on("exit", (code, signal) => {
      this.#exitStatus = { code, signal };
      this.#closeTimer = setTimeout(() => {
        this.child.stdout?.destroy();
        this.child.stderr?.destroy();
        this.#finish(code, signal);
      }, CLOSE_AFTER_EXIT_MS);
    });
    // `close` comes once the pipes are drained, so the runner's last frames are read first.
    this.child.on("close", (code: number | null, signal: NodeJS.Signals | null) => {
      this.#finish(this.#exitStatus?.code ?? code, this.#exitStatus?.signal ?? signal);
    });
    this.#helloTimer = setTimeout(() => {
      if (this.#hello !== undefined) return;
      this.#helloTimedOut = true;
      this.#kill("SIGKILL");
    }, opts.helloTimeoutMs ?? DEFAULT_HELLO_TIMEOUT_MS);
  }

  get accepting(): boolean {
    return this.#hello !== undefined && !this.#closing && this.exit === undefined && this.#violation === undefined;
  }

  run(job: RunnerJob, callbacks: RunCallbacks, maxBatch: number): Promise<RunResult> {
    if (!this.accepting) {
      return Promise.reject(new RunnerJobError("runner_closed", "the runner is closing or has exited", job.id));
    }
    if (this.jobs.has(job.id)) {
      return Promise.reject(new RunnerJobError("runner_busy", `job ${job.id} is in flight already`, job.id));
    }
    if (this.jobs.size >= maxBatch) {
      return Promise.reject(
        new RunnerJobError("runner_busy", `${this.jobs.size} jobs in flight: max_batch is ${maxBatch}`, job.id),
      );
    }
    const parsed = JobRun.safeParse({
      v: RUNNER_PROTOCOL_VERSION,
      type: "job.run",
      job_id: job.id,
      model: job.model,
      version: job.version,
      input: job.input,
    });
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const why = issue ? `${issue.path.join(".")}: ${issue.message}` : "fails its schema";
      return Promise.reject(new RunnerJobError("invalid_input", `job.run not sendable: ${why}`, job.id));
    }
    let frame: Uint8Array;
    try {
      frame = encodeFrame(parsed.data);
      // msgpack writes `undefined`, dates and the like as extension types, which the runner
      // would refuse without being able to say for which job: prove the frame plain here.
      decode(frame.subarray(4));
    } catch (err) {
      return Promise.reject(new RunnerJobError("invalid_input", `job.run not sendable: ${String(err)}`, job.id));
    }
    return new Promise<RunResult>((resolve, reject) => {
      this.jobs.set(job.id, { callbacks, frames: [], outputs: [], cancelled: false, resolve, reject });
      this.#write(frame);
    });
  }

  cancel(jobId: string): boolean {
    const j = this.jobs.get(jobId);
    if (j === undefined || j.cancelled || this.exit !== undefined) return false;
    j.cancelled = true;
    this.#send({ v: RUNNER_PROTOCOL_VERSION, type: "job.cancel", job_id: jobId });
    return true;
  }

  load(model: string, version: string, timeoutMs: number | undefined): Promise<void> {
    if (!this.accepting) {
      return Promise.reject(new RunnerJobError("runner_closed", "the runner is closing or has exited"));
    }
    const parsed = RunnerLoad.safeParse({ v: RUNNER_PROTOCOL_VERSION, type: "runner.load", model, version });
    if (!parsed.success) {
      return Promise.reject(
        new RunnerJobError("invalid_input", `runner.load not sendable: ${parsed.error.issues[0]?.message}`),
      );
    }
    const key = `${model}@${version}`;
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: LoadWaiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const waiters = this.#loads.get(key);
      if (waiters) waiters.push(waiter);
      else {
        this.#loads.set(key, [waiter]);
        this.#send(parsed.data);
      }
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          const list = this.#loads.get(key);
          const i = list?.indexOf(waiter) ?? -1;
          if (list && i >= 0) list.splice(i, 1);
          reject(new RunnerJobError("timeout", `no answer to runner.load ${key} in ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  close(graceMs: number = this.#opts.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS): Promise<RunnerExit> {
    if (this.exit) return Promise.resolve(this.exit);
    if (!this.#closing) {
      this.#closing = true;
      this.#send({ v: RUNNER_PROTOCOL_VERSION, type: "runner.shutdown" });
      this.child.stdin?.end();
      const escalate = async (): Promise<void> => {
        for (const signal of ["SIGTERM", "SIGKILL"] as const) {
          let timer: NodeJS.Timeout | undefined;
          const ended = await Promise.race([
            this.exited.then(() => true),
            new Promise<boolean>((r) => {
              timer = setTimeout(r, graceMs, false);
            }),
          ]);
          clearTimeout(timer);
          if (ended) return;
          this.#kill(signal);
        }
      };
      void escalate();
    }
    return this.exited;
  }

  #send(message: ToRunner): void {
    this.#write(encodeFrame(message));
  }

  #write(frame: Uint8Array): void {
    const stdin = this.child.stdin;
    if (this.exit !== undefined || stdin === null || stdin.destroyed || stdin.writableEnded) return;
    // A failed write means the runner is gone, which `close` reports. The host's own messages
    // are small and few (at most max_batch runs), so stdin's buffer stays bounded.
    stdin.write(frame);
  }

  #kill(signal: NodeJS.Signals): void {
    if (this.exit !== undefined) return;
    this.#killedByUs = true;
    this.child.kill(signal);
  }

  /** The runner broke the protocol: kill it; its jobs fail with protocol_error once it is gone. */
  #violate(why: string): void {
    if (this.#violation !== undefined || this.exit !== undefined) return;
    this.#violation = why;
    this.#kill("SIGKILL");
  }

  #onMessage(m: FromRunner): void {
    if (this.#violation !== undefined) return;
    if (this.#hello === undefined) {
      if (m.type !== "runner.hello") {
        this.#violate(`${m.type} before runner.hello`);
        return;
      }
      this.#hello = { runner: m.runner, version: m.version, max_batch: m.max_batch, models: m.models };
      clearTimeout(this.#helloTimer);
      this.#resolveReady(this.#hello);
      return;
    }
    switch (m.type) {
      case "runner.hello":
        this.#violate("a second runner.hello");
        return;
      case "runner.loaded":
      case "runner.load_failed": {
        // An answer nobody waits for (a load that timed out) is harmless and dropped.
        const key = `${m.model}@${m.version}`;
        const waiters = this.#loads.get(key) ?? [];
        this.#loads.delete(key);
        if (m.type === "runner.load_failed" && m.code === "oom") this.#lastOomReport = performance.now();
        for (const w of waiters) {
          if (m.type === "runner.loaded") w.resolve();
          else w.reject(new RunnerJobError(m.code, m.message));
        }
        return;
      }
      case "job.progress":
      case "job.frame":
      case "job.log":
      case "job.output":
      case "job.error":
      case "job.done":
        this.#onJobMessage(m);
        return;
      default:
        assertExhaustive(m);
    }
  }

  #onJobMessage(m: Extract<FromRunner, { job_id: string }>): void {
    const j = this.jobs.get(m.job_id);
    if (j === undefined) {
      this.#violate(`${m.type} for job ${JSON.stringify(m.job_id)}, which is not in flight`);
      return;
    }
    const cb = j.callbacks;
    switch (m.type) {
      case "job.progress": {
        const onProgress = cb.onProgress;
        if (onProgress) guarded(() => onProgress({ phase: m.phase, step: m.step, total: m.total }));
        return;
      }
      case "job.frame": {
        if (m.data.length !== m.width * m.height * 4) {
          this.#violate(`job.frame ${m.index} of ${m.job_id}: ${m.data.length} bytes for ${m.width}×${m.height} rgba8`);
          return;
        }
        const frame: RunnerFrame = { index: m.index, width: m.width, height: m.height, data: m.data };
        if (m.preview) {
          const onPreview = cb.onPreview;
          if (onPreview) guarded(() => onPreview(frame));
          return;
        }
        const first = j.frames[0];
        if (m.index !== j.frames.length) {
          this.#violate(`result frame ${m.index} of ${m.job_id} out of order: expected ${j.frames.length}`);
          return;
        }
        if (first && (first.width !== m.width || first.height !== m.height)) {
          this.#violate(
            `result frame ${m.index} of ${m.job_id} is ${m.width}×${m.height}, frame 0 ${first.width}×${first.height}`,
          );
          return;
        }
        j.frames.push(frame);
        return;
      }
      case "job.log": {
        const onLog = cb.onLog;
        if (onLog) guarded(() => onLog({ level: m.level, message: m.message }));
        return;
      }
      case "job.output":
        j.outputs.push({ name: m.name, content_type: m.content_type, data: m.data });
        return;
      case "job.error":
        this.jobs.delete(m.job_id);
        if (m.code === "oom") this.#lastOomReport = performance.now();
        j.reject(new RunnerJobError(m.code, m.message, m.job_id));
        return;
      case "job.done":
        this.jobs.delete(m.job_id);
        j.resolve({ frames: j.frames, outputs: j.outputs });
        return;
      default:
        assertExhaustive(m);
    }
  }

  #onStderr(s: string): void {
    let buf = this.#stderrPartial + s;
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      this.#logLine(buf.slice(0, nl).replace(/\r$/, ""));
      buf = buf.slice(nl + 1);
      nl = buf.indexOf("\n");
    }
    while (buf.length > MAX_LOG_LINE) {
      this.#logLine(buf.slice(0, MAX_LOG_LINE));
      buf = buf.slice(MAX_LOG_LINE);
    }
    this.#stderrPartial = buf;
  }

  #logLine(line: string): void {
    if (OOM_LINE.test(line)) this.#lastOomReport = performance.now();
    this.#stderrTail.push(line.length > 500 ? `${line.slice(0, 499)}…` : line);
    if (this.#stderrTail.length > STDERR_TAIL_LINES) this.#stderrTail.shift();
    const onLog = this.#opts.onLog;
    if (onLog) guarded(() => onLog(line));
  }

  #finish(code: number | null, signal: NodeJS.Signals | null, spawnError?: string): void {
    if (this.exit !== undefined) return;
    clearTimeout(this.#helloTimer);
    clearTimeout(this.#closeTimer);
    // 137: a shell reporting its child's SIGKILL. The kernel's OOM killer says nothing to the
    // process, so a SIGKILL counts as OOM only if the runner had reported running out of memory.
    const killedBySigkill = signal === "SIGKILL" || code === 137;
    const oomReported = performance.now() - this.#lastOomReport < OOM_WINDOW_MS;
    let reason: RunnerExitReason;
    if (this.#violation !== undefined) reason = "protocol_error";
    else if (this.#helloTimedOut) reason = "hello_timeout";
    else if (this.#closing) reason = "closed";
    else if (killedBySigkill && !this.#killedByUs && oomReported) reason = "oom";
    else reason = "crashed";

    const how = spawnError ?? (signal !== null ? `runner killed by ${signal}` : `runner exited with code ${code}`);
    const details: Record<RunnerExitReason, string> = {
      closed: how,
      crashed: how,
      oom: `${how} after reporting out of memory`,
      protocol_error: `protocol error: ${this.#violation}; ${how}`,
      hello_timeout: `no runner.hello within ${this.#opts.helloTimeoutMs ?? DEFAULT_HELLO_TIMEOUT_MS} ms; ${how}`,
    };
    const tail = this.#stderrTail.length > 0 ? ` (stderr: ${this.#stderrTail.slice(-3).join(" | ")})` : "";
    const message = `${details[reason]}${tail}`;
    const jobCode: RunnerJobErrorCode =
      reason === "oom"
        ? "oom"
        : reason === "protocol_error"
          ? "protocol_error"
          : reason === "closed"
            ? "runner_closed"
            : "runner_crashed";

    const exit: RunnerExit = { reason, code, signal, message, jobs: [...this.jobs.keys()] };
    this.exit = exit;
    for (const [id, j] of this.jobs) j.reject(new RunnerJobError(jobCode, message, id));
    this.jobs.clear();
    for (const waiters of this.#loads.values()) for (const w of waiters) w.reject(new RunnerJobError(jobCode, message));
    this.#loads.clear();
    if (this.#hello === undefined) this.#rejectReady(new RunnerStartError(exit));
    this.#resolveExited(exit);
    this.onExit(exit);
  }
}
