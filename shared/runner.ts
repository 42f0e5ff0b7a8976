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

export const RUNNER_PROTOCOL_VERSION = 1;
/** Largest runner frame (bytes): a 1024×1024 RGBA frame with room to spare. */
export const MAX_RUNNER_FRAME = 16 * 1024 * 1024;

const V = z.literal(RUNNER_PROTOCOL_VERSION);
const JobId = z.string().min(1).max(64);
/** msgpack bin: arrives as a Uint8Array (or a subclass, such as Node's Buffer). */
const Bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, "expected bytes (msgpack bin)");

/** Why a job failed inside a runner. `oom` and `runner_crashed` are retried elsewhere. */
export const RunnerErrorCode = z.enum(["oom", "invalid_input", "model_error", "cancelled", "timeout"]);
export type RunnerErrorCode = z.infer<typeof RunnerErrorCode>;

export const RunnerHello = z.strictObject({
  v: V,
  type: z.literal("runner.hello"),
  runner: z.string().min(1).max(64),
  version: z.string().min(1).max(64),
  /** Jobs the runner advances together; the agent sends at most this many at once. */
  max_batch: z.number().int().min(1).max(256),
  /** Models this runner can serve, each at one version. */
  models: z.array(z.strictObject({ model: z.string().min(1).max(64), version: z.string().min(1).max(128) })).max(64),
});

export const RunnerLoad = z.strictObject({
  v: V,
  type: z.literal("runner.load"),
  model: z.string().min(1).max(64),
  version: z.string().min(1).max(128),
});

export const RunnerLoaded = z.strictObject({
  v: V,
  type: z.literal("runner.loaded"),
  model: z.string().min(1).max(64),
  version: z.string().min(1).max(128),
});

/**
 * The answer to a `runner.load` that could not be done (unknown version, weights missing, out of
 * memory while loading): without it a failed load could only be told by silence or a crash.
 */
export const RunnerLoadFailed = z.strictObject({
  v: V,
  type: z.literal("runner.load_failed"),
  model: z.string().min(1).max(64),
  version: z.string().min(1).max(128),
  code: RunnerErrorCode,
  message: z.string().max(4096),
});

export const JobRun = z.strictObject({
  v: V,
  type: z.literal("job.run"),
  job_id: JobId,
  model: z.string().min(1).max(64),
  version: z.string().min(1).max(128),
  input: z.record(z.string(), z.unknown()),
});

export const JobCancel = z.strictObject({ v: V, type: z.literal("job.cancel"), job_id: JobId });
export const RunnerShutdown = z.strictObject({ v: V, type: z.literal("runner.shutdown") });

export const JobProgress = z.strictObject({
  v: V,
  type: z.literal("job.progress"),
  job_id: JobId,
  phase: z.enum(["loading", "sampling", "decoding"]),
  step: z.number().int().min(0),
  total: z.number().int().min(1),
});

export const JobFrame = z.strictObject({
  v: V,
  type: z.literal("job.frame"),
  job_id: JobId,
  index: z.number().int().min(0).max(100_000),
  width: z.number().int().min(1).max(4096),
  height: z.number().int().min(1).max(4096),
  /** Pixel layout of `data`: 8-bit RGBA, row-major, no padding. */
  format: z.literal("rgba8"),
  data: Bytes,
  preview: z.boolean(),
});

export const JobLog = z.strictObject({
  v: V,
  type: z.literal("job.log"),
  job_id: JobId,
  level: z.enum(["debug", "info", "warn", "error"]),
  message: z.string().max(4096),
});

/** A non-frame output (e.g. a JSON report) handed back as bytes. */
export const JobOutput = z.strictObject({
  v: V,
  type: z.literal("job.output"),
  job_id: JobId,
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/),
  content_type: z.string().min(1).max(128),
  data: Bytes,
});

export const JobError = z.strictObject({
  v: V,
  type: z.literal("job.error"),
  job_id: JobId,
  code: RunnerErrorCode,
  message: z.string().max(4096),
});

export const JobDone = z.strictObject({ v: V, type: z.literal("job.done"), job_id: JobId });

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
