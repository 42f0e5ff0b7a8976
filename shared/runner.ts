/**
 * The runner protocol: an agent and a runner process (one model runtime) talk over the
 * runner's stdin/stdout in length-prefixed msgpack frames, multiplexed by job id. Each frame is
 * a 4-byte big-endian length, then one msgpack map (hardened decode: shared/codec.ts) with
 * `v` (protocol version) and `type`. The runner writes logs of its own to stderr only.
 *
 * Agent → runner: `runner.load`, `job.run`, `job.cancel`, `runner.shutdown`.
 * Runner → agent: `runner.hello` (first, unasked), `runner.loaded` or `runner.load_failed`,
 * `job.progress`, `job.frame`, `job.log`, `job.output`, `job.error`, `job.done`.
 *
 * A job ends with exactly one `job.done` or `job.error`. Frames (`job.frame`) come in index
 * order; `preview: true` marks a preview during sampling, the rest are the result, which the
 * agent encodes (GIF, PNG, MP4) the same way for every runner.
 */
import { z } from "zod";
import { RunnerPhase } from "./job.ts";

export const RUNNER_PROTOCOL_VERSION = 1;
/** Largest runner frame (bytes): a 1024×1024 RGBA frame with room to spare. */
export const MAX_RUNNER_FRAME = 16 * 1024 * 1024;

const V = z.literal(RUNNER_PROTOCOL_VERSION).describe("Protocol version: always 1.");
const JobId = z
  .string()
  .min(1)
  .max(64)
  .describe("The job, as the agent named it in `job.run`; never reused while the job is in flight.");
/** msgpack bin: arrives as a Uint8Array (or a subclass, such as Node's Buffer). */
const Bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, "expected bytes (msgpack bin)");

/** Why a job failed inside a runner. `oom` and `runner_crashed` are retried elsewhere. */
export const RunnerErrorCode = z
  .enum(["oom", "invalid_input", "model_error", "cancelled", "timeout"])
  .describe(
    "`oom` out of (GPU) memory, retried elsewhere; `invalid_input` the input or the model version cannot run; `model_error` the model failed; `cancelled` the answer to `job.cancel`; `timeout` the runner gave up on the job.",
  );
export type RunnerErrorCode = z.infer<typeof RunnerErrorCode>;

export const RunnerHello = z
  .strictObject({
    v: V,
    type: z.literal("runner.hello"),
    runner: z.string().min(1).max(64).describe("The runner's kind, e.g. `demo`, `torch`."),
    version: z.string().min(1).max(64).describe("The runner's own version."),
    max_batch: z
      .number()
      .int()
      .min(1)
      .max(256)
      .describe("Jobs the runner advances together; the agent never has more in flight on it."),
    models: z
      .array(
        z
          .strictObject({
            model: z.string().min(1).max(64).describe("Model name."),
            version: z.string().min(1).max(128).describe("The version of it served."),
          })
          .describe("A model version the runner serves."),
      )
      .max(64)
      .describe("Models the runner can serve now, each at one version; the agent's `agent.hello` lists them."),
  })
  .describe("The runner's first frame, sent unasked within the hello deadline (60 s), and only once.");

export const RunnerLoad = z
  .strictObject({
    v: V,
    type: z.literal("runner.load"),
    model: z.string().min(1).max(64).describe("Model name."),
    version: z.string().min(1).max(128).describe("Model version."),
  })
  .describe("Load (warm) this model version now. Answered by `runner.loaded` or `runner.load_failed`.");

export const RunnerLoaded = z
  .strictObject({
    v: V,
    type: z.literal("runner.loaded"),
    model: z.string().min(1).max(64).describe("As in the `runner.load` it answers."),
    version: z.string().min(1).max(128).describe("As in the `runner.load` it answers."),
  })
  .describe("The answer to a `runner.load` that worked.");

/**
 * The answer to a `runner.load` that could not be done (unknown version, weights missing, out of
 * memory while loading): without it a failed load could only be told by silence or a crash.
 */
export const RunnerLoadFailed = z
  .strictObject({
    v: V,
    type: z.literal("runner.load_failed"),
    model: z.string().min(1).max(64).describe("As in the `runner.load` it answers."),
    version: z.string().min(1).max(128).describe("As in the `runner.load` it answers."),
    code: RunnerErrorCode,
    message: z.string().max(4096).describe("For people."),
  })
  .describe("The answer to a `runner.load` that did not work (unknown version, weights missing, out of memory).");

export const JobRun = z
  .strictObject({
    v: V,
    type: z.literal("job.run"),
    job_id: JobId,
    model: z.string().min(1).max(64).describe("Model name."),
    version: z.string().min(1).max(128).describe("Model version."),
    input: z
      .record(z.string(), z.unknown())
      .describe(
        "The job's input, already checked by the edge against the model's JSON Schema. A field the schema marks as a file (`\"x-floodgate-file\": true`) holds the absolute path of a local copy of that input file (its extension from its media type), which the agent downloaded and verified; the file is deleted once the job ends.",
      ),
  })
  .describe("Run a job. Answered by progress, frames, logs and outputs, then exactly one `job.done` or `job.error`.");

export const JobCancel = z
  .strictObject({ v: V, type: z.literal("job.cancel"), job_id: JobId })
  .describe(
    "Stop this job at its next step boundary and answer `job.error` `cancelled`; ignore it for a job not in flight.",
  );
export const RunnerShutdown = z
  .strictObject({ v: V, type: z.literal("runner.shutdown") })
  .describe("Stop all work, flush stdout and exit with status 0.");

export const JobProgress = z
  .strictObject({
    v: V,
    type: z.literal("job.progress"),
    job_id: JobId,
    phase: RunnerPhase,
    step: z.number().int().min(0).describe("Steps done in this phase, normally at most `total`."),
    total: z.number().int().min(1).describe("Steps in this phase."),
  })
  .describe("A job's progress.");

export const JobFrame = z
  .strictObject({
    v: V,
    type: z.literal("job.frame"),
    job_id: JobId,
    index: z
      .number()
      .int()
      .min(0)
      .max(100_000)
      .describe("The frame's place in the result, from 0; a preview names the frame it previews."),
    width: z.number().int().min(1).max(4096).describe("Pixels."),
    height: z.number().int().min(1).max(4096).describe("Pixels."),
    format: z.literal("rgba8").describe("Pixel layout of `data`: 8-bit RGBA, row-major, top row first, no padding."),
    data: Bytes.describe("The pixels: exactly width × height × 4 bytes."),
    preview: z
      .boolean()
      .describe("True: a preview during sampling, shown live and not kept. False: a result frame, in index order."),
  })
  .describe("One frame of the job's result, or a preview.");

export const JobLog = z
  .strictObject({
    v: V,
    type: z.literal("job.log"),
    job_id: JobId,
    level: z.enum(["debug", "info", "warn", "error"]).describe("Severity."),
    message: z.string().max(4096).describe("The line, shown to the job's owner."),
  })
  .describe("A log line for the job's owner (the runner's own logs go to stderr).");

/** A non-frame output (e.g. a JSON report) handed back as bytes. */
export const JobOutput = z
  .strictObject({
    v: V,
    type: z.literal("job.output"),
    job_id: JobId,
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/)
      .describe(
        "File name: 1–64 of a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit; one per name, not `animation.gif`, `last.png` or `video.mp4`.",
      ),
    content_type: z.string().min(1).max(128).describe("Its media type, e.g. `application/json`."),
    data: Bytes.describe("The file."),
  })
  .describe("A file other than frames (e.g. `params.json`).");

export const JobError = z
  .strictObject({
    v: V,
    type: z.literal("job.error"),
    job_id: JobId,
    code: RunnerErrorCode,
    message: z.string().max(4096).describe("For people."),
  })
  .describe("The job failed: its last message.");

export const JobDone = z
  .strictObject({ v: V, type: z.literal("job.done"), job_id: JobId })
  .describe("The job succeeded: its last message.");

/** What an agent sends a runner. */
export const ToRunner = z.discriminatedUnion("type", [RunnerLoad, JobRun, JobCancel, RunnerShutdown]);
export type ToRunner = z.infer<typeof ToRunner>;

/** What a runner sends its agent. */
export const FromRunner = z.discriminatedUnion("type", [
  RunnerHello,
  RunnerLoaded,
  RunnerLoadFailed,
  JobProgress,
  JobFrame,
  JobLog,
  JobOutput,
  JobError,
  JobDone,
]);
export type FromRunner = z.infer<typeof FromRunner>;

/** Frames a 4-byte big-endian length before a msgpack body. */
export function lengthPrefix(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length, false);
  out.set(body, 4);
  return out;
}
