/**
 * The runner protocol's golden files, built from the schemas in shared/runner.ts: example
 * messages with their exact msgpack bytes (`runner-vectors.json`) and the JSON Schema of both
 * directions (`runner.schema.json`). A runner written in another language tests its codec
 * against them (docs/runner-protocol.md). `test/gen-golden.ts` writes the files;
 * shared/golden.test.ts fails when they are not what this module builds now, so a schema
 * change without regenerating them is caught.
 */
import { z } from "zod";
import { encode } from "../codec.ts";
import { FromRunner, MAX_RUNNER_FRAME, RUNNER_PROTOCOL_VERSION, ToRunner, lengthPrefix } from "../runner.ts";

/** A JSON value. Byte arrays are written `{"$bytes": "<lowercase hex>"}`. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export type Direction = "to_runner" | "from_runner";

/** A message, its msgpack bytes (without the length prefix) and its value. */
export interface GoldenVector {
  name: string;
  direction: Direction;
  type: string;
  msgpack: string;
  value: Json;
}

/** Where a reader must refuse a bad frame. */
export type RejectAt = "length" | "end_of_stream" | "decode" | "schema";

/** A frame (length prefix included) that a reader must refuse, and where. */
export interface InvalidVector {
  name: string;
  direction: Direction;
  frame: string;
  reject_at: RejectAt;
  why: string;
}

export interface GoldenVectorsFile {
  protocol_version: number;
  max_frame: number;
  notes: string[];
  vectors: GoldenVector[];
  invalid: InvalidVector[];
}

export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

export function fromHex(hex: string): Uint8Array {
  if (!/^(?:[0-9a-f]{2})*$/.test(hex)) throw new Error("not lowercase hex of whole bytes");
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** A decoded message as JSON: byte arrays become `{"$bytes": hex}`. */
export function toJson(value: unknown): Json {
  if (value instanceof Uint8Array) return { $bytes: toHex(value) };
  if (Array.isArray(value)) return value.map(toJson);
  if (value !== null && typeof value === "object") {
    const out: { [k: string]: Json } = {};
    for (const [k, v] of Object.entries(value)) out[k] = toJson(v);
    return out;
  }
  if (value === null || typeof value === "boolean" || typeof value === "number" || typeof value === "string") {
    return value;
  }
  throw new TypeError(`not JSON: ${typeof value}`);
}

/** The inverse of {@link toJson}: `{"$bytes": hex}` becomes a Uint8Array. */
export function fromJson(value: Json): unknown {
  if (Array.isArray(value)) return value.map(fromJson);
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    const hex = value.$bytes;
    if (keys.length === 1 && typeof hex === "string") return fromHex(hex);
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = fromJson(v);
    return out;
  }
  return value;
}

const v = RUNNER_PROTOCOL_VERSION;
/** 2×1 RGBA8: one red pixel, one half-transparent blue one. */
const TWO_PIXELS = new Uint8Array([255, 0, 0, 255, 0, 0, 255, 128]);

/** Example messages: every type in both directions, some twice to cover the encodings. */
function examples(): { name: string; direction: Direction; message: ToRunner | FromRunner }[] {
  return [
    {
      name: "runner.hello",
      direction: "from_runner",
      message: {
        v,
        type: "runner.hello",
        runner: "demo",
        version: "0.1.0",
        max_batch: 4,
        models: [{ model: "demo", version: "0.1.0" }],
      },
    },
    {
      name: "runner.hello with no models yet",
      direction: "from_runner",
      message: { v, type: "runner.hello", runner: "torch", version: "2.5.1", max_batch: 200, models: [] },
    },
    {
      name: "runner.load",
      direction: "to_runner",
      message: { v, type: "runner.load", model: "sdxl-turbo", version: "2024-11-02.1" },
    },
    {
      name: "runner.loaded",
      direction: "from_runner",
      message: { v, type: "runner.loaded", model: "sdxl-turbo", version: "2024-11-02.1" },
    },
    {
      name: "runner.load_failed",
      direction: "from_runner",
      message: {
        v,
        type: "runner.load_failed",
        model: "sdxl-turbo",
        version: "2024-11-02.1",
        code: "oom",
        message: "CUDA out of memory while loading the UNet",
      },
    },
    {
      name: "job.run",
      direction: "to_runner",
      message: {
        v,
        type: "job.run",
        job_id: "job_01jd3kq8v6x2m9c4t7r5w0yzab",
        model: "demo",
        version: "0.1.0",
        input: { prompt: "a red fox in the snow", seed: 42, steps: 20 },
      },
    },
    {
      name: "job.run with every kind of input value",
      direction: "to_runner",
      message: {
        v,
        type: "job.run",
        job_id: "j2",
        model: "demo",
        version: "0.1.0",
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
          init_image: new Uint8Array([0, 1, 2, 253, 254, 255]),
          long_text: "x".repeat(40),
        },
      },
    },
    { name: "job.cancel", direction: "to_runner", message: { v, type: "job.cancel", job_id: "j2" } },
    { name: "runner.shutdown", direction: "to_runner", message: { v, type: "runner.shutdown" } },
    {
      name: "job.progress",
      direction: "from_runner",
      message: { v, type: "job.progress", job_id: "j2", phase: "sampling", step: 7, total: 20 },
    },
    {
      name: "job.progress while loading",
      direction: "from_runner",
      message: { v, type: "job.progress", job_id: "j2", phase: "loading", step: 0, total: 1 },
    },
    {
      name: "job.frame preview",
      direction: "from_runner",
      message: {
        v,
        type: "job.frame",
        job_id: "j2",
        index: 8,
        width: 2,
        height: 1,
        format: "rgba8",
        data: TWO_PIXELS,
        preview: true,
      },
    },
    {
      name: "job.frame result",
      direction: "from_runner",
      message: {
        v,
        type: "job.frame",
        job_id: "j2",
        index: 0,
        width: 2,
        height: 1,
        format: "rgba8",
        data: TWO_PIXELS,
        preview: false,
      },
    },
    {
      name: "job.log",
      direction: "from_runner",
      message: { v, type: "job.log", job_id: "j2", level: "warn", message: "guidance clamped to 20" },
    },
    {
      name: "job.output",
      direction: "from_runner",
      message: {
        v,
        type: "job.output",
        job_id: "j2",
        name: "params.json",
        content_type: "application/json",
        data: new TextEncoder().encode('{"seed":42}'),
      },
    },
    {
      name: "job.error",
      direction: "from_runner",
      message: { v, type: "job.error", job_id: "j2", code: "oom", message: "CUDA out of memory" },
    },
    {
      name: "job.error after a cancel",
      direction: "from_runner",
      message: { v, type: "job.error", job_id: "j3", code: "cancelled", message: "cancelled" },
    },
    { name: "job.done", direction: "from_runner", message: { v, type: "job.done", job_id: "j2" } },
  ];
}

/** A length prefix alone. */
function header(n: number): Uint8Array {
  const h = new Uint8Array(4);
  new DataView(h.buffer).setUint32(0, n, false);
  return h;
}

/** Frames a reader must refuse. Built by hand where msgpack encoders would not produce them. */
function invalidExamples(): InvalidVector[] {
  const frame = (body: Uint8Array): string => toHex(lengthPrefix(body));
  // {"v":1,"type":"job.done","job_id":"j2"} with its last value replaced by a fixext 1 (type 1).
  const done = encode({ v, type: "job.done", job_id: "j2" });
  const withExt = new Uint8Array([...done.subarray(0, done.length - 3), 0xd4, 0x01, 0x00]);
  return [
    {
      name: "length over the cap",
      direction: "from_runner",
      frame: toHex(header(MAX_RUNNER_FRAME + 1)),
      reject_at: "length",
      why: `a length above ${MAX_RUNNER_FRAME} is refused from the 4 length bytes alone, before any body is read`,
    },
    {
      name: "stream ends inside a frame",
      direction: "from_runner",
      frame: toHex(lengthPrefix(done).subarray(0, 8)),
      reject_at: "end_of_stream",
      why: "the length promises more bytes than the stream holds before it ends",
    },
    {
      name: "extension type",
      direction: "from_runner",
      frame: frame(withExt),
      reject_at: "decode",
      why: "msgpack extension types (fixext/ext, timestamps included) are not plain data",
    },
    {
      name: "trailing bytes",
      direction: "from_runner",
      frame: frame(new Uint8Array([...done, 0xc0])),
      reject_at: "decode",
      why: "a frame holds exactly one msgpack value",
    },
    {
      name: "constructor key",
      direction: "to_runner",
      frame: frame(
        encode({ v, type: "job.run", job_id: "j4", model: "demo", version: "0.1.0", input: { constructor: 1 } }),
      ),
      reject_at: "decode",
      why: "the keys __proto__, constructor and prototype are refused at any depth (msgpackr renames __proto__ to __proto_ instead, which is as safe)",
    },
    {
      name: "empty frame",
      direction: "to_runner",
      frame: toHex(header(0)),
      reject_at: "decode",
      why: "a frame holds exactly one msgpack value",
    },
    {
      name: "missing field",
      direction: "from_runner",
      frame: frame(encode({ v, type: "job.progress", job_id: "j2", phase: "sampling", step: 1 })),
      reject_at: "schema",
      why: "job.progress needs total",
    },
    {
      name: "unknown field",
      direction: "from_runner",
      frame: frame(encode({ v, type: "job.done", job_id: "j2", extra: true })),
      reject_at: "schema",
      why: "objects are strict: unknown fields are refused",
    },
    {
      name: "other protocol version",
      direction: "to_runner",
      frame: frame(encode({ v: 2, type: "runner.shutdown" })),
      reject_at: "schema",
      why: `v must be ${RUNNER_PROTOCOL_VERSION}`,
    },
    {
      name: "message of the other direction",
      direction: "to_runner",
      frame: frame(encode({ v, type: "job.done", job_id: "j2" })),
      reject_at: "schema",
      why: "job.done is runner → agent only",
    },
  ];
}

/** The vectors file's content. */
export function runnerVectors(): GoldenVectorsFile {
  return {
    protocol_version: RUNNER_PROTOCOL_VERSION,
    max_frame: MAX_RUNNER_FRAME,
    notes: [
      "A frame on the wire is a 4-byte big-endian length, then that many bytes: one msgpack map.",
      "`msgpack` is the frame body in lowercase hex, without the length prefix; `frame` (invalid vectors) includes it.",
      'In `value`, msgpack bin (raw bytes) is written {"$bytes": "<lowercase hex>"}; everything else is plain JSON.',
      "Decoding `msgpack` must give `value`. Encoders need not give the same bytes (key order and number widths may differ); these were written with keys in schema order, the shortest str/bin/map/array headers, the smallest int encoding for every integer (int 64 beyond 32 bits), and float64 for every other number.",
      "Integers beyond 32 bits are int 64 (see `big` in the job.run example); a reader should still accept an integral float wherever an integer is expected, as other encoders may write one.",
      "reject_at: length = refuse on the length prefix alone; end_of_stream = the stream ends inside the frame; decode = not one plain msgpack value; schema = plain, but fails runner.schema.json.",
    ],
    vectors: examples().map(({ name, direction, message }) => {
      const schema = direction === "to_runner" ? ToRunner : FromRunner;
      // A broken example is a bug of this module: refuse to build the files.
      const checked = schema.parse(message);
      return { name, direction, type: checked.type, msgpack: toHex(encode(message)), value: toJson(message) };
    }),
    invalid: invalidExamples(),
  };
}

/** JSON Schema of one direction; byte arrays (no JSON equivalent) are described as msgpack bin. */
export function directionSchema(schema: z.ZodType): Record<string, unknown> {
  const json = z.toJSONSchema(schema, {
    target: "draft-2020-12",
    unrepresentable: "any",
    override: (ctx) => {
      if (ctx.zodSchema instanceof z.ZodCustom) {
        const own = ctx.jsonSchema.description;
        ctx.jsonSchema.description = `${own ? `${own} ` : ""}Raw bytes: msgpack bin (bin 8/16/32); JSON has no equivalent.`;
        ctx.jsonSchema["x-msgpack-type"] = "bin";
      }
    },
  });
  // One $schema, at the root of the file.
  const out: Record<string, unknown> = { ...json };
  delete out.$schema;
  return out;
}

/** The JSON Schema file's content: `$defs` ToRunner and FromRunner; the root accepts either. */
export function runnerJsonSchema(): Record<string, unknown> {
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    title: `Floodgate runner protocol v${RUNNER_PROTOCOL_VERSION}`,
    description:
      "One message (the msgpack map of one frame) between an agent and a runner. Generated from shared/runner.ts by test/gen-golden.ts; do not edit. Fields marked x-msgpack-type: bin hold raw bytes (msgpack bin), which JSON cannot represent.",
    $defs: { ToRunner: directionSchema(ToRunner), FromRunner: directionSchema(FromRunner) },
    anyOf: [{ $ref: "#/$defs/ToRunner" }, { $ref: "#/$defs/FromRunner" }],
  };
}

/** Paths under shared/golden/ and their JSON content. */
export function goldenFiles(): Record<"runner-vectors.json" | "runner.schema.json", unknown> {
  return { "runner-vectors.json": runnerVectors(), "runner.schema.json": runnerJsonSchema() };
}
