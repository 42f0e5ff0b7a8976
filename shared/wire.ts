/**
 * The agent protocol: what a GPU agent and the edge say over the agent's one WebSocket
 * (`GET /v1/agent/connect`, subprotocol `floodgate.v1`). Every message is a binary frame: one
 * kind byte, then one msgpack map (hardened decode, shared/codec.ts) with `v` (protocol
 * version), `type` (`domain.verb`) and `trace` (a trace id). The kind byte sets the frame's
 * cap before anything is decoded: {@link FRAME_KIND_CONTROL} frames are at most
 * {@link CONTROL_FRAME_CAP} bytes, {@link FRAME_KIND_PREVIEW} frames (previews only) at most
 * {@link PREVIEW_FRAME_CAP}. A frame that breaks any rule closes its connection with one of
 * {@link CLOSE}'s codes and changes nothing else.
 */
import { z } from "zod";
import { CodecError, decode, decodeItems, encode } from "./codec.ts";

export const AGENT_PROTOCOL_VERSION = 1;
export const AGENT_SUBPROTOCOL = "floodgate.v1";
/** Header naming the agent instance (stable across reconnects) on the connect request. */
export const AGENT_ID_HEADER = "x-floodgate-agent";
export const AgentId = z.string().regex(/^agt_[0-9a-z]{16}$/, "an agent id is agt_ and 16 of 0-9a-z");

export const FRAME_KIND_CONTROL = 0x01;
export const FRAME_KIND_PREVIEW = 0x02;
/** Largest control frame (bytes, kind byte included). */
export const CONTROL_FRAME_CAP = 64 * 1024;
/** Largest preview frame (bytes, kind byte included). */
export const PREVIEW_FRAME_CAP = 1024 * 1024;

/** WebSocket close codes (4000–4999 are the application's, RFC 6455 §7.4.2). */
export const CLOSE = {
  /** A frame could not be decoded, failed its schema, or was over its cap. */
  malformed: 4400,
  /** The token was revoked or expired while connected. */
  unauthorized: 4401,
  /** A message arrived out of order (e.g. anything before `agent.hello`). */
  protocol: 4402,
  /** Another connection with the same agent id took over. */
  replaced: 4409,
  /** The edge asked the agent to go (drained, shutting down). */
  going_away: 1001,
} as const;

const V = z.literal(AGENT_PROTOCOL_VERSION);
/** msgpack bin: arrives as a Uint8Array (or a subclass, such as Node's Buffer). */
const Bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, "expected bytes (msgpack bin)");
const Trace = z.string().min(1).max(64);
const JobId = z.string().regex(/^job_[0-9a-z]{30}$/);
const Epoch = z.number().int().min(1);
const ModelName = z.string().min(1).max(64);
const Version = z.string().min(1).max(128);

export const LeaseRef = z.strictObject({ job_id: JobId, epoch: Epoch });
export type LeaseRef = z.infer<typeof LeaseRef>;

export const GpuHealth = z.strictObject({
  name: z.string().max(128).optional(),
  util_pct: z.number().min(0).max(100).optional(),
  vram_used_mb: z.number().min(0).optional(),
  vram_total_mb: z.number().min(0).optional(),
  temp_c: z.number().min(-50).max(200).optional(),
});
export type GpuHealth = z.infer<typeof GpuHealth>;

// ---- agent → edge ----

export const AgentHello = z.strictObject({
  v: V,
  type: z.literal("agent.hello"),
  trace: Trace,
  agent_id: AgentId,
  name: z.string().min(1).max(128),
  gpus: z.array(GpuHealth).max(64),
  /** Model versions loaded, by model. */
  versions: z.array(z.strictObject({ model: ModelName, version: Version })).max(64),
  slots: z.number().int().min(1).max(256),
  prefetch: z.number().int().min(0).max(64),
  /** Leases the agent is still running, to resume after a reconnect. */
  leases: z.array(LeaseRef).max(512),
});

/** The agent has room for `credits` more jobs (free slots plus prefetch). */
export const WorkRequest = z.strictObject({
  v: V,
  type: z.literal("work.request"),
  trace: Trace,
  credits: z.number().int().min(0).max(320),
});

export const AgentHeartbeat = z.strictObject({
  v: V,
  type: z.literal("agent.heartbeat"),
  trace: Trace,
  /** Every lease the agent holds: all are renewed in one call per scheduler shard. */
  leases: z.array(LeaseRef).max(512),
  gpus: z.array(GpuHealth).max(64),
  /** Free capacity, as in `work.request`; 0 while draining or above the VRAM threshold. */
  credits: z.number().int().min(0).max(320),
  draining: z.boolean(),
});

export const ProgressPhase = z.enum(["loading", "sampling", "decoding", "uploading"]);

export const AgentJobProgress = z.strictObject({
  v: V,
  type: z.literal("job.progress"),
  trace: Trace,
  job_id: JobId,
  epoch: Epoch,
  phase: ProgressPhase,
  step: z.number().int().min(0),
  total: z.number().int().min(1),
});

/** A preview frame (PNG or GIF bytes), sent as a {@link FRAME_KIND_PREVIEW} frame. */
export const AgentJobPreview = z.strictObject({
  v: V,
  type: z.literal("job.preview"),
  trace: Trace,
  job_id: JobId,
  epoch: Epoch,
  content_type: z.enum(["image/png", "image/gif", "image/jpeg", "image/webp"]),
  data: Bytes,
});

export const AgentJobLog = z.strictObject({
  v: V,
  type: z.literal("job.log"),
  trace: Trace,
  job_id: JobId,
  epoch: Epoch,
  level: z.enum(["debug", "info", "warn", "error"]),
  message: z.string().max(4096),
});

/** Most outputs one attempt may have (one `job.complete` carries them all). */
export const MAX_OUTPUTS = 32;

/** An output already uploaded through the edge (`/v1/agent/uploads`), as the edge answered it. */
export const OutputRecord = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/),
  key: z.string().min(1).max(512),
  content_type: z.string().min(1).max(128),
  size: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /**
   * The edge's HMAC over key, size, sha256 and content type (shared/signing.ts), proving it
   * stored and hashed these bytes itself; `job.complete` is refused for a record without a
   * valid one.
   */
  receipt: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
});
export type OutputRecord = z.infer<typeof OutputRecord>;

export const AgentJobComplete = z.strictObject({
  v: V,
  type: z.literal("job.complete"),
  trace: Trace,
  job_id: JobId,
  epoch: Epoch,
  outputs: z.array(OutputRecord).max(MAX_OUTPUTS),
});

export const AgentJobFail = z.strictObject({
  v: V,
  type: z.literal("job.fail"),
  trace: Trace,
  job_id: JobId,
  epoch: Epoch,
  code: z.enum(["oom", "runner_crashed", "model_error", "invalid_input", "run_timeout", "upload_failed", "cancelled"]),
  message: z.string().max(4096),
  /** Whether another attempt may succeed (`oom`, `runner_crashed`: yes). */
  retryable: z.boolean(),
});

/** The agent gives leases back without spending their attempts (drain, shutdown). */
export const AgentJobRelease = z.strictObject({
  v: V,
  type: z.literal("job.release"),
  trace: Trace,
  leases: z.array(LeaseRef).min(1).max(512),
  reason: z.enum(["drained", "preempted"]),
});

export const FromAgent = z.discriminatedUnion("type", [
  AgentHello,
  WorkRequest,
  AgentHeartbeat,
  AgentJobProgress,
  AgentJobPreview,
  AgentJobLog,
  AgentJobComplete,
  AgentJobFail,
  AgentJobRelease,
]);
export type FromAgent = z.infer<typeof FromAgent>;

// ---- edge → agent ----

export const Welcome = z.strictObject({
  v: V,
  type: z.literal("agent.welcome"),
  trace: Trace,
  heartbeat_ms: z.number().int().min(100),
  lease_ttl_ms: z.number().int().min(1000),
  control_frame_cap: z.number().int(),
  preview_frame_cap: z.number().int(),
  /** Leases from `agent.hello` that are still the agent's (the rest are stale). */
  resumed: z.array(LeaseRef),
  stale: z.array(LeaseRef),
});

export const LeaseGrant = z.strictObject({
  job_id: JobId,
  epoch: Epoch,
  deadline: z.number().int(),
  attempt: z.number().int().min(1),
  model: ModelName,
  version: Version.nullable(),
  input: z.record(z.string(), z.unknown()),
});
export type LeaseGrant = z.infer<typeof LeaseGrant>;

/** Most leases one `job.leases` frame carries. */
const MAX_LEASES_PER_FRAME = 320;

export const JobLeases = z.strictObject({
  v: V,
  type: z.literal("job.leases"),
  trace: Trace,
  leases: z.array(LeaseGrant).max(MAX_LEASES_PER_FRAME),
});

/** The edge's answer to a heartbeat: leases that are no longer the agent's. */
export const HeartbeatAck = z.strictObject({
  v: V,
  type: z.literal("agent.heartbeat_ack"),
  trace: Trace,
  stale: z.array(LeaseRef),
});

/** Something the agent sent about a lease it no longer holds; it must abandon the job. */
export const LeaseStale = z.strictObject({
  v: V,
  type: z.literal("lease.stale"),
  trace: Trace,
  job_id: JobId,
  epoch: z.number().int(),
});

export const EdgeJobCancel = z.strictObject({
  v: V,
  type: z.literal("job.cancel"),
  trace: Trace,
  job_id: JobId,
  epoch: Epoch,
});

/**
 * The edge refused a `job.complete`: its outputs were not what the edge verified for this lease,
 * or not what the model requires. The attempt ended as a failure (`invalid_output`); the agent
 * abandons the job.
 */
export const JobRefused = z.strictObject({
  v: V,
  type: z.literal("job.refused"),
  trace: Trace,
  job_id: JobId,
  epoch: Epoch,
  code: z.enum(["invalid_output"]),
  message: z.string().max(4096),
});

export const AgentConfig = z.strictObject({
  v: V,
  type: z.literal("agent.config"),
  trace: Trace,
  heartbeat_ms: z.number().int().min(100).optional(),
  lease_ttl_ms: z.number().int().min(1000).optional(),
});

export const AgentDrain = z.strictObject({
  v: V,
  type: z.literal("agent.drain"),
  trace: Trace,
  reason: z.string().max(256),
});

export const EdgeError = z.strictObject({
  v: V,
  type: z.literal("error"),
  trace: Trace,
  code: z.string().max(64),
  message: z.string().max(4096),
});

export const ToAgent = z.discriminatedUnion("type", [
  Welcome,
  JobLeases,
  HeartbeatAck,
  LeaseStale,
  EdgeJobCancel,
  JobRefused,
  AgentConfig,
  AgentDrain,
  EdgeError,
]);
export type ToAgent = z.infer<typeof ToAgent>;

// ---- framing ----

/** Builds a frame: the kind byte, then the msgpack body. Previews go in preview frames. */
export function encodeFrame(msg: FromAgent | ToAgent): Uint8Array {
  const body = encode(msg);
  const out = new Uint8Array(1 + body.length);
  out[0] = msg.type === "job.preview" ? FRAME_KIND_PREVIEW : FRAME_KIND_CONTROL;
  out.set(body, 1);
  return out;
}

export type FrameResult<T> = { ok: true; msg: T } | { ok: false; close: number; reason: string };

function capOf(kind: number | undefined): number | undefined {
  if (kind === FRAME_KIND_CONTROL) return CONTROL_FRAME_CAP;
  if (kind === FRAME_KIND_PREVIEW) return PREVIEW_FRAME_CAP;
  return undefined;
}

/**
 * Checks a frame's kind and cap, decodes it and validates it against `schema`. Only control
 * frames may carry anything but `job.preview`, and only preview frames may carry it.
 */
export function decodeFrame<S extends z.ZodType<FromAgent | ToAgent>>(
  bytes: Uint8Array,
  schema: S,
): FrameResult<z.infer<S>> {
  const kind = bytes[0];
  const cap = capOf(kind);
  if (cap === undefined) return { ok: false, close: CLOSE.malformed, reason: "unknown frame kind" };
  if (bytes.length > cap)
    return { ok: false, close: CLOSE.malformed, reason: `frame of ${bytes.length} bytes is over its cap of ${cap}` };
  let value: unknown;
  try {
    value = decode(bytes.subarray(1));
  } catch (err) {
    return { ok: false, close: CLOSE.malformed, reason: err instanceof CodecError ? err.message : "undecodable frame" };
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return {
      ok: false,
      close: CLOSE.malformed,
      reason: `invalid message: ${issue?.path.join(".") || "(root)"}: ${issue?.message}`,
    };
  }
  const isPreview = parsed.data.type === "job.preview";
  if (isPreview !== (kind === FRAME_KIND_PREVIEW)) {
    return { ok: false, close: CLOSE.malformed, reason: "message in the wrong frame kind" };
  }
  return { ok: true, msg: parsed.data };
}

/**
 * The leases of a `job.leases` control frame that {@link decodeFrame} refused as a whole
 * because of some of its leases: each lease that is plain and schema-valid on its own is kept,
 * and the others are named (where their job id and epoch can be read) so the agent fails only
 * those jobs. `undefined` when the frame is not a `job.leases` frame that way.
 */
export function salvageLeases(
  bytes: Uint8Array,
): { leases: LeaseGrant[]; refused: (LeaseRef & { reason: string })[] } | undefined {
  if (bytes[0] !== FRAME_KIND_CONTROL || bytes.length > CONTROL_FRAME_CAP) return undefined;
  let decoded: ReturnType<typeof decodeItems>;
  try {
    decoded = decodeItems(bytes.subarray(1), "leases");
  } catch {
    return undefined;
  }
  if (!JobLeases.omit({ leases: true }).safeParse(decoded.head).success) return undefined;
  if (decoded.items.length > MAX_LEASES_PER_FRAME) return undefined;
  const leases: LeaseGrant[] = [];
  const refused: (LeaseRef & { reason: string })[] = [];
  for (const item of decoded.items) {
    const lease = item.ok ? LeaseGrant.safeParse(item.value) : undefined;
    if (lease?.success) {
      leases.push(lease.data);
      continue;
    }
    const fields = item.ok ? (item.value as Record<string, unknown>) : item.scalars;
    const ref = LeaseRef.safeParse({ job_id: fields?.job_id, epoch: fields?.epoch });
    const reason = item.ok ? `invalid lease: ${lease?.error.issues[0]?.message ?? "not a lease"}` : item.error;
    if (ref.success) refused.push({ ...ref.data, reason });
  }
  return { leases, refused };
}
