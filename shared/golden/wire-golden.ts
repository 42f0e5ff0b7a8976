/**
 * The agent protocol's golden files, built from the schemas in shared/wire.ts: example frames
 * of every message type with their exact bytes (`wire-vectors.json`), frames a reader must
 * refuse with the close code it must use, and the JSON Schema of both directions
 * (`wire.schema.json`). An agent written in another language tests its codec against them
 * (docs/protocol.md, "Agent protocol"); shared/golden.test.ts checks them in Node (the agent's
 * runtime) and test/workers/golden.test.ts in workerd (the actors'). `test/gen-golden.ts`
 * writes the files; shared/golden.test.ts fails when they are not what this module builds now.
 */
import { CodecError, MAX_DEPTH, decode, encode } from "../codec.ts";
import {
  AGENT_PROTOCOL_VERSION,
  AGENT_SUBPROTOCOL,
  CLOSE,
  CONTROL_FRAME_CAP,
  FRAME_KIND_CONTROL,
  FRAME_KIND_PREVIEW,
  FromAgent,
  type GpuHealth,
  PREVIEW_FRAME_CAP,
  ToAgent,
  decodeFrame,
  encodeFrame,
} from "../wire.ts";
import { type Json, directionSchema, fromHex, toHex, toJson } from "./runner-golden.ts";

/** `to_edge`: agent → edge (FromAgent); `to_agent`: edge → agent (ToAgent). */
export type WireDirection = "to_edge" | "to_agent";

/** A message, its whole frame (kind byte + msgpack) and its value. */
export interface WireVector {
  name: string;
  direction: WireDirection;
  type: string;
  frame: string;
  value: Json;
}

/**
 * Where a reader refuses a bad frame: `kind` = unknown kind byte; `cap` = over its kind's cap,
 * before decoding; `decode` = not one plain msgpack value; `schema` = plain, but fails
 * wire.schema.json; `frame_kind` = a valid message in the other kind of frame.
 */
export type WireRejectAt = "kind" | "cap" | "decode" | "schema" | "frame_kind";

/** A frame a reader must refuse, the close code it must close with, and where it refuses it. */
export interface InvalidWireVector {
  name: string;
  direction: WireDirection;
  /** The whole frame in hex; when `length` is set, only its start (see `fill`). */
  frame: string;
  /** Total length (bytes) of a frame too big to write out: `frame`, then `fill` bytes up to it. */
  length?: number;
  /** The byte (0–255) that pads `frame` to `length`. */
  fill?: number;
  close: number;
  reject_at: WireRejectAt;
  /** What shared/wire.ts's decodeFrame says; informative, other readers need not match it. */
  reason: string;
  /** For `schema` and `frame_kind`: the plain value the codec decoded before it was refused. */
  decoded?: Json;
  why: string;
}

export interface WireVectorsFile {
  protocol_version: number;
  subprotocol: string;
  frame_kinds: { control: number; preview: number };
  caps: { control: number; preview: number };
  max_depth: number;
  notes: string[];
  vectors: WireVector[];
  invalid: InvalidWireVector[];
}

/** The schema a reader on the receiving end of `direction` parses with. */
export function wireSchemaOf(direction: WireDirection): typeof FromAgent | typeof ToAgent {
  return direction === "to_edge" ? FromAgent : ToAgent;
}

/** The bytes of an invalid vector's frame, padded out to `length` where it has one. */
export function invalidFrameBytes(vector: Pick<InvalidWireVector, "frame" | "length" | "fill">): Uint8Array {
  const start = fromHex(vector.frame);
  if (vector.length === undefined) return start;
  const out = new Uint8Array(vector.length).fill(vector.fill ?? 0);
  out.set(start);
  return out;
}

/**
 * Where a reader refuses `frame`, found step by step (kind, cap, decode, schema, kind again)
 * without decodeFrame, so the tests check decodeFrame against an independent reading.
 */
export function wireRejectAt(frame: Uint8Array, direction: WireDirection): WireRejectAt | "accepted" {
  const kind = frame[0];
  if (kind !== FRAME_KIND_CONTROL && kind !== FRAME_KIND_PREVIEW) return "kind";
  if (frame.length > (kind === FRAME_KIND_CONTROL ? CONTROL_FRAME_CAP : PREVIEW_FRAME_CAP)) return "cap";
  let value: unknown;
  try {
    value = decode(frame.subarray(1));
  } catch (err) {
    if (err instanceof CodecError) return "decode";
    throw err;
  }
  const parsed = wireSchemaOf(direction).safeParse(value);
  if (!parsed.success) return "schema";
  return (parsed.data.type === "job.preview") === (kind === FRAME_KIND_PREVIEW) ? "accepted" : "frame_kind";
}

const v = AGENT_PROTOCOL_VERSION;
const AGENT = "agt_7k2m9x4q1w8e5r3t";
// Real job ids (shared/ids.ts): 10 chars of ms, 16 random, 3 of model number, 1 of shard.
const JOB_A = "job_01kany0bvrss4k7rtf2mn4e53g0030";
const JOB_B = "job_01kany0dhx70er857n5t1zfcnt0045";
const JOB_C = "job_01kany0f82fy4hp0vb2pj0tsd2003a";
const JOB_D = "job_01kany0gy7m7t0t7b88nraeqqc004f";
// Agents trace with 16 hex chars, the edge with UUIDs.
const AGENT_TRACE = "1940f59314f2e88d";
const AGENT_TRACE_2 = "2415505a51afb6bf";
const EDGE_TRACE = "be44c6d5-e8c6-43da-a048-93676aa10d89";
const EDGE_TRACE_2 = "8466f0ab-5886-429e-8519-1c4cf9104545";
/** A real 2×2 RGBA PNG (84 bytes): orange, amber, blue, white. */
const PREVIEW_PNG = fromHex(
  "89504e470d0a1a0a0000000d494844520000000200000002080600000072b60d240000001b49444154785e63f81fc0f0ffff1686ff0c1a1a27fefffaf5eb3f0059180b05ec620c530000000049454e44ae426082",
);
/** An H100's health, keys in schema order (the vectors' bytes follow it). */
function h100(util_pct: number, vram_used_mb: number, temp_c: number, index = 0): GpuHealth {
  return { index, name: "NVIDIA H100 80GB HBM3", util_pct, vram_used_mb, vram_total_mb: 81_559, temp_c };
}

type Example =
  | { name: string; direction: "to_edge"; message: FromAgent }
  | { name: string; direction: "to_agent"; message: ToAgent };

/** Example messages: every type in both directions, some twice to cover optional parts. */
function examples(): Example[] {
  return [
    {
      name: "agent.hello on first start",
      direction: "to_edge",
      message: {
        v,
        type: "agent.hello",
        trace: AGENT_TRACE,
        agent_id: AGENT,
        name: "gpu-node-17",
        gpus: [h100(0, 1024, 34)],
        versions: [{ model: "sdxl-turbo", version: "2024-11-02.1", state: "serving" }],
        slots: 2,
        prefetch: 1,
        leases: [],
      },
    },
    {
      name: "agent.hello of a preemptible agent",
      direction: "to_edge",
      message: {
        v,
        type: "agent.hello",
        trace: AGENT_TRACE,
        agent_id: AGENT,
        name: "train-node-4",
        gpus: [h100(0, 1024, 34)],
        versions: [],
        slots: 1,
        prefetch: 1,
        leases: [],
        preemptible: true,
      },
    },
    {
      name: "agent.hello after a reconnect, still running two leases",
      direction: "to_edge",
      message: {
        v,
        type: "agent.hello",
        trace: AGENT_TRACE_2,
        agent_id: AGENT,
        name: "gpu-node-17",
        gpus: [{ index: 0, name: "NVIDIA L4" }, { index: 1 }],
        versions: [
          { model: "sdxl-turbo", version: "2024-11-02.1", state: "serving" },
          { model: "demo", version: "0.1.0", state: "serving" },
          { model: "demo", version: "0.2.0", state: "loading", message: "fetching 12 of 40 pieces" },
        ],
        slots: 4,
        prefetch: 0,
        leases: [
          { job_id: JOB_A, epoch: 1 },
          { job_id: JOB_B, epoch: 3 },
        ],
      },
    },
    {
      name: "work.request",
      direction: "to_edge",
      message: { v, type: "work.request", trace: AGENT_TRACE, credits: 3 },
    },
    {
      name: "agent.heartbeat",
      direction: "to_edge",
      message: {
        v,
        type: "agent.heartbeat",
        trace: AGENT_TRACE,
        leases: [
          { job_id: JOB_A, epoch: 1 },
          { job_id: JOB_B, epoch: 3 },
        ],
        gpus: [h100(97.5, 40_213, 71.25)],
        credits: 1,
        draining: false,
        versions: [
          { model: "sdxl-turbo", version: "2024-11-02.1", state: "serving" },
          {
            model: "sdxl-turbo",
            version: "2024-12-01.1",
            state: "failed",
            message: "CUDA out of memory while loading",
          },
        ],
      },
    },
    {
      name: "agent.heartbeat while draining",
      direction: "to_edge",
      message: {
        v,
        type: "agent.heartbeat",
        trace: AGENT_TRACE_2,
        leases: [],
        gpus: [],
        credits: 0,
        draining: true,
        versions: [],
      },
    },
    {
      name: "job.progress",
      direction: "to_edge",
      message: {
        v,
        type: "job.progress",
        trace: AGENT_TRACE,
        job_id: JOB_A,
        epoch: 1,
        phase: "sampling",
        step: 7,
        total: 20,
      },
    },
    {
      name: "job.preview (a preview frame)",
      direction: "to_edge",
      message: {
        v,
        type: "job.preview",
        trace: AGENT_TRACE,
        job_id: JOB_A,
        epoch: 1,
        content_type: "image/png",
        data: PREVIEW_PNG,
      },
    },
    {
      name: "job.log",
      direction: "to_edge",
      message: {
        v,
        type: "job.log",
        trace: AGENT_TRACE,
        job_id: JOB_A,
        epoch: 1,
        level: "warn",
        message: "guidance clamped to 20 — « été » 雪",
      },
    },
    {
      name: "job.results, one success with the next request for work",
      direction: "to_edge",
      message: {
        v,
        type: "job.results",
        trace: AGENT_TRACE,
        results: [
          {
            job_id: JOB_A,
            epoch: 1,
            status: "succeeded",
            executing_ms: 2_481,
            gpus: 1,
            outputs: [
              {
                name: "image.png",
                key: `outputs/${JOB_A}/1/image.png`,
                content_type: "image/png",
                size: 1_843_201,
                sha256: "4ee84a82b5e4c9e6651b13fd27dcf615e427ec584929f2cef7167aa99151a77a",
                receipt: "DZGQVZPLIHaajVc-YtVWt7ULmYjPbs1uT6YQB5Nga-Q",
              },
              {
                name: "params.json",
                key: `outputs/${JOB_A}/1/params.json`,
                content_type: "application/json",
                size: 87,
                sha256: "7b631c57f5c161b0ea90ebe5f15e18c7716aa742b6b0e241487d458efeb60904",
                receipt: "0QFtbOWk9e3WoSFAYFUNlvJ8FCfQqaT7QZ4fpnjQDBg",
              },
            ],
          },
        ],
        credits: 2,
      },
    },
    {
      name: "job.results, two failures at once and no room",
      direction: "to_edge",
      message: {
        v,
        type: "job.results",
        trace: AGENT_TRACE_2,
        results: [
          {
            job_id: JOB_B,
            epoch: 3,
            status: "failed",
            executing_ms: 913,
            gpus: 2,
            code: "oom",
            message: "CUDA out of memory. Tried to allocate 2.50 GiB",
          },
          { job_id: JOB_C, epoch: 1, status: "failed", code: "cancelled", message: "cancelled" },
        ],
        credits: 0,
      },
    },
    {
      name: "job.release",
      direction: "to_edge",
      message: {
        v,
        type: "job.release",
        trace: AGENT_TRACE,
        leases: [
          { job_id: JOB_C, epoch: 1 },
          { job_id: JOB_D, epoch: 2 },
        ],
        reason: "drained",
      },
    },
    {
      name: "agent.welcome",
      direction: "to_agent",
      message: {
        v,
        type: "agent.welcome",
        trace: AGENT_TRACE_2,
        heartbeat_ms: 5000,
        lease_ttl_ms: 30_000,
        control_frame_cap: CONTROL_FRAME_CAP,
        preview_frame_cap: PREVIEW_FRAME_CAP,
        resumed: [{ job_id: JOB_A, epoch: 1 }],
        stale: [{ job_id: JOB_B, epoch: 3 }],
      },
    },
    {
      name: "job.leases",
      direction: "to_agent",
      message: {
        v,
        type: "job.leases",
        trace: EDGE_TRACE,
        leases: [
          {
            job_id: JOB_C,
            epoch: 1,
            deadline: 1_763_820_217_512,
            attempt: 1,
            model: "sdxl-turbo",
            version: "2024-11-02.1",
            input: { prompt: "a red fox in the snow", seed: 42, steps: 4 },
          },
        ],
      },
    },
    {
      name: "job.leases whose input names an input file",
      direction: "to_agent",
      message: {
        v,
        type: "job.leases",
        trace: EDGE_TRACE,
        leases: [
          {
            job_id: JOB_B,
            epoch: 1,
            deadline: 1_763_820_217_512,
            attempt: 1,
            model: "demo",
            version: "1",
            input: { prompt: "make it snow", video: "file_0123456789abcdef" },
            files: {
              video: {
                id: "file_0123456789abcdef",
                content_type: "video/mp4",
                size: 1_048_576,
                sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
              },
            },
          },
        ],
      },
    },
    {
      name: "job.leases with every kind of input value",
      direction: "to_agent",
      message: {
        v,
        type: "job.leases",
        trace: EDGE_TRACE_2,
        leases: [
          {
            job_id: JOB_D,
            epoch: 2,
            deadline: 1_763_820_247_000,
            attempt: 2,
            model: "demo",
            version: null,
            input: {
              prompt: "été — 雪の狐 🦊",
              negative: -1,
              small_negative: -200,
              big: 2 ** 40,
              guidance: 7.5,
              tiny: 1e-7,
              tiled: false,
              mask: null,
              sizes: [512, 768],
              lora: { name: "ink", weight: 0.8 },
              init_image: PREVIEW_PNG,
              long_text: "x".repeat(40),
            },
          },
          {
            job_id: JOB_A,
            epoch: 4,
            deadline: 1_763_820_247_000,
            attempt: 1,
            model: "demo",
            version: "0.1.0",
            input: {},
          },
        ],
      },
    },
    {
      name: "agent.heartbeat_ack",
      direction: "to_agent",
      message: { v, type: "agent.heartbeat_ack", trace: AGENT_TRACE, stale: [] },
    },
    {
      name: "agent.heartbeat_ack naming a stale lease",
      direction: "to_agent",
      message: { v, type: "agent.heartbeat_ack", trace: AGENT_TRACE_2, stale: [{ job_id: JOB_B, epoch: 3 }] },
    },
    {
      name: "lease.stale",
      direction: "to_agent",
      message: { v, type: "lease.stale", trace: AGENT_TRACE, job_id: JOB_B, epoch: 3 },
    },
    {
      name: "job.cancel",
      direction: "to_agent",
      message: { v, type: "job.cancel", trace: EDGE_TRACE, job_id: JOB_C, epoch: 1 },
    },
    {
      name: "job.refused",
      direction: "to_agent",
      message: {
        v,
        type: "job.refused",
        trace: AGENT_TRACE,
        job_id: JOB_A,
        epoch: 1,
        code: "invalid_output",
        message: "required outputs missing: last.png",
      },
    },
    {
      name: "agent.drain",
      direction: "to_agent",
      message: { v, type: "agent.drain", trace: EDGE_TRACE, reason: "pool gpu-eu is being drained for a deploy" },
    },
    {
      name: "agent.desired during a canary",
      direction: "to_agent",
      message: {
        v,
        type: "agent.desired",
        trace: EDGE_TRACE,
        models: [
          {
            model: "sdxl-turbo",
            stable: { version: "2024-11-02.1", digest: "3".repeat(64) },
            canary: { version: "2024-12-01.1", digest: "9".repeat(64), percent: 10 },
          },
          { model: "demo", stable: { version: "0.2.0", digest: "a".repeat(64) } },
        ],
      },
    },
    {
      name: "agent.desired with a purged version",
      direction: "to_agent",
      message: {
        v,
        type: "agent.desired",
        trace: EDGE_TRACE,
        models: [{ model: "demo", stable: { version: "0.2.0", digest: "a".repeat(64) } }],
        purged: [{ model: "demo", version: "0.1.0" }],
      },
    },
  ];
}

/** Replaces the one occurrence of `find` in `bytes` with `replace`. */
function splice(bytes: Uint8Array, find: Uint8Array, replace: Uint8Array): Uint8Array {
  const at = toHex(bytes).indexOf(toHex(find));
  // An odd hex offset would straddle two bytes: a bug of this module.
  if (at < 0 || at % 2 !== 0) throw new Error(`splice target ${toHex(find)} not found`);
  const i = at / 2;
  return new Uint8Array([...bytes.subarray(0, i), ...replace, ...bytes.subarray(i + find.length)]);
}

/** msgpack of a short string (fixstr, under 32 bytes). */
function fixstr(s: string): Uint8Array {
  const utf8 = new TextEncoder().encode(s);
  if (utf8.length >= 32) throw new Error("not a fixstr");
  return new Uint8Array([0xa0 | utf8.length, ...utf8]);
}

/** A hand-declared invalid vector, before decodeFrame's reason and the decoded value are added. */
interface InvalidSpec {
  name: string;
  direction: WireDirection;
  bytes: Uint8Array;
  /** Set for frames too big to write out: the last `count` bytes, all `fill`, are left out of hex. */
  pad?: { fill: number; count: number };
  reject_at: WireRejectAt;
  why: string;
}

/**
 * A frame exactly `length` bytes long of the message `filler(n)`, whose last field's value is
 * `n` equal bytes; `count` is that `n`, the bytes left out of the vector's hex.
 */
function sized(length: number, filler: (n: number) => FromAgent): { bytes: Uint8Array; count: number } {
  // A trial at nearly the final size has the same header widths (str 16, bin 32) as the real one.
  const overhead = encodeFrame(filler(length - 64)).length - (length - 64);
  const count = length - overhead;
  const bytes = encodeFrame(filler(count));
  if (bytes.length !== length) throw new Error(`sized frame is ${bytes.length} bytes, not ${length}`);
  return { bytes, count };
}

/** A control frame of anything, valid message or not. */
function control(message: unknown): Uint8Array {
  return new Uint8Array([FRAME_KIND_CONTROL, ...encode(message)]);
}

/** Frames a reader must refuse. Built by hand where encoders would not produce them. */
function invalidSpecs(): InvalidSpec[] {
  const progress = {
    v,
    type: "job.progress",
    trace: AGENT_TRACE,
    job_id: JOB_A,
    epoch: 1,
    phase: "sampling",
    step: 7,
    total: 20,
  } as const;
  const work = encodeFrame({ v, type: "work.request", trace: AGENT_TRACE, credits: 3 });
  const preview = encodeFrame({
    v,
    type: "job.preview",
    trace: AGENT_TRACE,
    job_id: JOB_A,
    epoch: 1,
    content_type: "image/png",
    data: PREVIEW_PNG,
  });
  const overControl = sized(CONTROL_FRAME_CAP + 1, (n) => ({
    v,
    type: "job.log",
    trace: AGENT_TRACE,
    job_id: JOB_A,
    epoch: 1,
    level: "debug",
    message: "a".repeat(n),
  }));
  const overPreview = sized(PREVIEW_FRAME_CAP + 1, (n) => ({
    v,
    type: "job.preview",
    trace: AGENT_TRACE,
    job_id: JOB_A,
    epoch: 1,
    content_type: "image/png",
    data: new Uint8Array(n),
  }));
  const lease = {
    job_id: JOB_C,
    epoch: 1,
    deadline: 1_763_820_217_512,
    attempt: 1,
    model: "sdxl-turbo",
    version: "2024-11-02.1",
  };
  // A timestamp (ext type -1, timestamp 32: 4 bytes of seconds) where the deadline's int goes.
  const withTimestamp = splice(
    control({ v, type: "job.leases", trace: EDGE_TRACE, leases: [{ ...lease, deadline: "@deadline@", input: {} }] }),
    fixstr("@deadline@"),
    new Uint8Array([0xd6, 0xff, 0x69, 0x21, 0xc2, 0xb9]),
  );
  let deep: unknown = "fox";
  for (let i = 0; i < 40; i++) deep = { a: deep };
  // Same length as "__proto__", so only the key's bytes change.
  const withProto = splice(
    control({ v, type: "work.request", trace: AGENT_TRACE, credits: 3, "@@proto@@": { admin: true } }),
    fixstr("@@proto@@"),
    fixstr("__proto__"),
  );
  const hello = encodeFrame(examples()[0]!.message);
  // agent.heartbeat whose `leases` claims 2^32 − 1 elements (array 32), and the frame ends there.
  const heartbeatStart = control({ v, type: "agent.heartbeat", trace: AGENT_TRACE, leases: "@leases@" });
  const hugeArray = splice(heartbeatStart, fixstr("@leases@"), new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff]));
  return [
    {
      name: "unknown kind byte",
      direction: "to_edge",
      bytes: new Uint8Array([0x03, ...work.subarray(1)]),
      reject_at: "kind",
      why: "byte 0 must be 0x01 (control) or 0x02 (preview); the rest is not read",
    },
    {
      name: "empty frame",
      direction: "to_agent",
      bytes: new Uint8Array(0),
      reject_at: "kind",
      why: "a frame has at least a kind byte",
    },
    {
      name: "control frame over its cap",
      direction: "to_edge",
      bytes: overControl.bytes,
      pad: { fill: 0x61, count: overControl.count },
      reject_at: "cap",
      why: `a control frame is at most ${CONTROL_FRAME_CAP} bytes, kind byte included; this one (a job.log whose message is "a" repeated) is one more, refused before decoding`,
    },
    {
      name: "preview frame over its cap",
      direction: "to_edge",
      bytes: overPreview.bytes,
      pad: { fill: 0x00, count: overPreview.count },
      reject_at: "cap",
      why: `a preview frame is at most ${PREVIEW_FRAME_CAP} bytes, kind byte included; this job.preview is one more`,
    },
    {
      name: "job.preview in a control frame",
      direction: "to_edge",
      bytes: new Uint8Array([FRAME_KIND_CONTROL, ...preview.subarray(1)]),
      reject_at: "frame_kind",
      why: "job.preview travels in preview frames only, even when it would fit a control frame",
    },
    {
      name: "control message in a preview frame",
      direction: "to_edge",
      bytes: new Uint8Array([FRAME_KIND_PREVIEW, ...encode(progress)]),
      reject_at: "frame_kind",
      why: "preview frames carry job.preview only: the bigger cap is not for other messages",
    },
    {
      name: "kind byte alone",
      direction: "to_edge",
      bytes: new Uint8Array([FRAME_KIND_CONTROL]),
      reject_at: "decode",
      why: "a frame holds exactly one msgpack value after the kind byte",
    },
    {
      name: "timestamp extension",
      direction: "to_agent",
      bytes: withTimestamp,
      reject_at: "decode",
      why: "msgpack extension types are not plain data: this is a timestamp (ext -1) where job.leases has its deadline; msgpackr decodes it to a Date even with moreTypes off, and shared/codec.ts refuses the Date",
    },
    {
      name: "unknown extension type",
      direction: "to_edge",
      bytes: splice(control({ ...progress, step: "@step@" }), fixstr("@step@"), new Uint8Array([0xd4, 0x05, 0x00])),
      reject_at: "decode",
      why: "msgpack extension types are not plain data (fixext 1 of type 5; msgpackr throws on extensions it does not know)",
    },
    {
      name: "map nested 40 deep",
      direction: "to_agent",
      bytes: control({ v, type: "job.leases", trace: EDGE_TRACE, leases: [{ ...lease, input: deep }] }),
      reject_at: "decode",
      why: `values nest at most ${MAX_DEPTH} deep (the top map is depth 0); this lease's input holds 40 nested maps`,
    },
    {
      name: "a control frame of nested array headers",
      direction: "to_edge",
      bytes: new Uint8Array(CONTROL_FRAME_CAP).fill(0x91).fill(FRAME_KIND_CONTROL, 0, 1),
      pad: { fill: 0x91, count: CONTROL_FRAME_CAP - 1 },
      reject_at: "decode",
      why: "65,535 fixarray-of-one headers in a frame of exactly the cap: msgpackr recurses once per level and runs out of stack long before the depth check sees the value; the RangeError is refused like any other malformed msgpack",
    },
    {
      name: "__proto__ key",
      direction: "to_edge",
      bytes: withProto,
      reject_at: "schema",
      why: 'msgpackr renames a __proto__ map key to "__proto_" while decoding (so nothing reaches a prototype), which shared/codec.ts lets through as an ordinary key; the strict schema then refuses it as an unknown field. Inside a free-form value (job.leases input) it would arrive as "__proto_"',
    },
    {
      name: "constructor key",
      direction: "to_agent",
      bytes: control({ v, type: "job.leases", trace: EDGE_TRACE, leases: [{ ...lease, input: { constructor: 1 } }] }),
      reject_at: "decode",
      why: "the keys __proto__, constructor and prototype are refused at any depth by shared/codec.ts",
    },
    {
      name: "not a finite number",
      direction: "to_edge",
      bytes: splice(
        control({ ...progress, step: "@step@" }),
        fixstr("@step@"),
        new Uint8Array([0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]),
      ),
      reject_at: "decode",
      why: "NaN and ±Infinity (float 64) are not plain data",
    },
    {
      name: "trailing bytes after the map",
      direction: "to_edge",
      bytes: new Uint8Array([...work, 0xc0]),
      reject_at: "decode",
      why: "a frame holds exactly one msgpack value: a nil after the map is refused",
    },
    {
      name: "truncated msgpack",
      direction: "to_edge",
      bytes: hello.subarray(0, 40),
      reject_at: "decode",
      why: "an agent.hello cut off after 40 bytes: the map promises more than the frame holds",
    },
    {
      name: "array with a 4 GiB length header",
      direction: "to_edge",
      bytes: hugeArray,
      reject_at: "decode",
      why: "an agent.heartbeat whose leases header (array 32) claims 4,294,967,295 elements and the frame ends there; msgpackr compares the count with the bytes left before allocating, so this fails at once",
    },
    {
      name: "unknown type",
      direction: "to_edge",
      bytes: control({ v, type: "job.teleport", trace: AGENT_TRACE, job_id: JOB_A, epoch: 1 }),
      reject_at: "schema",
      why: "type must be one of the direction's message types",
    },
    {
      name: "message of the other direction",
      direction: "to_edge",
      bytes: encodeFrame({ v, type: "job.cancel", trace: AGENT_TRACE, job_id: JOB_C, epoch: 1 }),
      reject_at: "schema",
      why: "job.cancel is edge → agent only",
    },
    {
      name: "missing field",
      direction: "to_edge",
      bytes: control({
        v,
        type: "job.progress",
        trace: AGENT_TRACE,
        job_id: JOB_A,
        epoch: 1,
        phase: "sampling",
        step: 7,
      }),
      reject_at: "schema",
      why: "job.progress needs total",
    },
    {
      name: "extra field",
      direction: "to_agent",
      bytes: control({ v, type: "job.cancel", trace: EDGE_TRACE, job_id: JOB_C, epoch: 1, force: true }),
      reject_at: "schema",
      why: "objects are strict: unknown fields are refused, at the top and inside (lease refs, GPUs, outputs)",
    },
    {
      name: "an older protocol version",
      direction: "to_edge",
      bytes: control({ v: 1, type: "work.request", trace: AGENT_TRACE, credits: 3 }),
      reject_at: "schema",
      why: `v must be ${AGENT_PROTOCOL_VERSION}`,
    },
    {
      name: "malformed job id",
      direction: "to_agent",
      bytes: control({
        v,
        type: "lease.stale",
        trace: EDGE_TRACE,
        job_id: "job_01KANY0DHX70ER857N5T1ZFCNT0045",
        epoch: 3,
      }),
      reject_at: "schema",
      why: "job ids are job_ and 30 of lowercase 0-9a-z",
    },
  ];
}

function invalidExamples(): InvalidWireVector[] {
  return invalidSpecs().map((spec) => {
    const result = decodeFrame(spec.bytes, wireSchemaOf(spec.direction));
    // A vector that decodes is a bug of this module: refuse to build the files.
    if (result.ok) throw new Error(`invalid vector "${spec.name}" is accepted`);
    let frame = spec.bytes;
    let padding: Pick<InvalidWireVector, "length" | "fill"> = {};
    if (spec.pad) {
      const { fill, count } = spec.pad;
      const end = frame.length - count;
      if (frame.subarray(end).some((b) => b !== fill)) throw new Error(`"${spec.name}" does not end in its fill`);
      padding = { length: frame.length, fill };
      frame = frame.subarray(0, end);
    }
    const decoded =
      spec.reject_at === "schema" || spec.reject_at === "frame_kind"
        ? { decoded: toJson(decode(spec.bytes.subarray(1))) }
        : {};
    return {
      name: spec.name,
      direction: spec.direction,
      frame: toHex(frame),
      ...padding,
      close: CLOSE.malformed,
      reject_at: spec.reject_at,
      reason: result.reason,
      ...decoded,
      why: spec.why,
    };
  });
}

/** The vectors file's content. */
export function wireVectors(): WireVectorsFile {
  return {
    protocol_version: AGENT_PROTOCOL_VERSION,
    subprotocol: AGENT_SUBPROTOCOL,
    frame_kinds: { control: FRAME_KIND_CONTROL, preview: FRAME_KIND_PREVIEW },
    caps: { control: CONTROL_FRAME_CAP, preview: PREVIEW_FRAME_CAP },
    max_depth: MAX_DEPTH,
    notes: [
      "One WebSocket binary message is one frame: a kind byte (0x01 control, 0x02 preview: job.preview only), then one msgpack map. `caps` are in bytes, kind byte included, and are checked before decoding.",
      "`frame` is the whole frame in lowercase hex, kind byte included. direction: to_edge = agent → edge (FromAgent), to_agent = edge → agent (ToAgent); $defs of the same names in wire.schema.json.",
      'In `value` and `decoded`, msgpack bin (raw bytes) is written {"$bytes": "<lowercase hex>"}; everything else is plain JSON.',
      "Decoding `frame` must give `value`. Encoders need not give the same bytes (key order and number widths may differ); these were written with keys in schema order, the shortest str/bin/map/array headers, the smallest int encoding for every integer (int 64 beyond 32 bits: deadlines in ms, `big`), and float64 for every other number. A reader should still accept an integral float wherever an integer is expected.",
      "An invalid frame with `length` is too big to write out: it is `frame`, then the byte `fill` repeated until the frame is `length` bytes long.",
      "Every invalid frame closes the connection with `close` (4400, malformed) and changes nothing else. reject_at: kind = unknown kind byte; cap = over the kind's cap; decode = not one plain msgpack value; schema = plain, but fails wire.schema.json; frame_kind = a valid message in the wrong kind of frame. `reason` is what shared/wire.ts says, for information.",
      'msgpackr (the decoder both ends use) renames a __proto__ map key to "__proto_" instead of refusing it: see the vector "__proto__ key".',
    ],
    vectors: examples().map(({ name, direction, message }) => {
      // A broken example is a bug of this module: refuse to build the files.
      const checked = wireSchemaOf(direction).parse(message);
      return { name, direction, type: checked.type, frame: toHex(encodeFrame(message)), value: toJson(message) };
    }),
    invalid: invalidExamples(),
  };
}

/** The JSON Schema file's content: `$defs` FromAgent and ToAgent; the root accepts either. */
export function wireJsonSchema(): Record<string, unknown> {
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    title: `Floodgate agent protocol v${AGENT_PROTOCOL_VERSION}`,
    description: `One message (the msgpack map after the kind byte of one WebSocket frame, subprotocol ${AGENT_SUBPROTOCOL}) between a GPU agent and the edge: FromAgent is agent → edge, ToAgent edge → agent. Generated from shared/wire.ts by test/gen-golden.ts; do not edit. Fields marked x-msgpack-type: bin hold raw bytes (msgpack bin), which JSON cannot represent.`,
    $defs: { FromAgent: directionSchema(FromAgent), ToAgent: directionSchema(ToAgent) },
    anyOf: [{ $ref: "#/$defs/FromAgent" }, { $ref: "#/$defs/ToAgent" }],
  };
}

/** Paths under shared/golden/ and their JSON content. */
export function wireGoldenFiles(): Record<"wire-vectors.json" | "wire.schema.json", unknown> {
  return { "wire-vectors.json": wireVectors(), "wire.schema.json": wireJsonSchema() };
}
