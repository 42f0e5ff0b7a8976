import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { encode } from "../../shared/codec.ts";
import { FromRunner, MAX_RUNNER_FRAME, ToRunner, lengthPrefix } from "../../shared/runner.ts";
import { type FrameResult, FrameDecoder, type ProtocolError, encodeFrame, readFrames, writeFrame } from "./io.ts";

const done = (id: string): FromRunner => ({ v: 1, type: "job.done", job_id: id });
const header = (n: number): Uint8Array => {
  const h = new Uint8Array(4);
  new DataView(h.buffer).setUint32(0, n, false);
  return h;
};
const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
const messages = <T>(rs: FrameResult<T>[]): T[] => rs.flatMap((r) => (r.ok ? [r.msg] : []));
const errors = <T>(rs: FrameResult<T>[]): ProtocolError[] => rs.flatMap((r) => (r.ok ? [] : [r.error]));

describe("runner frame io", () => {
  it("many frames in one chunk come out in order", () => {
    const dec = new FrameDecoder(FromRunner);
    const out = dec.push(concat(encodeFrame(done("a")), encodeFrame(done("b")), encodeFrame(done("c"))));
    expect(messages(out)).toEqual([done("a"), done("b"), done("c")]);
  });

  it("a frame split at every byte (partial header, partial body) comes out once, whole", () => {
    const frame: FromRunner = {
      v: 1,
      type: "job.frame",
      job_id: "j",
      index: 0,
      width: 4,
      height: 4,
      format: "rgba8",
      data: new Uint8Array(64).map((_, i) => i),
      preview: false,
    };
    const bytes = concat(encodeFrame(frame), encodeFrame(done("j")));
    const dec = new FrameDecoder(FromRunner);
    const out: FrameResult<FromRunner>[] = [];
    for (let i = 0; i < bytes.length; i++) out.push(...dec.push(bytes.subarray(i, i + 1)));
    const got = messages(out);
    expect(got).toHaveLength(2);
    expect(got[0]).toMatchObject({ type: "job.frame", width: 4 });
    expect([...(got[0] as { data: Uint8Array }).data]).toEqual([...frame.data]);
    expect(dec.end()).toBeUndefined();
  });

  it("a length prefix over the cap is refused as soon as its 4 bytes arrive, before any body", () => {
    const dec = new FrameDecoder(FromRunner);
    const out = dec.push(header(MAX_RUNNER_FRAME + 1));
    expect(errors(out)).toEqual([{ code: "protocol_error", fatal: true, message: expect.stringMatching(/over the/) }]);
    // Nothing after a fatal error is read, even a valid frame.
    expect(dec.push(encodeFrame(done("a")))).toEqual([]);
    expect(dec.failed).toBe(true);
  });

  it("a smaller cap is honoured too", () => {
    const dec = new FrameDecoder(FromRunner, 16);
    expect(errors(dec.push(encodeFrame(done("a-longer-job-id")))).map((e) => e.fatal)).toEqual([true]);
  });

  it("a stream that ends inside a frame is a fatal protocol error", () => {
    const dec = new FrameDecoder(FromRunner);
    const frame = encodeFrame(done("a"));
    expect(dec.push(frame.subarray(0, frame.length - 2))).toEqual([]);
    expect(dec.end()).toEqual({
      code: "protocol_error",
      fatal: true,
      message: expect.stringMatching(/inside a frame/),
    });

    const inHeader = new FrameDecoder(FromRunner);
    inHeader.push(new Uint8Array([0, 0]));
    expect(inHeader.end()?.message).toMatch(/frame header/);
  });

  it("an extension-typed value is refused and reading goes on with the next frame", () => {
    const body = encode(done("j2"));
    // Replace the last value ("j2", 3 bytes) with a fixext 1 of type 1.
    const ext = concat(body.subarray(0, body.length - 3), new Uint8Array([0xd4, 0x01, 0x00]));
    const dec = new FrameDecoder(FromRunner);
    const out = dec.push(concat(lengthPrefix(ext), encodeFrame(done("next"))));
    expect(errors(out)).toEqual([
      { code: "protocol_error", fatal: false, message: expect.stringMatching(/undecodable/) },
    ]);
    expect(messages(out)).toEqual([done("next")]);
  });

  it("a frame that fails its schema is refused, naming the field", () => {
    const dec = new FrameDecoder(FromRunner);
    const bad = lengthPrefix(
      encode({ v: 1, type: "job.progress", job_id: "j", phase: "sampling", step: -1, total: 3 }),
    );
    const [r] = dec.push(bad);
    expect(r?.ok).toBe(false);
    expect(r?.ok === false && r.error.message).toMatch(/job\.progress.*step/);
  });

  it("each side validates with its own direction's schema", () => {
    const shutdown = encodeFrame({ v: 1, type: "runner.shutdown" });
    expect(new FrameDecoder(ToRunner).push(shutdown)[0]?.ok).toBe(true);
    expect(new FrameDecoder(FromRunner).push(shutdown)[0]?.ok).toBe(false);
  });

  it("an empty frame and trailing bytes after the message are refused", () => {
    const dec = new FrameDecoder(FromRunner);
    const trailing = lengthPrefix(concat(encode(done("a")), new Uint8Array([0xc0])));
    expect(errors(dec.push(concat(header(0), trailing))).map((e) => e.message)).toEqual([
      expect.stringMatching(/undecodable/),
      expect.stringMatching(/trailing bytes/),
    ]);
  });

  it("encodeFrame refuses to build a frame over the cap", () => {
    expect(() => encodeFrame({ v: 1, type: "x", data: new Uint8Array(64) }, 32)).toThrow(RangeError);
  });

  it("writeFrame and readFrames carry frames over a Node stream", async () => {
    const pipe = new PassThrough();
    const got: ToRunner[] = [];
    const errs: ProtocolError[] = [];
    const ended = new Promise<void>((resolve) => {
      readFrames(pipe, ToRunner, { message: (m) => got.push(m), error: (e) => errs.push(e), end: resolve });
    });
    await writeFrame(pipe, { v: 1, type: "job.cancel", job_id: "a" });
    await writeFrame(pipe, { v: 1, type: "runner.shutdown" });
    pipe.end();
    await ended;
    expect(got).toEqual([
      { v: 1, type: "job.cancel", job_id: "a" },
      { v: 1, type: "runner.shutdown" },
    ]);
    expect(errs).toEqual([]);
  });

  it("readFrames reports a truncated stream as an error, not an end", async () => {
    const pipe = new PassThrough();
    const error = new Promise<ProtocolError>((resolve) => {
      readFrames(pipe, ToRunner, {
        message: () => {},
        error: resolve,
        end: () => resolve({ code: "protocol_error", message: "ended cleanly", fatal: false }),
      });
    });
    pipe.end(encodeFrame({ v: 1, type: "runner.shutdown" }).subarray(0, 5));
    expect((await error).fatal).toBe(true);
  });

  it("writeFrame rejects once the stream is closed", async () => {
    const pipe = new PassThrough();
    pipe.destroy();
    await expect(writeFrame(pipe, { v: 1, type: "runner.shutdown" })).rejects.toThrow(/closed/);
  });
});
