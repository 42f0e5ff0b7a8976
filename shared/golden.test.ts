// oxlint-disable-next-line no-restricted-imports -- a test may read the golden files; shared/ code may not
import { readFileSync } from "node:fs";
import { Validator } from "@cfworker/json-schema";
import { describe, expect, it } from "vitest";
import { CodecError, decode, encode } from "./codec.ts";
import {
  type GoldenVectorsFile,
  type Json,
  type RejectAt,
  fromHex,
  fromJson,
  goldenFiles,
  runnerJsonSchema,
  runnerVectors,
  toHex,
  toJson,
} from "./golden/runner-golden.ts";
import {
  type InvalidWireVector,
  type WireDirection,
  type WireVectorsFile,
  invalidFrameBytes,
  wireGoldenFiles,
  wireJsonSchema,
  wireRejectAt,
  wireSchemaOf,
  wireVectors,
} from "./golden/wire-golden.ts";
import { FromRunner, MAX_RUNNER_FRAME, ToRunner } from "./runner.ts";
import {
  AGENT_PROTOCOL_VERSION,
  CLOSE,
  FRAME_KIND_CONTROL,
  FRAME_KIND_PREVIEW,
  FromAgent,
  ToAgent,
  decodeFrame,
  encodeFrame,
} from "./wire.ts";

const onDisk = (name: string): unknown =>
  JSON.parse(readFileSync(new URL(`golden/${name}`, import.meta.url), "utf8")) as unknown;

/** Plain copies: Buffers and Uint8Arrays compare equal when their bytes do. */
function normalise(x: unknown): unknown {
  if (x instanceof Uint8Array) return { $bytes: [...x] };
  if (Array.isArray(x)) return x.map(normalise);
  if (x !== null && typeof x === "object") {
    return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, normalise(v)]));
  }
  return x;
}

/** The JSON Schema file, narrowed to one direction. */
function jsonSchemaValidator(direction: "to_runner" | "from_runner"): Validator {
  const schema = runnerJsonSchema();
  const ref = direction === "to_runner" ? "#/$defs/ToRunner" : "#/$defs/FromRunner";
  return new Validator({ $defs: schema.$defs as Record<string, Json>, $ref: ref }, "2020-12", false);
}

/**
 * Where a reader using shared/ refuses one whole frame (length prefix included), reading it
 * the way gpu-agent/runner/io.ts does; "schema" only if the JSON Schema file refuses it too.
 */
function refusedAt(frame: Uint8Array, direction: "to_runner" | "from_runner"): RejectAt | "accepted" | "disagree" {
  const length = new DataView(frame.buffer, frame.byteOffset).getUint32(0, false);
  if (length > MAX_RUNNER_FRAME) return frame.length === 4 ? "length" : "disagree";
  const body = frame.subarray(4);
  if (body.length < length) return "end_of_stream";
  let decoded: unknown;
  try {
    decoded = decode(body.subarray(0, length));
  } catch (err) {
    return err instanceof CodecError ? "decode" : "disagree";
  }
  const schema = direction === "to_runner" ? ToRunner : FromRunner;
  const zodOk = schema.safeParse(decoded).success;
  const jsonOk = jsonSchemaValidator(direction).validate(toJson(decoded)).valid;
  if (zodOk !== jsonOk) return "disagree";
  return zodOk ? "accepted" : "schema";
}

const vectorsFile = onDisk("runner-vectors.json") as GoldenVectorsFile;

describe("runner golden files", () => {
  it("the files on disk are what test/gen-golden.ts writes now (regenerate after a schema change)", () => {
    for (const [name, content] of Object.entries(goldenFiles())) {
      expect(onDisk(name), `shared/golden/${name} is stale: run npx node test/gen-golden.ts`).toEqual(
        JSON.parse(JSON.stringify(content)),
      );
    }
  });

  it("every message type of both directions has a vector", () => {
    const types = new Set(vectorsFile.vectors.map((v) => v.type));
    for (const option of [...ToRunner.options, ...FromRunner.options]) {
      expect(types).toContain(option.shape.type.value);
    }
  });

  describe.each(vectorsFile.vectors.map((v) => [v.name, v] as const))("vector %s", (_name, vector) => {
    const schema = vector.direction === "to_runner" ? ToRunner : FromRunner;

    it("decodes to its value, which passes its schema and the JSON Schema", () => {
      const decoded = decode(fromHex(vector.msgpack));
      expect(normalise(decoded)).toEqual(normalise(fromJson(vector.value)));
      expect(schema.safeParse(decoded).success).toBe(true);
      expect(vector.type).toBe((decoded as { type: string }).type);
      const validator = jsonSchemaValidator(vector.direction);
      expect(validator.validate(vector.value).errors).toEqual([]);
    });

    it("encoding its value gives its bytes", () => {
      expect(Buffer.from(encode(fromJson(vector.value))).toString("hex")).toBe(vector.msgpack);
      expect(toJson(fromJson(vector.value))).toEqual(vector.value);
    });
  });

  it.each(vectorsFile.invalid.map((v) => [v.name, v] as const))(
    "invalid vector %s is refused where it says",
    (_name, v) => {
      expect(refusedAt(fromHex(v.frame), v.direction)).toBe(v.reject_at);
    },
  );

  it("the JSON Schema's root accepts a message of either direction and refuses a made-up type", () => {
    const validator = new Validator(runnerJsonSchema() as Record<string, Json>, "2020-12", false);
    expect(validator.validate({ v: 1, type: "runner.shutdown" }).valid).toBe(true);
    expect(validator.validate({ v: 1, type: "job.done", job_id: "j" }).valid).toBe(true);
    expect(validator.validate({ v: 1, type: "job.teleport", job_id: "j" }).valid).toBe(false);
  });

  it("the builder is deterministic", () => {
    expect(JSON.stringify(runnerVectors())).toBe(JSON.stringify(runnerVectors()));
  });
});

/** wire.schema.json, narrowed to one direction. */
function wireValidator(direction: WireDirection): Validator {
  const schema = wireJsonSchema();
  const ref = direction === "to_edge" ? "#/$defs/FromAgent" : "#/$defs/ToAgent";
  return new Validator({ $defs: schema.$defs as Record<string, Json>, $ref: ref }, "2020-12", false);
}

const wireFile = onDisk("wire-vectors.json") as WireVectorsFile;

/** The message types that have a vector in `direction`. */
function typesWithVectors(direction: WireDirection): Set<string> {
  return new Set(wireFile.vectors.filter((v) => v.direction === direction).map((v) => v.type));
}

/** Whether an invalid frame gets as far as a decoded value (so it records `decoded`). */
const decodes = (v: InvalidWireVector): boolean => v.reject_at === "schema" || v.reject_at === "frame_kind";

describe("agent protocol golden files", () => {
  it("the files on disk are what test/gen-golden.ts writes now (regenerate after a schema change)", () => {
    for (const [name, content] of Object.entries(wireGoldenFiles())) {
      expect(onDisk(name), `shared/golden/${name} is stale: run npx node test/gen-golden.ts`).toEqual(
        JSON.parse(JSON.stringify(content)),
      );
    }
  });

  it("the vectors file stays small: oversized frames are written as a start, a length and a fill byte", () => {
    expect(readFileSync(new URL("golden/wire-vectors.json", import.meta.url)).length).toBeLessThan(200 * 1024);
  });

  it("every message type of FromAgent and ToAgent has a vector in its direction", () => {
    for (const option of FromAgent.options) expect(typesWithVectors("to_edge")).toContain(option.shape.type.value);
    for (const option of ToAgent.options) expect(typesWithVectors("to_agent")).toContain(option.shape.type.value);
  });

  describe.each(wireFile.vectors.map((v) => [v.name, v] as const))("vector %s", (_name, vector) => {
    const schema = wireSchemaOf(vector.direction);
    const frame = fromHex(vector.frame);

    it("decodeFrame gives its value (bytes compared as hex), which passes the JSON Schema", () => {
      const result = decodeFrame(frame, schema);
      expect(result).toMatchObject({ ok: true, msg: { type: vector.type } });
      expect(result.ok ? toJson(result.msg) : result.reason).toEqual(vector.value);
      expect(frame[0]).toBe(vector.type === "job.preview" ? FRAME_KIND_PREVIEW : FRAME_KIND_CONTROL);
      expect(wireValidator(vector.direction).validate(vector.value).errors).toEqual([]);
    });

    it("re-encodes to the same bytes, from the decoded message and from its value", () => {
      const result = decodeFrame(frame, schema);
      if (!result.ok) throw new Error(`refused: ${result.reason}`);
      expect(toHex(encodeFrame(result.msg))).toBe(vector.frame);
      expect(toHex(encodeFrame(schema.parse(fromJson(vector.value))))).toBe(vector.frame);
    });
  });

  it.each(wireFile.invalid.map((v) => [v.name, v] as const))(
    "invalid frame %s is refused with its close code, where it says",
    (_name, v) => {
      const frame = invalidFrameBytes(v);
      expect(v.close).toBe(CLOSE.malformed);
      expect(frame.length).toBe(v.length ?? v.frame.length / 2);
      expect(decodeFrame(frame, wireSchemaOf(v.direction))).toEqual({ ok: false, close: v.close, reason: v.reason });
      expect(wireRejectAt(frame, v.direction)).toBe(v.reject_at);
      expect(decodes(v) ? toJson(decode(frame.subarray(1))) : undefined).toEqual(v.decoded);
    },
  );

  it.each(wireFile.invalid.filter(decodes).map((v) => [v.name, v] as const))(
    "the JSON Schema agrees with zod on invalid frame %s: it refuses what the schema refuses, and only that",
    (_name, v) => {
      expect(wireValidator(v.direction).validate(v.decoded ?? null).valid).toBe(v.reject_at === "frame_kind");
    },
  );

  it('msgpackr renames a __proto__ key to "__proto_" rather than refusing it, so only the strict schema does', () => {
    const v = wireFile.invalid.find((x) => x.name === "__proto__ key");
    expect(v?.frame).toContain(toHex(new TextEncoder().encode("__proto__")));
    expect(v?.decoded).toHaveProperty("__proto_");
    expect(Object.getPrototypeOf(decode(fromHex(v?.frame ?? "").subarray(1)))).toBe(Object.prototype);
  });

  it("the JSON Schema's root accepts a message of either direction and refuses a made-up type", () => {
    const validator = new Validator(wireJsonSchema() as Record<string, Json>, "2020-12", false);
    expect(validator.validate({ v: AGENT_PROTOCOL_VERSION, type: "work.request", trace: "t", credits: 1 }).valid).toBe(
      true,
    );
    expect(
      validator.validate({ v: AGENT_PROTOCOL_VERSION, type: "agent.drain", trace: "t", reason: "deploy" }).valid,
    ).toBe(true);
    expect(validator.validate({ v: AGENT_PROTOCOL_VERSION, type: "job.teleport", trace: "t" }).valid).toBe(false);
  });

  it("the builder is deterministic", () => {
    expect(JSON.stringify(wireVectors())).toBe(JSON.stringify(wireVectors()));
  });
});
