/**
 * The agent protocol: what a GPU agent and the edge say over the agent's one WebSocket
 * (`GET /v1/agent/connect`, subprotocol `floodgate.v2`). Every message is a binary frame: one
 * kind byte, then one msgpack map (hardened decode, shared/codec.ts) with `v` (protocol
 * version), `type` (`domain.verb`) and `trace` (a trace id). The kind byte sets the frame's
 * cap before anything is decoded: {@link FRAME_KIND_CONTROL} frames are at most
 * {@link CONTROL_FRAME_CAP} bytes, {@link FRAME_KIND_PREVIEW} frames (previews only) at most
 * {@link PREVIEW_FRAME_CAP}. A frame that breaks any rule closes its connection with one of
 * {@link CLOSE}'s codes and changes nothing else.
 */
import { z } from "zod";
import { CodecError, decode, decodeItems, encode, type Decoded } from "./codec.ts";
import { MAX_OUTPUTS, OutputName } from "./outputs.ts";
import { InputFiles } from "./files.ts";
import { AgentFailure, ProgressPhase } from "./job.ts";

export const AGENT_PROTOCOL_VERSION = 2;
export const AGENT_SUBPROTOCOL = "floodgate.v2";
/** Header naming the agent (its id, kept across its restarts and reconnects) on the connect request. */
export const AGENT_ID_HEADER = "x-floodgate-agent";
/**
 * Header naming the agent process on the connect request: random, made once per process start
 * and kept across its reconnects. A reconnect with the same instance takes over the agent id's
 * connection; another instance presenting an id whose connection is alive is refused (4410).
 */
export const AGENT_INSTANCE_HEADER = "x-floodgate-instance";
export const AgentInstance = z
  .string()
  .regex(/^[0-9A-Za-z_-]{8,64}$/, "an agent instance is 8–64 of A-Z, a-z, 0-9, '_', '-'");
export const AgentId = z.string().regex(/^agt_[0-9a-z]{16}$/, "an agent id is agt_ and 16 of 0-9a-z");

export const FRAME_KIND_CONTROL = 0x01;
export const FRAME_KIND_PREVIEW = 0x02;
/** Largest control frame (bytes, kind byte included). */
export const CONTROL_FRAME_CAP = 64 * 1024;
/** Largest preview frame (bytes, kind byte included). */
export const PREVIEW_FRAME_CAP = 1024 * 1024;

/** WebSocket close codes (4000–4999 are the application's, RFC 6455 §7.4.2). */
export const CLOSE = {
  malformed: 4400,
  unauthorized: 4401,
  protocol: 4402,
  hello_timeout: 4408,
  replaced: 4409,
  id_in_use: 4410,
  reclaimed: 4411,
} as const;

/**
 * When the edge closes an agent's connection with each {@link CLOSE} code: the close-code table
 * of docs/protocol.md is generated from it. Any other code (1000, or 1001/1006 from the platform)
 * is not a verdict on the agent: reconnect.
 */
export const CLOSE_WHEN: Readonly<Record<keyof typeof CLOSE, string>> = {
  malformed:
    "a text frame, an unknown kind byte, a frame over its cap, undecodable msgpack, a message that fails its schema, or a message in the wrong kind of frame",
  unauthorized:
    "the token expired or was revoked while connected (checked on heartbeats and at revocation); its leases go back without spending attempts. Do not reconnect with that token",
  protocol:
    "out of order: anything before `agent.hello`, a second `agent.hello` on the connection, or a hello whose `agent_id` is not the connection's `X-Floodgate-Agent`",
  hello_timeout:
    "no `agent.hello` arrived within 10 s (`HELLO_TIMEOUT_MS`) of the upgrade; nothing was recorded for the connection. Reconnect and say hello first",
  replaced:
    "a newer connection of the same agent process (same `X-Floodgate-Instance`) took over, e.g. after a network drop the edge had not noticed; the newer one stays",
  id_in_use:
    "another live agent process (another `X-Floodgate-Instance`, heartbeating within the last 15 s) already speaks as this agent id, e.g. a machine image cloned with its identity. Take a fresh agent id and reconnect; the other keeps its connection and its leases",
  reclaimed:
    "the machine is taken back (`floodgate agents reclaim`, e.g. a training cluster reclaiming lent GPUs): its jobs already went back to the head of their queues without spending attempts. Stop every job, report nothing for them, and exit; do not reconnect",
};

/** How long after the upgrade the edge waits for `agent.hello` before closing (ms). */
export const HELLO_TIMEOUT_MS = 10_000;

const V = z.literal(AGENT_PROTOCOL_VERSION).describe("Protocol version: always 2.");
/** msgpack bin: arrives as a Uint8Array (or a subclass, such as Node's Buffer). */
const Bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, "expected bytes (msgpack bin)");
const Trace = z
  .string()
  .min(1)
  .max(64)
  .describe(
    "Trace id for logs (the Node agent sends 16 hex chars, the edge a UUID). `agent.welcome` and `agent.heartbeat_ack` echo the trace of the message they answer, `lease.stale` that of the message it refuses.",
  );
const JobId = z
  .string()
  .regex(/^job_[0-9a-z]{30}$/)
  .describe("Job id: `job_` and 30 of 0-9a-z.");
const Epoch = z
  .number()
  .int()
  .min(1)
  .describe("Lease epoch: every grant of a job gives it a higher one; with `job_id` it names one lease.");
const ModelName = z.string().min(1).max(64).describe("Model name.");
const Version = z.string().min(1).max(128).describe("Model version, as the runner names it.");

export const LeaseRef = z
  .strictObject({ job_id: JobId, epoch: Epoch })
  .describe("One lease: a job and the epoch it was granted at.");
export type LeaseRef = z.infer<typeof LeaseRef>;

export const GpuHealth = z
  .strictObject({
    index: z
      .number()
      .int()
      .min(0)
      .max(63)
      .describe("The GPU's index as its host numbers it (nvidia-smi's `index`, `CUDA_VISIBLE_DEVICES`)."),
    name: z.string().max(128).optional().describe("Product name, e.g. `NVIDIA H100 80GB HBM3`."),
    util_pct: z.number().min(0).max(100).optional().describe("Utilisation, percent."),
    vram_used_mb: z.number().min(0).optional().describe("Memory in use, MiB (as nvidia-smi reports it)."),
    vram_total_mb: z.number().min(0).optional().describe("Memory in total, MiB."),
    temp_c: z.number().min(-50).max(200).optional().describe("Temperature, °C."),
  })
  .describe(
    "One GPU the agent serves with (only those of its `--gpus` selection), as nvidia-smi reports it; `index` is required, send the other fields you know.",
  );
export type GpuHealth = z.infer<typeof GpuHealth>;

// ---- agent → edge ----

export const VersionState = z
  .strictObject({
    model: ModelName.describe("A model the agent's token allows."),
    version: Version.describe("One of its versions."),
    state: z
      .enum(["loading", "serving", "failed"])
      .describe(
        "`loading`: fetching or loading it (no jobs yet); `serving`: its runners take jobs; `failed`: it could not be loaded (a canary that fails to load counts as failing).",
      ),
    message: z.string().max(512).optional().describe("Why it failed, or what loading is doing, for people."),
  })
  .describe("A model version on this agent, and where it stands.");
export type VersionState = z.infer<typeof VersionState>;

const Versions = z
  .array(VersionState)
  .max(64)
  .describe(
    "The model versions on this agent and their states (the edge keeps the first 16). It is given jobs of the models it serves (state `serving`) that its token allows: pinned to a version it serves, routed to a canary it serves, or unpinned when it serves any other version of the model. An empty list means every model of its token, at any version. A lease with no pinned version names the version to run.",
  );

export const AgentHello = z
  .strictObject({
    v: V,
    type: z.literal("agent.hello"),
    trace: Trace,
    agent_id: AgentId.describe(
      "The agent's id: equal to the connection's `X-Floodgate-Agent` header (else close 4402). Keep it across restarts and reconnects.",
    ),
    name: z.string().min(1).max(128).describe("A name for people, e.g. the host name; admins see its first 64 chars."),
    gpus: z
      .array(GpuHealth)
      .max(64)
      .describe("The GPUs this agent runs on (admins see the first 8); empty on a machine without one."),
    versions: Versions,
    slots: z.number().int().min(1).max(256).describe("Jobs the agent runs at once."),
    prefetch: z
      .number()
      .int()
      .min(0)
      .max(64)
      .describe("Jobs it may hold staged beyond its slots, to hide the gap between jobs (the Node agent: 1)."),
    leases: z
      .array(LeaseRef)
      .max(512)
      .describe(
        "Leases the agent still runs, to resume after a reconnect; empty on a first start. Leases its id holds that are not listed, granted before this connection opened, go back to their queues at once (an attempt spent, reason `worker_lost`).",
      ),
    preemptible: z
      .boolean()
      .optional()
      .describe(
        "The machine may be taken back at short notice (GPUs lent by a training cluster, spot VMs): jobs closest to their SLO go to other agents first, and when it is reclaimed its jobs go back to their queues without spending attempts. Absent: false.",
      ),
  })
  .describe(
    "The first message on every connection, and only once: who the agent is, what it runs and which leases it still holds. Answered by `agent.welcome`. Anything before it, or a second hello, closes the connection with 4402.",
  );

/** The agent has room for `credits` more jobs (free slots plus prefetch). */
export const WorkRequest = z
  .strictObject({
    v: V,
    type: z.literal("work.request"),
    trace: Trace,
    credits: z
      .number()
      .int()
      .min(0)
      .max(320)
      .describe(
        "How many jobs the agent can take now: free slots + prefetch − leases it holds (running or staged). A total that replaces the previous request, not an increment.",
      ),
  })
  .describe(
    "Asks for work whenever the agent has room. Answered by `job.leases` at once for what is queued; what cannot be granted waits up to 15 s (renewed by each heartbeat with credits) and is pushed as jobs arrive. No answer when there is no work.",
  );

export const AgentHeartbeat = z
  .strictObject({
    v: V,
    type: z.literal("agent.heartbeat"),
    trace: Trace,
    leases: z
      .array(LeaseRef)
      .max(512)
      .describe(
        "Every lease the agent holds, running or staged. Each is renewed for `lease_ttl_ms`, except one whose attempt has run for the model's `run_timeout_s`; one not listed expires at its deadline.",
      ),
    gpus: z.array(GpuHealth).max(64).describe("The GPUs' health now (admins see the first 8)."),
    credits: z
      .number()
      .int()
      .min(0)
      .max(320)
      .describe(
        "As in `work.request`, a total: more than 0 also asks for work. 0 while draining or above the VRAM threshold.",
      ),
    draining: z
      .boolean()
      .describe("Required. True while the agent finishes its jobs and takes none new: no work is asked for it."),
    versions: Versions,
    slots: z
      .number()
      .int()
      .min(0)
      .max(256)
      .optional()
      .describe(
        "Jobs the agent runs at once now, when that is no longer what its hello said: an agent serving what `agent.desired` says gains slots as versions start serving and loses them as they stop. Absent: as the hello said.",
      ),
  })
  .describe(
    "Every `heartbeat_ms`: renews the agent's leases and reports its GPUs. Answered by `agent.heartbeat_ack`. A heartbeat after the token expired or was revoked closes the connection with 4401.",
  );

export const AgentJobProgress = z
  .strictObject({
    v: V,
    type: z.literal("job.progress"),
    trace: Trace,
    job_id: JobId,
    epoch: Epoch,
    phase: ProgressPhase,
    step: z.number().int().min(0).describe("Steps done in this phase, normally at most `total`."),
    total: z.number().int().min(1).describe("Steps in this phase."),
  })
  .describe(
    "A running job's progress, shown to its owner (event `progress`, `progress` of `GET /v1/jobs/{id}`). Renews nothing. No answer, or `lease.stale` when refused.",
  );

/** A preview frame (PNG or GIF bytes), sent as a {@link FRAME_KIND_PREVIEW} frame. */
export const AgentJobPreview = z
  .strictObject({
    v: V,
    type: z.literal("job.preview"),
    trace: Trace,
    job_id: JobId,
    epoch: Epoch,
    content_type: z
      .enum(["image/png", "image/gif", "image/jpeg", "image/webp"])
      .describe("The image format of `data`."),
    data: Bytes.describe("The image."),
  })
  .describe(
    "A small image of the job in progress, shown to its owner and not kept; in a preview frame (kind 0x02) only. No answer, or `lease.stale` when refused.",
  );

export const AgentJobLog = z
  .strictObject({
    v: V,
    type: z.literal("job.log"),
    trace: Trace,
    job_id: JobId,
    epoch: Epoch,
    level: z.enum(["debug", "info", "warn", "error"]).describe("Severity."),
    message: z.string().max(4096).describe("The line, for the job's owner."),
  })
  .describe(
    "A log line for the job's owner (event `log`; the newest 100 are kept while the job runs). No answer, or `lease.stale` when refused.",
  );

// MAX_OUTPUTS and an output's name live in shared/outputs.ts, which the SDK imports without
// the wire codec; re-exported here for the protocol's readers.
export { MAX_OUTPUTS };

/** An output already uploaded through the edge (`/v1/agent/uploads`), as the edge answered it. */
export const OutputRecord = z
  .strictObject({
    name: OutputName,
    key: z
      .string()
      .min(1)
      .max(512)
      .describe("Where it is stored, as the upload answered: `outputs/<job id>/<epoch>/<name>`."),
    content_type: z.string().min(1).max(128).describe("Its media type, as the upload was started with."),
    size: z.number().int().min(0).describe("Bytes."),
    sha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .describe("SHA-256 of the bytes: 64 lowercase hex chars."),
    receipt: z
      .string()
      .regex(/^[A-Za-z0-9_-]{43}$/)
      .describe(
        "The edge's HMAC over key, size, sha256 and content type (43 base64url chars), proving it stored and hashed these bytes itself: a success is refused for a record without a valid one. Send it back as the upload answered it.",
      ),
  })
  .describe("An output already uploaded through the edge: the record its upload's `complete` answered, as it is.");
export type OutputRecord = z.infer<typeof OutputRecord>;

/** Most results one `job.results` frame carries. */
export const MAX_RESULTS_PER_FRAME = 64;

/** Most milliseconds one attempt's runner may report executing: a week, past any run timeout. */
export const MAX_EXECUTING_MS = 7 * 24 * 3600 * 1000;

const ExecutingMs = z
  .number()
  .int()
  .min(0)
  .max(MAX_EXECUTING_MS)
  .optional()
  .describe(
    "Milliseconds the runner spent on the job, from handing it the job to its answer (not the wait before, the model's loading, nor the uploads after). Usage bills this, capped by what the edge saw from the grant to this result; absent, the edge's span counts.",
  );

const ResultGpus = z
  .number()
  .int()
  .min(0)
  .max(64)
  .optional()
  .describe(
    "GPUs the replica that ran the job holds (its version's `resources.gpus`; 0 on a CPU runner). Usage counts `executing_ms × max(1, gpus)`; absent counts as 1.",
  );

export const JobSucceeded = z
  .strictObject({
    job_id: JobId,
    epoch: Epoch,
    status: z.literal("succeeded"),
    executing_ms: ExecutingMs,
    gpus: ResultGpus,
    outputs: z
      .array(OutputRecord)
      .max(MAX_OUTPUTS)
      .describe("The job's outputs, uploaded first; what the model requires must be among them."),
  })
  .describe("The attempt succeeded.");

export const JobFailed = z
  .strictObject({
    job_id: JobId,
    epoch: Epoch,
    status: z.literal("failed"),
    executing_ms: ExecutingMs,
    gpus: ResultGpus,
    code: AgentFailure,
    message: z.string().max(4096).describe("For people."),
  })
  .describe(
    "The attempt failed. The edge decides from `code` whether another attempt may succeed (the failure reasons table): a retried job goes back to its queue, an attempt spent; otherwise, or past `max_attempts`, the job fails with `code` as its reason.",
  );

export const JobResult = z.discriminatedUnion("status", [JobSucceeded, JobFailed]);
export type JobResult = z.infer<typeof JobResult>;

export const AgentJobResults = z
  .strictObject({
    v: V,
    type: z.literal("job.results"),
    trace: Trace,
    results: z
      .array(JobResult)
      .min(1)
      .max(MAX_RESULTS_PER_FRAME)
      .describe("How attempts ended: every one that ended since the agent's last `job.results`."),
    credits: z
      .number()
      .int()
      .min(0)
      .max(320)
      .describe(
        "How many jobs the agent can take now, these results' slots freed: a total, as in `work.request`, which it replaces. More than 0 asks for work in the same message: the next leases come back at once.",
      ),
  })
  .describe(
    "How attempts ended, several at once, with the agent's room for more. No answer for a result accepted (its lease ends, the job's owner is told); `lease.stale` for one naming a lease the agent does not hold; `job.refused` for a success whose outputs are not what the edge stored for this lease or not what the model requires (the attempt ends as a failure). `job.leases` follow when credits > 0 and work is queued.",
  );

/** The agent gives leases back without spending their attempts (drain, shutdown). */
export const AgentJobRelease = z
  .strictObject({
    v: V,
    type: z.literal("job.release"),
    trace: Trace,
    leases: z
      .array(LeaseRef)
      .min(1)
      .max(512)
      .describe("The leases given back; those the agent does not hold are ignored."),
    reason: z
      .enum(["drained", "preempted"])
      .describe(
        "`drained`: the agent drains or shuts down; `preempted`: it was given more than it has room for, or its machine is taken away.",
      ),
  })
  .describe(
    "Gives leases back without spending their attempts: their jobs go back to their queues at once. No answer.",
  );

export const FromAgent = z.discriminatedUnion("type", [
  AgentHello,
  WorkRequest,
  AgentHeartbeat,
  AgentJobProgress,
  AgentJobPreview,
  AgentJobLog,
  AgentJobResults,
  AgentJobRelease,
]);
export type FromAgent = z.infer<typeof FromAgent>;

// ---- edge → agent ----

export const Welcome = z
  .strictObject({
    v: V,
    type: z.literal("agent.welcome"),
    trace: Trace,
    heartbeat_ms: z.number().int().min(100).describe("Send `agent.heartbeat` this often, ms."),
    lease_ttl_ms: z.number().int().min(1000).describe("A lease ends this long after its grant or last renewal, ms."),
    control_frame_cap: z.number().int().describe("Largest control frame, bytes, kind byte included."),
    preview_frame_cap: z.number().int().describe("Largest preview frame, bytes, kind byte included."),
    resumed: z
      .array(LeaseRef)
      .describe("Leases of the hello that are still the agent's, renewed now: keep running them."),
    stale: z
      .array(LeaseRef)
      .describe("Leases of the hello that are not: abandon them (stop their runners, send nothing more about them)."),
  })
  .describe("The answer to `agent.hello`: the session's settings, and which of the hello's leases are still held.");

export const LeaseGrant = z
  .strictObject({
    job_id: JobId,
    epoch: Epoch.describe("This lease's epoch: name it in every message about the job."),
    deadline: z
      .number()
      .int()
      .describe(
        "When the lease ends unless renewed: ms since the Unix epoch, an integer (msgpack int 64). A heartbeat listing the lease moves it to now + `lease_ttl_ms`.",
      ),
    attempt: z
      .number()
      .int()
      .min(1)
      .describe(
        "Which attempt this is: the attempts spent so far (those that count against the model's `max_attempts`) + 1, so never above `max_attempts`. A grant given back without spending one (drained, preempted, never delivered) does not raise it.",
      ),
    model: ModelName.describe("The model to run."),
    version: Version.nullable().describe(
      "The version to run: the job's pinned version, or the canary it was routed to; for an unpinned job the model's stable version when the agent serves it, else another version it serves that is not the canary (it is switching over); nil when the agent named no versions (run the version the runner serves).",
    ),
    input: z
      .record(z.string(), z.unknown())
      .describe(
        "The job's input, checked by the edge against the model's JSON Schema: a map nested at most 16 levels, without `__proto__`, `constructor` or `prototype` keys.",
      ),
    files: InputFiles.optional().describe(
      "Present only when the input names input files: by input field, each file's id, media type, size and SHA-256. Before running, download each from `GET /v1/agent/inputs/{job_id}/{epoch}/{field}`, check its size and SHA-256, and hand the runner a local path in that field in place of the file id (Input files, below); a download that fails or does not match fails the attempt `input_unavailable`.",
    ),
  })
  .describe("A job handed to the agent.");
export type LeaseGrant = z.infer<typeof LeaseGrant>;

/** Most leases one `job.leases` frame carries. */
const MAX_LEASES_PER_FRAME = 320;

export const JobLeases = z
  .strictObject({
    v: V,
    type: z.literal("job.leases"),
    trace: Trace,
    leases: z.array(LeaseGrant).max(MAX_LEASES_PER_FRAME).describe("The leases granted."),
  })
  .describe(
    "Jobs for the agent: the answer to a request for work, or pushed while a request waits. More than it has room for: give the extra back at once with `job.release` (`preempted`). A lease it cannot decode on its own (its input breaks the decoder's rules) costs only its job: answer it with a failed result `invalid_input` and run the others.",
  );

/** The edge's answer to a heartbeat: leases that are no longer the agent's. */
export const HeartbeatAck = z
  .strictObject({
    v: V,
    type: z.literal("agent.heartbeat_ack"),
    trace: Trace,
    stale: z
      .array(LeaseRef)
      .describe(
        "Leases of the heartbeat that are no longer the agent's (requeued, cancelled, timed out or leased to another): abandon them. Every other lease it listed was renewed.",
      ),
  })
  .describe("The answer to `agent.heartbeat`.");

/** Something the agent sent about a lease it no longer holds; it must abandon the job. */
export const LeaseStale = z
  .strictObject({
    v: V,
    type: z.literal("lease.stale"),
    trace: Trace,
    job_id: JobId,
    epoch: z.number().int().describe("The epoch the refused message named."),
  })
  .describe(
    "A progress, preview, log or result named a lease the agent does not hold (or one the edge ended: expired, given to another, cancelled): it changed nothing. Abandon the job and send nothing more about it.",
  );

export const EdgeJobCancel = z
  .strictObject({
    v: V,
    type: z.literal("job.cancel"),
    trace: Trace,
    job_id: JobId,
    epoch: Epoch,
  })
  .describe(
    "The job's owner cancelled it; its lease has ended. Stop its runner at the next step and send nothing more about it.",
  );

export const JobRefused = z
  .strictObject({
    v: V,
    type: z.literal("job.refused"),
    trace: Trace,
    job_id: JobId,
    epoch: Epoch,
    code: z.enum(["invalid_output"]).describe("Why: `invalid_output`, the only code so far."),
    message: z.string().max(4096).describe("What was wrong with the outputs, for people."),
  })
  .describe(
    "The edge refused a success in `job.results`: its outputs were not what the edge verified for this lease, or not what the model requires. The attempt ended as a failure (`invalid_output`, retried by the usual rules); abandon the job.",
  );

export const AgentDrain = z
  .strictObject({
    v: V,
    type: z.literal("agent.drain"),
    trace: Trace,
    reason: z.string().max(256).describe("Why, for people."),
  })
  .describe(
    "Finish the running jobs and take none new: give the staged ones back (`job.release` `drained`) and send `draining: true` from now on.",
  );

const DesiredVersion = z.strictObject({
  version: Version,
  digest: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .describe("The version's digest: fetch its record at `GET /v1/agent/versions/{model}/{version}` and check it."),
});

export const AgentDesired = z
  .strictObject({
    v: V,
    type: z.literal("agent.desired"),
    trace: Trace,
    models: z
      .array(
        z
          .strictObject({
            model: ModelName,
            stable: DesiredVersion.describe("The version the model's unpinned jobs run on."),
            canary: DesiredVersion.extend({
              percent: z.number().min(0).max(100).describe("Share of unpinned jobs routed to it."),
            })
              .optional()
              .describe("During a canary: the version that takes its share of the jobs."),
          })
          .describe("What the rollout says for one model the token allows."),
      )
      .max(64)
      .describe(
        "Every model of the agent's token that has a rollout; a model not listed has none (agents started with a fixed runner serve it).",
      ),
    purged: z
      .array(
        z.strictObject({ model: ModelName, version: Version }).describe("A version an admin purged from the fleet."),
      )
      .max(256)
      .optional()
      .describe(
        "Versions of the token's models an admin purged, none of them desired now (the latest 256): delete each from the agent's cache — its files, its record and the pieces no other cached version uses — once nothing on the host serves it. Absent: none.",
      ),
  })
  .describe(
    "What the agent should serve, sent after `agent.welcome` and whenever a rollout or a revert changes it. Load the versions (stable first; the canary beside it where resources allow), keep serving what runs until a new version serves, then drop versions no longer desired once their jobs ended. Report each in `versions` of the next heartbeat.",
  );

export const ToAgent = z.discriminatedUnion("type", [
  Welcome,
  AgentDesired,
  JobLeases,
  HeartbeatAck,
  LeaseStale,
  EdgeJobCancel,
  JobRefused,
  AgentDrain,
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

/**
 * Packs leases into as few `job.leases` frames as fit under {@link CONTROL_FRAME_CAP} (and
 * {@link MAX_LEASES_PER_FRAME}), in order. A lease too large for a frame of its own comes back
 * in `oversized`: it cannot be delivered to any agent, and must not take the others with it.
 */
export function leaseFrames(
  trace: string,
  leases: readonly LeaseGrant[],
): { frames: Uint8Array[]; oversized: LeaseGrant[] } {
  const frame = (batch: LeaseGrant[]): Uint8Array =>
    encodeFrame({ v: AGENT_PROTOCOL_VERSION, type: "job.leases", trace, leases: batch });
  // The empty frame's bytes, plus room for the array header to grow to its widest (5 bytes).
  const budget = CONTROL_FRAME_CAP - frame([]).length - 5;
  const frames: Uint8Array[] = [];
  const oversized: LeaseGrant[] = [];
  let batch: LeaseGrant[] = [];
  let used = 0;
  for (const lease of leases) {
    const size = encode(lease).length;
    if (size > budget) {
      oversized.push(lease);
      continue;
    }
    if (batch.length > 0 && (used + size > budget || batch.length >= MAX_LEASES_PER_FRAME)) {
      frames.push(frame(batch));
      batch = [];
      used = 0;
    }
    batch.push(lease);
    used += size;
  }
  if (batch.length > 0) frames.push(frame(batch));
  return { frames, oversized };
}

/** An agent frame read: its message, or the close code and reason to close the socket with. */
export type FrameResult<T> = Decoded<T, { close: number; reason: string }>;

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
