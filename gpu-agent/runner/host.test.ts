/**
 * RunnerHost against real runner processes: the demo model, the synthetic runner's injected
 * faults, and scripted misbehaviour (fixtures/scripted.ts). Every process started here is
 * closed or killed by the test that started it, or by afterAll.
 */
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type RunCallbacks,
  type RunResult,
  type RunnerExit,
  RunnerHost,
  type RunnerHostOptions,
  RunnerJobError,
  RunnerStartError,
} from "./host.ts";

const script = (rel: string): string => fileURLToPath(new URL(rel, import.meta.url));
const DEMO = script("../runners/demo.ts");
const SYNTHETIC = script("../runners/synthetic.ts");
const SCRIPTED = script("./fixtures/scripted.ts");

const started: RunnerHost[] = [];
async function start(args: string[], opts: Partial<RunnerHostOptions> = {}): Promise<RunnerHost> {
  const host = await RunnerHost.start({
    command: process.execPath,
    args,
    helloTimeoutMs: 20_000,
    closeGraceMs: 2_000,
    ...opts,
  });
  started.push(host);
  return host;
}

afterAll(async () => {
  await Promise.all(started.map((h) => h.close(500)));
});

/** The job's rejection as a RunnerJobError (fails the test if it resolves or throws anything else). */
async function failure(p: Promise<RunResult>): Promise<RunnerJobError> {
  const err: unknown = await p.then(
    () => new Error("the job succeeded"),
    (e: unknown) => e,
  );
  if (!(err instanceof RunnerJobError)) throw err;
  return err;
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

/** The start's rejection as a RunnerStartError. */
async function startError(opts: RunnerHostOptions): Promise<RunnerStartError> {
  const err: unknown = await RunnerHost.start(opts).then(
    (h) => (started.push(h), new Error("started")),
    (e: unknown) => e,
  );
  if (!(err instanceof RunnerStartError)) throw err;
  return err;
}

describe("the demo runner", () => {
  let host: RunnerHost;
  let version: string;
  beforeAll(async () => {
    host = await start([DEMO]);
    version = host.hello.version;
  });
  const demo = (id: string, input: Record<string, unknown>, cb?: RunCallbacks): Promise<RunResult> =>
    host.run({ id, model: "demo", version, input }, cb);

  it("says hello as demo, at the project's version, with max_batch 4", async () => {
    const { default: pkg } = await import("../../package.json", { with: { type: "json" } });
    expect(host.hello).toEqual({
      runner: "demo",
      version: pkg.version,
      max_batch: 4,
      models: [{ model: "demo", version: pkg.version }],
    });
  });

  it("renders byte-identical frames for one seed and different frames for another", async () => {
    const input = { prompt: "a red fox in the snow", frames: 6, size: 48, steps: 8 };
    const [a, b, c] = await Promise.all([
      demo("seed-7a", { ...input, seed: 7 }),
      demo("seed-7b", { ...input, seed: 7 }),
      demo("seed-8", { ...input, seed: 8 }),
    ]);
    expect(a.frames.map((f) => [f.index, f.width, f.height, f.data.length])).toEqual(
      [0, 1, 2, 3, 4, 5].map((i) => [i, 48, 48, 48 * 48 * 4]),
    );
    expect(a.frames.every((f, i) => sameBytes(f.data, b.frames[i]!.data))).toBe(true);
    expect(a.frames.some((f, i) => !sameBytes(f.data, c.frames[i]!.data))).toBe(true);
    // Frames of one animation differ from each other: it moves.
    expect(sameBytes(a.frames[0]!.data, a.frames[3]!.data)).toBe(false);
    expect(a.outputs.map((o) => o.name)).toEqual(["params.json"]);
  });

  it("defaults to 16 frames of 128×128 and a seed derived from the prompt", async () => {
    const [a, b] = await Promise.all([demo("d1", { prompt: "tide pools" }), demo("d2", { prompt: "tide pools" })]);
    expect(a.frames).toHaveLength(16);
    expect([a.frames[0]!.width, a.frames[0]!.height]).toEqual([128, 128]);
    expect(a.frames.every((f, i) => sameBytes(f.data, b.frames[i]!.data))).toBe(true);
    const params: unknown = JSON.parse(new TextDecoder().decode(a.outputs[0]!.data));
    expect(params).toMatchObject({ prompt: "tide pools", steps: 20, frames: 16, size: 128, seed: expect.any(Number) });
  });

  it("reports progress every step and a preview of the middle frame every few steps", async () => {
    const steps: number[] = [];
    const previews: { index: number; width: number; atStep: number }[] = [];
    const logs: string[] = [];
    await demo(
      "progress",
      { prompt: "lanterns", steps: 12, frames: 5, size: 96 },
      {
        onProgress: (p) => {
          if (p.phase === "sampling") steps.push(p.step);
          expect(p.total).toBe(p.phase === "sampling" ? 12 : 5);
        },
        onPreview: (f) => previews.push({ index: f.index, width: f.width, atStep: steps.at(-1) ?? 0 }),
        onLog: (l) => logs.push(l.message),
      },
    );
    expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    // Every 5 steps before the last; the middle frame, downscaled to at most 64 pixels.
    expect(previews).toEqual([
      { index: 2, width: 48, atStep: 5 },
      { index: 2, width: 48, atStep: 10 },
    ]);
    expect(logs).toEqual([expect.stringContaining("5 frames of 96×96, 12 steps")]);
  });

  it("a cancel stops the job at its next step with cancelled, and the runner goes on serving", async () => {
    let first!: () => void;
    const firstStep = new Promise<void>((resolve) => {
      first = resolve;
    });
    let sampled = 0;
    const job = demo(
      "to-cancel",
      { prompt: "slow", steps: 200, size: 128 },
      { onProgress: () => (sampled++, first()) },
    );
    await firstStep;
    expect(host.cancel("to-cancel")).toBe(true);
    expect(host.cancel("to-cancel")).toBe(false);
    const err = await failure(job);
    expect([err.code, err.jobId]).toEqual(["cancelled", "to-cancel"]);
    // Stopped well before its end (runtime.test.ts pins "at the next step" exactly).
    expect(sampled).toBeLessThan(200);
    expect(host.cancel("to-cancel")).toBe(false);
    await expect(demo("after-cancel", { prompt: "ok", frames: 1, size: 8, steps: 1 })).resolves.toMatchObject({
      frames: [{ index: 0 }],
    });
  });

  it("multiplexes up to max_batch jobs; one more is refused with runner_busy", async () => {
    const events: string[] = [];
    const jobs = ["m0", "m1", "m2", "m3"].map((id) =>
      demo(
        id,
        { prompt: id, steps: 10, frames: 4, size: 32 },
        { onProgress: () => events.push(`progress ${id}`) },
      ).then((r) => (events.push(`done ${id}`), r)),
    );
    expect(host.inFlight).toBe(4);
    expect(host.free).toBe(0);
    const refused = await failure(demo("m4", { prompt: "m4" }));
    expect(refused.code).toBe("runner_busy");
    const dup = await failure(demo("m0", { prompt: "again" }));
    expect(dup.code).toBe("runner_busy");
    await Promise.all(jobs);
    // Every job had advanced before any finished: they ran together, not one after another.
    const firstDone = events.findIndex((e) => e.startsWith("done"));
    for (const id of ["m0", "m1", "m2", "m3"]) expect(events.indexOf(`progress ${id}`)).toBeLessThan(firstDone);
    expect(host.free).toBe(4);
  });

  it("bad input, an unserved model and input that is not plain data fail the job with invalid_input", async () => {
    const noPrompt = await failure(demo("bad-input", { steps: 3 }));
    expect([noPrompt.code, noPrompt.message]).toEqual(["invalid_input", expect.stringContaining("input.prompt")]);
    const other = await failure(host.run({ id: "other", model: "sdxl", version: "1", input: {} }));
    expect(other.code).toBe("invalid_input");
    const longId = await failure(host.run({ id: "x".repeat(65), model: "demo", version, input: {} }));
    expect(longId.code).toBe("invalid_input");
    const notPlain = await failure(demo("not-plain", { prompt: "p", when: new Date(0), seed: undefined }));
    expect([notPlain.code, notPlain.message]).toEqual(["invalid_input", expect.stringContaining("not plain data")]);
    expect(host.inFlight).toBe(0);
  });

  it("load answers runner.loaded for a served version and runner.load_failed for another", async () => {
    await expect(host.load("demo", version)).resolves.toBeUndefined();
    await expect(host.load("demo", "9.9.9")).rejects.toMatchObject({ name: "RunnerJobError", code: "invalid_input" });
  });

  it("close shuts the runner down cleanly (code 0, reason closed) and later runs are refused", async () => {
    const exitEvent = once(host, "exit") as Promise<[RunnerExit]>;
    const exit = await host.close();
    expect([exit.reason, exit.code, exit.signal]).toEqual(["closed", 0, null]);
    expect((await exitEvent)[0]).toBe(exit);
    expect((await failure(demo("late", { prompt: "late" }))).code).toBe("runner_closed");
    expect(host.free).toBe(0);
  });
});

describe("runner failures", () => {
  it("a crash rejects every in-flight job with runner_crashed and emits exit with the reason", async () => {
    const lines: string[] = [];
    const host = await start([SYNTHETIC], { onLog: (l) => lines.push(l) });
    const exitEvent = once(host, "exit") as Promise<[RunnerExit]>;
    const run = (id: string, input: Record<string, unknown>): Promise<RunResult> =>
      host.run({ id, model: "synthetic", version: "1", input });
    const [a, b] = await Promise.all([
      failure(run("long", { service_ms: 10_000, steps: 100 })),
      failure(run("crasher", { fault: "crash", service_ms: 40, steps: 2 })),
    ]);
    expect([a.code, b.code]).toEqual(["runner_crashed", "runner_crashed"]);
    const [exit] = await exitEvent;
    expect([exit.reason, exit.code, exit.signal]).toEqual(["crashed", 1, null]);
    expect(exit.jobs.sort()).toEqual(["crasher", "long"]);
    expect(exit.message).toContain("crash fault in crasher");
    expect(lines).toContain("synthetic: crash fault in crasher");
    expect(host.free).toBe(0);
  });

  it("a poison job SIGKILLs its runner: jobs in flight fail with runner_crashed", async () => {
    const host = await start([SYNTHETIC, "--service-ms", "40"]);
    const err = await failure(host.run({ id: "poison", model: "synthetic", version: "1", input: { fault: "poison" } }));
    expect(err.code).toBe("runner_crashed");
    expect(await host.exited).toMatchObject({ reason: "crashed", signal: "SIGKILL", jobs: ["poison"] });
  });

  describe("out of memory", () => {
    let host: RunnerHost;
    beforeAll(async () => {
      host = await start([SYNTHETIC, "--models", "a,b", "--service-ms", "20"]);
    });

    it("an oom fails that job with oom and the runner keeps serving", async () => {
      const err = await failure(host.run({ id: "big", model: "a", version: "1", input: { fault: "oom" } }));
      expect([err.code, err.message]).toEqual(["oom", "synthetic: out of memory"]);
      const ok = await host.run({ id: "next", model: "b", version: "7", input: { frames: 2, size: 4 } });
      expect(ok.frames.map((f) => [f.index, f.width, f.data.length])).toEqual([
        [0, 4, 64],
        [1, 4, 64],
      ]);
      expect(host.exit).toBeUndefined();
    });

    it("a SIGKILL soon after an out-of-memory report is taken for an OOM kill: jobs fail with oom", async () => {
      const err = await failure(host.run({ id: "killed", model: "a", version: "1", input: { fault: "poison" } }));
      expect(err.code).toBe("oom");
      expect(await host.exited).toMatchObject({ reason: "oom", signal: "SIGKILL" });
    });
  });

  it("a runner writing garbage to stdout is killed, its jobs failing with protocol_error", async () => {
    const host = await start([SYNTHETIC]);
    const run = (id: string, input: Record<string, unknown>): Promise<RunResult> =>
      host.run({ id, model: "synthetic", version: "1", input });
    const [a, b] = await Promise.all([
      failure(run("innocent", { service_ms: 10_000, steps: 100 })),
      failure(run("garbler", { fault: "garbage", service_ms: 40, steps: 2 })),
    ]);
    expect([a.code, b.code]).toEqual(["protocol_error", "protocol_error"]);
    const exit = await host.exited;
    expect([exit.reason, exit.signal]).toEqual(["protocol_error", "SIGKILL"]);
    expect(exit.message).toMatch(/over the .*cap/);
  });

  it("a message for a job that is not in flight is a protocol error", async () => {
    const host = await start([SCRIPTED, "unknown-job"]);
    const exit = await host.exited;
    expect(exit.reason).toBe("protocol_error");
    expect(exit.message).toContain('job.done for job "nobody"');
  });

  it("a runner that dies halfway through writing a frame has crashed; it broke no protocol", async () => {
    const host = await start([SCRIPTED, "half-frame"]);
    const exit = await host.exited;
    expect([exit.reason, exit.code]).toEqual(["crashed", 3]);
  });

  it("a stalled job ignores cancel; the runner serves others, and close fails it with runner_closed", async () => {
    const host = await start([SYNTHETIC, "--service-ms", "20"]);
    let stalling!: () => void;
    const silent = new Promise<void>((resolve) => {
      stalling = resolve;
    });
    let settled = false;
    const stalled = host
      .run(
        { id: "stall", model: "synthetic", version: "1", input: { fault: "stall", steps: 4 } },
        { onLog: (l) => l.message === "synthetic: stalling" && stalling() },
      )
      .finally(() => {
        settled = true;
      });
    const stalledFailure = failure(stalled);
    await silent;
    expect(host.cancel("stall")).toBe(true);
    await host.run({ id: "other", model: "synthetic", version: "1", input: { steps: 3 } });
    expect(settled).toBe(false);
    const exit = await host.close();
    expect(exit).toMatchObject({ reason: "closed", code: 0, jobs: ["stall"] });
    expect((await stalledFailure).code).toBe("runner_closed");
  });

  it("close escalates to SIGTERM, then SIGKILL, for a runner that ignores shutdown", async () => {
    const lines: string[] = [];
    const host = await start([SCRIPTED, "stubborn"], { closeGraceMs: 150, onLog: (l) => lines.push(l) });
    const exit = await host.close();
    expect([exit.reason, exit.signal]).toEqual(["closed", "SIGKILL"]);
    expect(lines).toContain("scripted: ignoring SIGTERM");
  });
});

describe("runner start", () => {
  it("garbage before the hello fails the start with protocol_error", async () => {
    const err = await startError({ command: process.execPath, args: [SCRIPTED, "garbage-first"] });
    expect(err.exit.reason).toBe("protocol_error");
    expect(err.exit.signal).toBe("SIGKILL");
  });

  it("a runner that says no hello by the deadline is killed", async () => {
    const err = await startError({ command: process.execPath, args: [SCRIPTED, "silent"], helloTimeoutMs: 300 });
    expect([err.exit.reason, err.exit.signal]).toEqual(["hello_timeout", "SIGKILL"]);
  });

  it("a command that cannot be spawned fails the start", async () => {
    const err = await startError({ command: "/nonexistent/floodgate-runner" });
    expect(err.exit.reason).toBe("crashed");
    expect(err.exit.message).toMatch(/could not start the runner: .*ENOENT/);
  });
});
