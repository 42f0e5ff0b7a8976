/**
 * The golden vectors of both protocols, read inside workerd: the actors decode with the same
 * shared/ code as the agent, but on another runtime (no Buffer, bins arrive as plain
 * Uint8Array). Each vector must decode here to exactly the value recorded in Node by
 * test/gen-golden.ts, re-encode to the same bytes, and each invalid frame must be refused the
 * same way (shared/golden.test.ts proves the files against Node).
 */
import { describe, expect, it } from "vitest";
import { CodecError, decode, encode } from "../../shared/codec.ts";
import {
  type GoldenVectorsFile,
  type RejectAt,
  fromHex,
  fromJson,
  runnerVectors,
  toHex,
  toJson,
} from "../../shared/golden/runner-golden.ts";
import runnerJson from "../../shared/golden/runner-vectors.json";
import {
  type WireVectorsFile,
  invalidFrameBytes,
  wireRejectAt,
  wireSchemaOf,
  wireVectors,
} from "../../shared/golden/wire-golden.ts";
import wireJson from "../../shared/golden/wire-vectors.json";
import { FromRunner, MAX_RUNNER_FRAME, ToRunner } from "../../shared/runner.ts";
import { decodeFrame, encodeFrame } from "../../shared/wire.ts";
import runnerSchemaJson from "../../shared/golden/runner.schema.json";
import wireSchemaJson from "../../shared/golden/wire.schema.json";
import { call } from "./helpers.ts";

// A JSON module's inferred type is wider than its file's (strings, not unions; no Json type):
// read as unknown, as shared/golden.test.ts reads them. The last test proves each file equal
// to what its typed builder makes.
const wireFile = wireJson as unknown as WireVectorsFile;
const runnerFile = runnerJson as unknown as GoldenVectorsFile;

/** Where a runner-protocol reader refuses one whole frame (length prefix included). */
function runnerRefusedAt(frame: Uint8Array, direction: "to_runner" | "from_runner"): RejectAt | "accepted" {
  const length = new DataView(frame.buffer, frame.byteOffset).getUint32(0, false);
  if (length > MAX_RUNNER_FRAME) return "length";
  const body = frame.subarray(4);
  if (body.length < length) return "end_of_stream";
  let decoded: unknown;
  try {
    decoded = decode(body.subarray(0, length));
  } catch (err) {
    if (err instanceof CodecError) return "decode";
    throw err;
  }
  return (direction === "to_runner" ? ToRunner : FromRunner).safeParse(decoded).success ? "accepted" : "schema";
}

const wireCases = wireFile.vectors.map((v) => [v.name, v] as const);
const wireInvalidCases = wireFile.invalid.map((v) => [v.name, v] as const);
const runnerCases = runnerFile.vectors.map((v) => [v.name, v] as const);
const runnerInvalidCases = runnerFile.invalid.map((v) => [v.name, v] as const);

describe("every golden agent-protocol frame decodes in workerd to the value the agent decodes", () => {
  it.each(wireCases)("%s", (_name, vector) => {
    const result = decodeFrame(fromHex(vector.frame), wireSchemaOf(vector.direction));
    expect(result).toMatchObject({ ok: true, msg: { type: vector.type } });
    expect(result.ok ? toJson(result.msg) : result.reason).toEqual(vector.value);
  });
});

describe("every golden agent-protocol message re-encodes in workerd to the bytes the agent sends", () => {
  it.each(wireCases)("%s", (_name, vector) => {
    const result = decodeFrame(fromHex(vector.frame), wireSchemaOf(vector.direction));
    if (!result.ok) throw new Error(`refused: ${result.reason}`);
    expect(toHex(encodeFrame(result.msg))).toBe(vector.frame);
    expect(toHex(encodeFrame(wireSchemaOf(vector.direction).parse(fromJson(vector.value))))).toBe(vector.frame);
  });
});

describe("every invalid agent-protocol frame is refused in workerd with the agent's close code, at the same step, for the same reason", () => {
  it.each(wireInvalidCases)("%s", (_name, v) => {
    const frame = invalidFrameBytes(v);
    expect(decodeFrame(frame, wireSchemaOf(v.direction))).toEqual({ ok: false, close: v.close, reason: v.reason });
    expect(wireRejectAt(frame, v.direction)).toBe(v.reject_at);
    expect(v.decoded === undefined ? undefined : toJson(decode(frame.subarray(1)))).toEqual(v.decoded);
  });
});

describe("every golden runner-protocol message decodes in workerd to the value the agent decodes, and re-encodes to its bytes", () => {
  it.each(runnerCases)("%s", (_name, vector) => {
    const decoded = decode(fromHex(vector.msgpack));
    expect(toJson(decoded)).toEqual(vector.value);
    expect((vector.direction === "to_runner" ? ToRunner : FromRunner).safeParse(decoded).success).toBe(true);
    expect(toHex(encode(decoded))).toBe(vector.msgpack);
  });
});

describe("every invalid runner-protocol frame is refused in workerd where the agent refuses it", () => {
  it.each(runnerInvalidCases)("%s", (_name, v) => {
    expect(runnerRefusedAt(fromHex(v.frame), v.direction)).toBe(v.reject_at);
  });
});

describe("the golden files in workerd", () => {
  it("byte fields decode in workerd to plain Uint8Arrays, not Node Buffers", () => {
    expect(navigator.userAgent).toBe("Cloudflare-Workers");
    const preview = wireFile.vectors.find((v) => v.type === "job.preview");
    const result = decodeFrame(fromHex(preview?.frame ?? ""), wireSchemaOf("to_edge"));
    const data = result.ok && result.msg.type === "job.preview" ? result.msg.data : undefined;
    expect(data && Object.getPrototypeOf(data)).toBe(Uint8Array.prototype);
  });

  it("the builders give in workerd the same files as in Node", () => {
    expect(JSON.parse(JSON.stringify(wireVectors()))).toEqual(wireFile);
    expect(JSON.parse(JSON.stringify(runnerVectors()))).toEqual(runnerFile);
  });
});

describe("the edge serves the golden files", () => {
  const served: [string, unknown][] = [
    ["/v1/protocol/agent.schema.json", wireSchemaJson],
    ["/v1/protocol/agent-vectors.json", wireJson],
    ["/v1/protocol/runner.schema.json", runnerSchemaJson],
    ["/v1/protocol/runner-vectors.json", runnerJson],
  ];

  it.each(served)("GET %s answers the file as it is in shared/golden/, without a key", async (path, file) => {
    const r = await call("GET", path);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toContain("application/json");
    expect(r.body).toEqual(file);
  });

  it("/openapi.json lists each of them as open to all", async () => {
    const doc = (await call<{ paths: Record<string, { get?: { security?: unknown[] } }> }>("GET", "/openapi.json"))
      .body;
    for (const [path] of served) expect(doc.paths[path]?.get?.security).toEqual([]);
  });
});
