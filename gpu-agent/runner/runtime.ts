/**
 * The runner side of the runner protocol, for runners written in JavaScript (the demo and
 * synthetic runners): reads `ToRunner` frames from stdin, writes `FromRunner` frames to stdout,
 * says `runner.hello` first and dispatches `runner.load`, `job.run`, `job.cancel` and
 * `runner.shutdown` to a {@link RunnerModel}. Jobs run concurrently (one async call each); a
 * model calls `job.step()` between steps, which is where a cancel takes effect and where the
 * jobs of a batch take turns.
 */
import type { Readable, Writable } from "node:stream";
import { FromRunner, RUNNER_PROTOCOL_VERSION, type RunnerErrorCode, ToRunner } from "../../shared/runner.ts";
import type { RunnerPhase } from "../../shared/job.ts";
import { readFrames, writeFrame } from "./io.ts";
import { assertExhaustive } from "../../shared/errors.ts";

/** An expected failure of a job, sent as `job.error` with its code. Anything else thrown is a `model_error`. */
export class JobFailure extends Error {
  readonly code: RunnerErrorCode;

  constructor(code: RunnerErrorCode, message: string) {
    super(message);
    this.name = "JobFailure";
    this.code = code;
  }
}

/** What a model sees of one job. Every send resolves once stdout took the frame. */
export interface JobContext {
  readonly id: string;
  readonly model: string;
  readonly version: string;
  readonly input: Record<string, unknown>;
  /** Aborted when the agent cancels the job or the runner shuts down. */
  readonly signal: AbortSignal;
  /** A step boundary: yields to the other jobs, then throws `JobFailure("cancelled")` if cancelled. */
  step(): Promise<void>;
  progress(phase: RunnerPhase, step: number, total: number): Promise<void>;
  /** One RGBA8 frame (`data.length === width * height * 4`). */
  frame(f: {
    index: number;
    width: number;
    height: number;
    data: Uint8Array<ArrayBuffer>;
    preview: boolean;
  }): Promise<void>;
  log(level: "debug" | "info" | "warn" | "error", message: string): Promise<void>;
  output(name: string, contentType: string, data: Uint8Array<ArrayBuffer>): Promise<void>;
}

/** A model runtime served over stdio. */
export interface RunnerModel {
  /** `runner.hello` fields. */
  runner: string;
  version: string;
  maxBatch: number;
  models: { model: string; version: string }[];
  /** Whether a `job.run`/`runner.load` for this model version is served; default: listed in `models`. */
  serves?(model: string, version: string): boolean;
  /** Warms a model version; throw a {@link JobFailure} to answer `runner.load_failed`. */
  load?(model: string, version: string): Promise<void>;
  /** Runs one job to its end; resolving sends `job.done`, throwing sends `job.error`. */
  run(job: JobContext): Promise<void>;
}

/** Where the runtime reads and writes; the process's stdio by default. */
export interface ServeOptions {
  input?: Readable;
  output?: Writable;
  /** Diagnostics (never stdout, which carries frames); default stderr. */
  log?: (line: string) => void;
}

const truncate = (s: string, n = 4096): string => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/**
 * Serves a model until `runner.shutdown` or the end of stdin; resolves then, after stdout has
 * taken every frame. In-flight jobs are aborted at shutdown and get no further messages. The
 * caller exits the process (`process.exit` after this resolves).
 *
 * @example
 * await serve({ runner: "demo", version: "1.0.0", maxBatch: 4, models, run: renderJob });
 * process.exit(0);
 */
export async function serve(model: RunnerModel, opts: ServeOptions = {}): Promise<void> {
  const input = opts.input ?? process.stdin;
  const output = opts.output ?? process.stdout;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const v = RUNNER_PROTOCOL_VERSION;
  const jobs = new Map<string, AbortController>();
  let stopped = false;
  // Writes go out in order through one chain; a broken stdout (agent gone) stops the runner.
  let chain: Promise<void> = Promise.resolve();

  const send = (message: FromRunner): Promise<void> => {
    if (stopped) return Promise.resolve();
    const checked = FromRunner.safeParse(message);
    if (!checked.success) {
      // A bug of this runner: the agent would kill us for it, so fail loudly here instead.
      throw new Error(`runner built an invalid ${message.type}: ${checked.error.message}`);
    }
    chain = chain
      .then(() => writeFrame(output, message))
      .catch((err: unknown) => {
        log(`stdout failed: ${String(err)}; stopping`);
        stop();
      });
    return chain;
  };

  const serves = (m: string, ver: string): boolean =>
    model.serves ? model.serves(m, ver) : model.models.some((x) => x.model === m && x.version === ver);

  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });
  let detach: (() => void) | undefined;
  function stop(): void {
    if (stopped) return;
    stopped = true;
    detach?.();
    for (const c of jobs.values()) c.abort();
    jobs.clear();
    void chain.then(resolveDone, resolveDone);
  }

  async function runJob(id: string, m: string, ver: string, jobInput: Record<string, unknown>): Promise<void> {
    const controller = new AbortController();
    jobs.set(id, controller);
    const { signal } = controller;
    const ctx: JobContext = {
      id,
      model: m,
      version: ver,
      input: jobInput,
      signal,
      step: async () => {
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (signal.aborted) throw new JobFailure("cancelled", "cancelled");
      },
      progress: (phase, step, total) => send({ v, type: "job.progress", job_id: id, phase, step, total }),
      frame: (f) => {
        // The agent kills a runner that sends a frame of the wrong size: fail just this job.
        if (f.data.length !== f.width * f.height * 4) {
          throw new Error(`frame ${f.index}: ${f.data.length} bytes for ${f.width}×${f.height} rgba8`);
        }
        return send({ v, type: "job.frame", job_id: id, format: "rgba8", ...f });
      },
      log: (level, message) => send({ v, type: "job.log", job_id: id, level, message: truncate(message) }),
      output: (name, contentType, data) =>
        send({ v, type: "job.output", job_id: id, name, content_type: contentType, data }),
    };
    try {
      await model.run(ctx);
      if (!stopped) await send({ v, type: "job.done", job_id: id });
    } catch (err) {
      if (!stopped) {
        const code = err instanceof JobFailure ? err.code : "model_error";
        const message = err instanceof Error ? err.message : String(err);
        await send({ v, type: "job.error", job_id: id, code, message: truncate(message) });
      }
    } finally {
      if (jobs.get(id) === controller) jobs.delete(id);
    }
  }

  async function load(m: string, ver: string): Promise<void> {
    try {
      if (!serves(m, ver)) throw new JobFailure("invalid_input", `model ${m}@${ver} is not served by ${model.runner}`);
      await model.load?.(m, ver);
      await send({ v, type: "runner.loaded", model: m, version: ver });
    } catch (err) {
      const code = err instanceof JobFailure ? err.code : "model_error";
      const message = truncate(err instanceof Error ? err.message : String(err));
      await send({ v, type: "runner.load_failed", model: m, version: ver, code, message });
    }
  }

  const onMessage = (msg: ToRunner): void => {
    if (stopped) return;
    switch (msg.type) {
      case "job.run":
        if (jobs.has(msg.job_id)) {
          log(`job.run for ${msg.job_id}, already running: ignored`);
        } else if (!serves(msg.model, msg.version)) {
          void send({
            v,
            type: "job.error",
            job_id: msg.job_id,
            code: "invalid_input",
            message: `model ${msg.model}@${msg.version} is not served by ${model.runner}`,
          });
        } else {
          void runJob(msg.job_id, msg.model, msg.version, msg.input);
        }
        return;
      case "job.cancel":
        // Takes effect at the job's next step boundary; unknown (already ended) jobs are ignored.
        jobs.get(msg.job_id)?.abort();
        return;
      case "runner.load":
        void load(msg.model, msg.version);
        return;
      case "runner.shutdown":
        stop();
        return;
      default:
        assertExhaustive(msg);
    }
  };

  const onOutputError = (err: unknown): void => {
    log(`stdout failed: ${String(err)}; stopping`);
    stop();
  };
  output.on("error", onOutputError);
  detach = readFrames(input, ToRunner, {
    message: onMessage,
    error: (e) => {
      log(`protocol error from the agent: ${e.message}`);
      // An unframeable stdin cannot be trusted to carry a shutdown: stop.
      if (e.fatal) stop();
    },
    end: stop,
  });
  await send({
    v,
    type: "runner.hello",
    runner: model.runner,
    version: model.version,
    max_batch: model.maxBatch,
    models: model.models,
  });
  await done;
  output.off("error", onOutputError);
}

/**
 * The entry point of a JavaScript runner: serves the model on this process's stdio, then exits
 * 0 once stdout has flushed (an exit straight after the last write could cut a frame short).
 *
 * @example
 * if (import.meta.main) await main(demoModel());
 */
export async function main(model: RunnerModel): Promise<void> {
  await serve(model);
  process.stdout.write("", () => process.exit(0));
}
