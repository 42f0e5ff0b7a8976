/**
 * Runner stdio frames, fuzzed through gpu-agent/runner/io.ts: arbitrary bytes in arbitrary
 * chunks, corrupt bodies between valid frames, hostile lengths up to 4 GiB, streams cut inside
 * a frame. The decoder never throws; what it yields is plain, schema-valid data or a
 * `ProtocolError` value; chunking never changes the outcome; after a corrupt body reading goes
 * on at the next frame, and after a fatal error nothing more is read.
 *
 * `FUZZ_RUNS` runs per property (300 by default; `npm run fuzz` runs 20,000). Counts are logged.
 */
import { PassThrough } from "node:stream";
import * as fc from "fast-check";
import { Packr } from "msgpackr";
import { afterAll, describe, expect, it } from "vitest";
import { encode, MAX_DEPTH } from "../../shared/codec.ts";
import { plain } from "../../test/support/plain.ts";
import { FromRunner, MAX_RUNNER_FRAME, ToRunner, lengthPrefix } from "../../shared/runner.ts";
import { type FrameResult, FrameDecoder, type ProtocolError, encodeFrame, readFrames } from "./io.ts";

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const TIMEOUT = 30_000 + RUNS * 20;

const counted = { frames: 0, bytes: 0 };

const jobId = fc.string({ minLength: 1, maxLength: 64 });
const text = fc.string({ maxLength: 200 });
const name = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/);

const fromRunner: fc.Arbitrary<FromRunner> = fc.oneof(
  fc
    .record({
      runner: fc.string({ minLength: 1, maxLength: 64 }),
      version: fc.string({ minLength: 1, maxLength: 64 }),
      max_batch: fc.integer({ min: 1, max: 256 }),
      models: fc.array(fc.record({ model: name, version: name }), { maxLength: 4 }),
    })
    .map((r): FromRunner => ({ v: 1, type: "runner.hello", ...r })),
  fc.record({ model: name, version: name }).map((r): FromRunner => ({ v: 1, type: "runner.loaded", ...r })),
  fc
    .record({
      job_id: jobId,
      phase: fc.constantFrom("loading", "sampling", "decoding"),
      step: fc.nat(),
      total: fc.integer({ min: 1, max: 1e6 }),
    })
    .map((r): FromRunner => ({ v: 1, type: "job.progress", ...r })),
  fc
    .record({
      job_id: jobId,
      index: fc.nat({ max: 100_000 }),
      width: fc.integer({ min: 1, max: 8 }),
      height: fc.integer({ min: 1, max: 8 }),
      preview: fc.boolean(),
    })
    .map((r): FromRunner => ({
      v: 1,
      type: "job.frame",
      ...r,
      format: "rgba8",
      data: new Uint8Array(r.width * r.height * 4).map((_, i) => i & 0xff),
    })),
  fc
    .record({ job_id: jobId, level: fc.constantFrom("debug", "info", "warn", "error"), message: text })
    .map((r): FromRunner => ({ v: 1, type: "job.log", ...r })),
  fc
    .record({
      job_id: jobId,
      name,
      content_type: fc.constantFrom("application/json", "text/plain"),
      data: fc.uint8Array({ maxLength: 256 }),
    })
    .map((r): FromRunner => ({ v: 1, type: "job.output", ...r })),
  fc
    .record({
      job_id: jobId,
      code: fc.constantFrom("oom", "invalid_input", "model_error", "cancelled", "timeout"),
      message: text,
    })
    .map((r): FromRunner => ({ v: 1, type: "job.error", ...r })),
  jobId.map((job_id): FromRunner => ({ v: 1, type: "job.done", job_id })),
);

/** Keys the codec refuses at any depth (protocol.md): a valid message never carries them. */
const FORBIDDEN_KEYS = new Set(["__proto__", "constructor", "prototype"]);

function hasForbiddenKey(v: unknown): boolean {
  if (Array.isArray(v)) return v.some(hasForbiddenKey);
  if (v === null || typeof v !== "object") return false;
  return Object.entries(v).some(([k, x]) => FORBIDDEN_KEYS.has(k) || hasForbiddenKey(x));
}

const toRunner: fc.Arbitrary<ToRunner> = fc.oneof(
  fc.record({ model: name, version: name }).map((r): ToRunner => ({ v: 1, type: "runner.load", ...r })),
  fc
    .record({
      job_id: jobId,
      model: name,
      version: name,
      input: fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 3 })).filter((i) => !hasForbiddenKey(i)),
    })
    .map((r): ToRunner => ({ v: 1, type: "job.run", ...r })),
  jobId.map((job_id): ToRunner => ({ v: 1, type: "job.cancel", job_id })),
  fc.constant<ToRunner>({ v: 1, type: "runner.shutdown" }),
);

const permissive = new Packr({ moreTypes: true, structuredClone: true, useRecords: false });

/** Bodies that must be refused (not fatal: the length was honest). */
const corruptBody: fc.Arbitrary<{ what: string; body: Uint8Array }> = fc.oneof(
  fc.constant({ what: "empty body", body: new Uint8Array(0) }),
  fc
    .tuple(
      fc.constantFrom<[string, () => unknown]>(
        ["Set", () => new Set([1])],
        ["Map", () => new Map([["a", 1]])],
        ["RegExp", () => /x/g],
        ["Error", () => new Error("e")],
        ["Date", () => new Date(0)],
        ["BigInt", () => 2n ** 70n],
        ["Float32Array", () => new Float32Array(2)],
      ),
      fromRunner,
    )
    .map(([[what, make], m]) => ({ what, body: permissive.pack({ ...m, job_id: make() }) })),
  fc
    .integer({ min: MAX_DEPTH + 1, max: 100_000 })
    .map((d) => ({ what: "nested", body: new Uint8Array(d + 1).fill(0x91).fill(0xc0, d) })),
  fc.tuple(fromRunner, fc.constantFrom("__proto__", "constructor", "prototype")).map(([m, key]) => {
    const inner = encode(m);
    const k = new TextEncoder().encode(key);
    const first = inner[0] ?? 0x80;
    const body =
      first >= 0x80 && first < 0x8f
        ? [first + 1, ...inner.subarray(1), 0xa0 | k.length, ...k, 0xc0]
        : [0x81, 0xa0 | k.length, ...k, 0xc0];
    return { what: `${key} key`, body: new Uint8Array(body) };
  }),
  fc.tuple(fromRunner, fc.uint8Array({ minLength: 1, maxLength: 8 })).map(([m, extra]) => ({
    what: "trailing bytes",
    body: new Uint8Array([...encode(m), ...extra]),
  })),
  fc.tuple(fromRunner, fc.string({ minLength: 1, maxLength: 10 })).map(([m, k]) => ({
    what: "unknown field",
    body: encode({ ...m, [`x_${k}`]: 1 }),
  })),
  fc.tuple(fc.string({ maxLength: 20 }), fc.constantFrom(0, 2, "1")).map(([type, v]) => ({
    what: "unknown type or version",
    body: encode({ v, type }),
  })),
  fc.uint8Array({ minLength: 1, maxLength: 300 }).map((body) => ({ what: "random bytes", body })),
);

/** Splits bytes into chunks at the given cut points. */
function chunks(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let at = 0;
  for (const p of [...points, bytes.length]) {
    if (p > at) out.push(bytes.subarray(at, p));
    at = Math.max(at, p);
  }
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Bytes as arrays (Buffers included), so two results compare by value. */
function unbytes(v: unknown): unknown {
  if (v instanceof Uint8Array) return [...v];
  if (Array.isArray(v)) return v.map(unbytes);
  if (v !== null && typeof v === "object")
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unbytes(x)]));
  return v;
}

function normal<T>(rs: FrameResult<T>[]): unknown {
  return unbytes(rs);
}

function feed<T>(dec: FrameDecoder<T>, parts: Uint8Array[]): FrameResult<T>[] {
  const out: FrameResult<T>[] = [];
  for (const p of parts) out.push(...dec.push(p));
  counted.bytes += parts.reduce((n, p) => n + p.length, 0);
  return out;
}

describe("runner stdio frames, fuzzed", () => {
  it(
    "arbitrary bytes in arbitrary chunks: never a throw; plain schema-valid messages or ProtocolError values; chunking changes nothing",
    () => {
      const stream = fc.oneof(
        fc.uint8Array({ maxLength: 2048 }),
        fc
          .array(
            fc.oneof(
              fromRunner.map((m) => encodeFrame(m)),
              fc.uint8Array({ maxLength: 64 }),
            ),
            { maxLength: 6 },
          )
          .map(concat),
      );
      fc.assert(
        fc.property(stream, fc.array(fc.nat(), { maxLength: 12 }), fc.boolean(), (bytes, cuts, toward) => {
          const schema = toward ? FromRunner : ToRunner;
          const whole = new FrameDecoder<FromRunner | ToRunner>(schema);
          const split = new FrameDecoder<FromRunner | ToRunner>(schema);
          const a = feed(whole, [bytes]);
          const b = feed(split, chunks(bytes, cuts));
          counted.frames += a.length;
          expect(normal(b)).toEqual(normal(a));
          expect(split.end()).toEqual(whole.end());
          // Messages are plain and schema-valid; errors are values; a fatal one can only be last.
          const verdicts = a.map((r, i) =>
            r.ok
              ? { plain: plain(r.msg), schema: schema.safeParse(r.msg).success }
              : { code: r.error.code, fatalNotLast: r.error.fatal && i !== a.length - 1 },
          );
          expect(verdicts).toEqual(
            a.map((r) => (r.ok ? { plain: true, schema: true } : { code: "protocol_error", fatalNotLast: false })),
          );
        }),
        { numRuns: RUNS },
      );
    },
    TIMEOUT,
  );

  it(
    "corrupt bodies between valid frames: each valid frame comes out once and in order, each corrupt one is one non-fatal error",
    () => {
      const item = fc.oneof(
        fromRunner.map((m) => ({ ok: true as const, m, bytes: encodeFrame(m) })),
        corruptBody.map((c) => ({ ok: false as const, what: c.what, bytes: lengthPrefix(c.body) })),
      );
      fc.assert(
        fc.property(
          fc.array(item, { minLength: 1, maxLength: 8 }),
          fc.array(fc.nat(), { maxLength: 16 }),
          (items, cuts) => {
            const dec = new FrameDecoder(FromRunner);
            const out = feed(dec, chunks(concat(items.map((i) => i.bytes)), cuts));
            counted.frames += out.length;
            expect(out).toHaveLength(items.length);
            // Each valid frame as sent; each corrupt one a non-fatal error, so reading went on.
            expect(unbytes(out.map((r) => (r.ok ? r.msg : { fatal: r.error.fatal })))).toEqual(
              unbytes(items.map((x) => (x.ok ? x.m : { fatal: false }))),
            );
            expect(dec.end()).toBeUndefined();
          },
        ),
        { numRuns: RUNS },
      );
    },
    TIMEOUT,
  );

  it(
    "a length over the cap, up to 4 GiB, is fatal once its 4 bytes are in; nothing after it is read",
    () => {
      fc.assert(
        fc.property(
          fc.array(fromRunner, { maxLength: 3 }),
          fc.oneof(fc.constant(0xffffffff), fc.integer({ min: MAX_RUNNER_FRAME + 1, max: 0xffffffff })),
          fc.array(fromRunner, { maxLength: 3 }),
          (before, length, after) => {
            const header = new Uint8Array(4);
            new DataView(header.buffer).setUint32(0, length, false);
            const dec = new FrameDecoder(FromRunner);
            const first = feed(dec, [...before.map((m) => encodeFrame(m)), header]);
            counted.frames += first.length;
            expect(first.slice(0, -1).every((r) => r.ok)).toBe(true);
            expect(first.at(-1)).toMatchObject({ ok: false, error: { fatal: true } });
            expect(dec.failed).toBe(true);
            expect(
              feed(
                dec,
                after.map((m) => encodeFrame(m)),
              ),
            ).toEqual([]);
            expect(dec.end()).toBeUndefined();
          },
        ),
        { numRuns: RUNS },
      );
    },
    TIMEOUT,
  );

  it(
    "a stream cut inside a frame: the whole frames before the cut arrive, then one truncation through readFrames",
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fromRunner, { minLength: 1, maxLength: 5 }),
          fc.nat(),
          fc.array(fc.nat(), { maxLength: 8 }),
          async (messages, cutAt, cuts) => {
            const frames = messages.map((m) => encodeFrame(m));
            const bytes = concat(frames);
            const cut = cutAt % bytes.length;
            let boundary = 0;
            let whole = 0;
            for (const f of frames) {
              if (boundary + f.length > cut) break;
              boundary += f.length;
              whole++;
            }
            const stream = new PassThrough();
            const got: FromRunner[] = [];
            const errors: ProtocolError[] = [];
            const truncations: ProtocolError[] = [];
            let ended = false;
            const done = new Promise<void>((resolve) => {
              readFrames(stream, FromRunner, {
                message: (m) => got.push(m),
                error: (e) => errors.push(e),
                truncated: (e) => {
                  truncations.push(e);
                  resolve();
                },
                end: () => {
                  ended = true;
                  resolve();
                },
              });
            });
            for (const c of chunks(bytes.subarray(0, cut), cuts)) stream.write(c);
            stream.end();
            await done;
            counted.frames += got.length + truncations.length;
            counted.bytes += cut;
            expect(got).toHaveLength(whole);
            expect(errors).toEqual([]);
            // On a frame boundary the stream simply ended; inside a frame, one fatal truncation.
            expect({ ended, truncations: truncations.map((t) => t.fatal) }).toEqual(
              cut === boundary ? { ended: true, truncations: [] } : { ended: false, truncations: [true] },
            );
          },
        ),
        { numRuns: RUNS },
      );
    },
    TIMEOUT,
  );

  it(
    "agent-to-runner frames (what a JavaScript runner reads on stdin) pass or fail the same way",
    () => {
      const item = fc.oneof(
        toRunner.map((m) => ({ ok: true as const, bytes: encodeFrame(m) })),
        corruptBody.map((c) => ({ ok: false as const, bytes: lengthPrefix(c.body) })),
      );
      fc.assert(
        fc.property(
          fc.array(item, { minLength: 1, maxLength: 8 }),
          fc.array(fc.nat(), { maxLength: 8 }),
          (items, cuts) => {
            const dec = new FrameDecoder(ToRunner);
            const out = feed(dec, chunks(concat(items.map((i) => i.bytes)), cuts));
            counted.frames += out.length;
            expect(out.map((r) => r.ok)).toEqual(items.map((i) => i.ok));
            expect(out.every((r) => !r.ok || plain(r.msg))).toBe(true);
          },
        ),
        { numRuns: RUNS },
      );
    },
    TIMEOUT,
  );
});

afterAll(() => {
  console.log(`runner frame fuzz: ${counted.frames} frames, ${counted.bytes} bytes, FUZZ_RUNS=${RUNS}`);
});
