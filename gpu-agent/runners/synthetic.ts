/**
 * The synthetic runner, for tests and benchmarks: serves any model name it is given, takes a
 * chosen service time per job, returns small frames, and injects the faults real runners have.
 * `node gpu-agent/runners/synthetic.ts [flags]`:
 *
 * - `--models a,b` (or env `FLOODGATE_SYNTHETIC_MODELS`, default `synthetic`): model names; any
 *   version of them is served, and `runner.hello` lists each at `--version` (default `1`).
 * - `--service-ms N` (default 50): a job's service time unless its input says otherwise.
 * - `--max-batch N` (default 8).
 * - `--fault-rate P` (default 0) and `--seed S` (default 1): each job crashes the runner with
 *   probability P, drawn from a PRNG seeded by S in the order jobs arrive.
 *
 * Per job `input`: `service_ms`, `steps` (default 5, a progress each), `frames` (default 1) of
 * `size`×`size` pixels (default 16), and `fault`, taking effect halfway through the steps:
 * `crash` (exit code 1), `stall` (a `job.log` "synthetic: stalling", then nothing more from
 * the job, ever; it ignores cancel), `oom`
 * (`job.error` oom; the runner goes on serving), `poison` (the runner SIGKILLs itself, every
 * time), `error` (`job.error` model_error), `garbage` (non-protocol bytes on stdout).
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { rng } from "../../shared/rng.ts";
import { type JobContext, JobFailure, type RunnerModel, main } from "../runner/runtime.ts";
import { assertExhaustive } from "../../shared/errors.ts";

export const SyntheticConfig = z.object({
  /** Model names served (any version). */
  models: z.array(z.string().min(1).max(64)).min(1).max(64),
  /** The version `runner.hello` lists for each model. */
  version: z.string().min(1).max(128),
  /** Default service time of a job (ms). */
  serviceMs: z.number().min(0).max(3_600_000),
  maxBatch: z.number().int().min(1).max(256),
  /** Probability that a job crashes the runner. */
  faultRate: z.number().min(0).max(1),
  /** Seed of the fault-rate draws. */
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1),
});
export type SyntheticConfig = z.infer<typeof SyntheticConfig>;

export const SyntheticInput = z.object({
  service_ms: z.number().min(0).max(3_600_000).optional(),
  steps: z.number().int().min(1).max(10_000).default(5),
  frames: z.number().int().min(0).max(1_000).default(1),
  size: z.number().int().min(1).max(1024).default(16),
  fault: z.enum(["crash", "stall", "oom", "poison", "error", "garbage"]).optional(),
});

/** Reads the flags and environment; a bad one throws (the runner exits before its hello). */
export function syntheticConfig(argv: string[], env: NodeJS.ProcessEnv): SyntheticConfig {
  const { values } = parseArgs({
    args: argv,
    options: {
      models: { type: "string" },
      version: { type: "string", default: "1" },
      "service-ms": { type: "string", default: "50" },
      "max-batch": { type: "string", default: "8" },
      "fault-rate": { type: "string", default: "0" },
      seed: { type: "string", default: "1" },
    },
    strict: true,
  });
  const models = values.models ?? env.FLOODGATE_SYNTHETIC_MODELS ?? "synthetic";
  return SyntheticConfig.parse({
    models: models
      .split(",")
      .map((m) => m.trim())
      .filter((m) => m !== ""),
    version: values.version,
    serviceMs: Number(values["service-ms"]),
    maxBatch: Number(values["max-batch"]),
    faultRate: Number(values["fault-rate"]),
    seed: Number(values.seed),
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The synthetic model as a runner. */
export function syntheticModel(cfg: SyntheticConfig): RunnerModel {
  const draw = rng(cfg.seed);
  return {
    runner: "synthetic",
    version: cfg.version,
    maxBatch: cfg.maxBatch,
    models: cfg.models.map((model) => ({ model, version: cfg.version })),
    serves: (model) => cfg.models.includes(model),
    run: async (job: JobContext) => {
      const parsed = SyntheticInput.safeParse(job.input);
      if (!parsed.success) throw new JobFailure("invalid_input", `input: ${parsed.error.issues[0]?.message}`);
      const { steps, frames, size } = parsed.data;
      const fault = parsed.data.fault ?? (draw() < cfg.faultRate ? "crash" : undefined);
      const stepMs = (parsed.data.service_ms ?? cfg.serviceMs) / steps;
      const faultAt = Math.ceil(steps / 2);
      for (let s = 1; s <= steps; s++) {
        await job.step();
        await sleep(stepMs);
        if (s === faultAt && fault !== undefined) await injectFault(fault, job);
        await job.progress("sampling", s, steps);
      }
      for (let f = 0; f < frames; f++) {
        const data = new Uint8Array(size * size * 4);
        for (let i = 0; i < data.length; i += 4) {
          const p = i / 4;
          data[i] = (p * 7 + f * 31) & 255;
          data[i + 1] = (Math.floor(p / size) * 11 + f * 17) & 255;
          data[i + 2] = (p * 3 + 128) & 255;
          data[i + 3] = 255;
        }
        await job.frame({ index: f, width: size, height: size, data, preview: false });
      }
    },
  };
}

async function injectFault(
  fault: NonNullable<z.infer<typeof SyntheticInput>["fault"]>,
  job: JobContext,
): Promise<void> {
  const jobId = job.id;
  switch (fault) {
    case "crash":
      process.stderr.write(`synthetic: crash fault in ${jobId}\n`);
      return process.exit(1);
    case "poison":
      process.stderr.write(`synthetic: poison fault in ${jobId}\n`);
      process.kill(process.pid, "SIGKILL");
      return new Promise(() => {});
    case "stall":
      // One last log (so a test knows the job is past its last step boundary), then nothing
      // more from this job, cancel included: only a shutdown or a kill ends it.
      await job.log("warn", "synthetic: stalling");
      return new Promise(() => {});
    case "oom":
      throw new JobFailure("oom", "synthetic: out of memory");
    case "error":
      throw new JobFailure("model_error", "synthetic: model error");
    case "garbage":
      process.stdout.write("this is not a runner frame\n");
      return new Promise(() => {});
    default:
      assertExhaustive(fault);
  }
}

if (import.meta.main) await main(syntheticModel(syntheticConfig(process.argv.slice(2), process.env)));
