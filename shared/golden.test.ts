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
  toJson,
} from "./golden/runner-golden.ts";
import { FromRunner, MAX_RUNNER_FRAME, ToRunner } from "./runner.ts";

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
