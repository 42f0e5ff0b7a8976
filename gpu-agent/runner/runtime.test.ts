/**
 * The runner runtime in process, over in-memory pipes: the agent's end is played by the test,
 * so the order of what the runner says can be checked exactly.
 */
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { FromRunner, type ToRunner } from "../../shared/runner.ts";
import { encodeFrame, readFrames } from "./io.ts";
import { type JobContext, JobFailure, type RunnerModel, serve } from "./runtime.ts";

/** A runner on in-memory pipes; `next()` waits for its next message. */
function harness(model: RunnerModel): {
  send(m: ToRunner): void;
  next(): Promise<FromRunner>;
  served: Promise<void>;
  end(): void;
} {
  const toRunner = new PassThrough();
  const fromRunner = new PassThrough();
  const queue: FromRunner[] = [];
  const waiters: ((m: FromRunner) => void)[] = [];
  readFrames(fromRunner, FromRunner, {
    message: (m) => {
      const w = waiters.shift();
      if (w) w(m);
      else queue.push(m);
    },
    error: (e) => {
      throw new Error(e.message);
    },
  });
  const served = serve(model, { input: toRunner, output: fromRunner, log: () => {} });
  return {
    send: (m) => toRunner.write(encodeFrame(m)),
    next: () => {
      const m = queue.shift();
      return m ? Promise.resolve(m) : new Promise((resolve) => waiters.push(resolve));
    },
    served,
    end: () => toRunner.end(),
  };
}

const base = { runner: "test", version: "1", maxBatch: 2, models: [{ model: "m", version: "1" }] };
const run = (id: string, input: Record<string, unknown> = {}): ToRunner => ({
  v: 1,
  type: "job.run",
  job_id: id,
  model: "m",
  version: "1",
  input,
});

describe("runner runtime", () => {
  it("says runner.hello first, unasked, and stops at the end of stdin", async () => {
    const h = harness({ ...base, run: async () => {} });
    expect(await h.next()).toEqual({
      v: 1,
      type: "runner.hello",
      runner: "test",
      version: "1",
      max_batch: 2,
      models: [{ model: "m", version: "1" }],
    });
    h.end();
    await h.served;
  });

  it("a cancel takes effect at the job's next step boundary, not before", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let steps = 0;
    const h = harness({
      ...base,
      run: async (job: JobContext) => {
        for (let s = 1; s <= 10; s++) {
          await job.step();
          steps = s;
          await job.progress("sampling", s, 10);
          if (s === 2) await gate;
        }
      },
    });
    await h.next(); // hello
    h.send(run("j"));
    expect(await h.next()).toMatchObject({ type: "job.progress", step: 1 });
    expect(await h.next()).toMatchObject({ type: "job.progress", step: 2 });
    h.send({ v: 1, type: "job.cancel", job_id: "j" });
    // The job is between steps (at the gate): it sees the cancel when it reaches the next one.
    await new Promise((r) => setImmediate(r));
    release();
    expect(await h.next()).toEqual({ v: 1, type: "job.error", job_id: "j", code: "cancelled", message: "cancelled" });
    expect(steps).toBe(2);
    h.send({ v: 1, type: "runner.shutdown" });
    await h.served;
  });

  it("a JobFailure keeps its code, anything else thrown is a model_error, and a normal return is job.done", async () => {
    const h = harness({
      ...base,
      run: async (job) => {
        if (job.input.kind === "oom") throw new JobFailure("oom", "no memory");
        if (job.input.kind === "bug") throw new TypeError("x is undefined");
      },
    });
    await h.next();
    h.send(run("a", { kind: "oom" }));
    expect(await h.next()).toEqual({ v: 1, type: "job.error", job_id: "a", code: "oom", message: "no memory" });
    h.send(run("b", { kind: "bug" }));
    expect(await h.next()).toMatchObject({
      type: "job.error",
      job_id: "b",
      code: "model_error",
      message: "x is undefined",
    });
    h.send(run("c"));
    expect(await h.next()).toEqual({ v: 1, type: "job.done", job_id: "c" });
    h.end();
    await h.served;
  });

  it("a job for a model it does not serve gets job.error invalid_input; a load of one gets runner.load_failed", async () => {
    let loaded = 0;
    const h = harness({
      ...base,
      load: async () => {
        loaded++;
      },
      run: async () => {},
    });
    await h.next();
    h.send({ v: 1, type: "job.run", job_id: "x", model: "other", version: "1", input: {} });
    expect(await h.next()).toMatchObject({ type: "job.error", job_id: "x", code: "invalid_input" });
    h.send({ v: 1, type: "runner.load", model: "m", version: "2" });
    expect(await h.next()).toMatchObject({
      type: "runner.load_failed",
      model: "m",
      version: "2",
      code: "invalid_input",
    });
    h.send({ v: 1, type: "runner.load", model: "m", version: "1" });
    expect(await h.next()).toEqual({ v: 1, type: "runner.loaded", model: "m", version: "1" });
    expect(loaded).toBe(1);
    h.end();
    await h.served;
  });

  it("shutdown aborts running jobs and nothing more is said about them", async () => {
    let sawAbort!: () => void;
    const aborted = new Promise<void>((resolve) => {
      sawAbort = resolve;
    });
    const h = harness({
      ...base,
      run: async (job) => {
        await job.progress("sampling", 1, 2);
        if (!job.signal.aborted) {
          await new Promise<void>((resolve) => job.signal.addEventListener("abort", () => resolve()));
        }
        sawAbort();
        await job.progress("sampling", 2, 2);
      },
    });
    await h.next();
    h.send(run("j"));
    expect(await h.next()).toMatchObject({ type: "job.progress", step: 1 });
    h.send({ v: 1, type: "runner.shutdown" });
    await h.served;
    await aborted;
    const more = await Promise.race([
      h.next(),
      new Promise<"none">((r) => setImmediate(() => setImmediate(r, "none"))),
    ]);
    expect(more).toBe("none");
  });
});
