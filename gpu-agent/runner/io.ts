/**
 * Runner stdio framing: a 4-byte big-endian length, then one msgpack map (shared/runner.ts).
 * Both ends use it: the agent's {@link RunnerHost} reads `FromRunner` frames from a runner's
 * stdout, a JavaScript runner's runtime reads `ToRunner` frames from its stdin.
 *
 * A bad frame is a value ({@link ProtocolError}), never a throw: the length is checked against
 * `MAX_RUNNER_FRAME` as soon as its 4 bytes are in, before any of the body is buffered; each
 * body goes through the hardened decoder (shared/codec.ts) and then its zod schema. An
 * oversized length or a stream that ends inside a frame leaves no way to find the next frame,
 * so those are `fatal`; a body that fails to decode or validate is skipped and reading goes on.
 */
import type { Readable, Writable } from "node:stream";
import type { z } from "zod";
import { CodecError, decode, encode, type Decoded } from "../../shared/codec.ts";
import { MAX_RUNNER_FRAME, lengthPrefix } from "../../shared/runner.ts";

/** A frame that broke the protocol. `fatal`: the byte stream can no longer be framed. */
export interface ProtocolError {
  code: "protocol_error";
  message: string;
  fatal: boolean;
}

/** One frame read: a message that passed its schema, or why it did not. */
export type FrameResult<T> = Decoded<T, { error: ProtocolError }>;

function protocolError(message: string, fatal: boolean): ProtocolError {
  return { code: "protocol_error", message, fatal };
}

/** Renders a zod failure as one line naming the offending fields. */
function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => `${i.path.length > 0 ? i.path.join(".") : "(root)"}: ${i.message}`)
    .join("; ");
}

/**
 * Decodes and validates one frame body (the bytes after the length prefix).
 *
 * @example
 * const r = parseBody(FromRunner, body);
 * if (!r.ok) console.error(r.error.message);
 */
export function parseBody<T>(schema: z.ZodType<T>, body: Uint8Array): FrameResult<T> {
  let value: unknown;
  try {
    value = decode(body);
  } catch (err) {
    const message = err instanceof CodecError ? err.message : String(err);
    return { ok: false, error: protocolError(`undecodable frame: ${message}`, false) };
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const type =
      value !== null && typeof value === "object" && "type" in value && typeof value.type === "string"
        ? ` ${JSON.stringify(value.type).slice(0, 80)}`
        : "";
    return { ok: false, error: protocolError(`frame${type} fails its schema: ${describeIssues(parsed.error)}`, false) };
  }
  return { ok: true, msg: parsed.data };
}

/**
 * Incremental frame decoder: feed it chunks as they arrive (any split: partial headers, partial
 * bodies, many frames per chunk) and get the complete frames out. After a fatal error it
 * ignores everything.
 *
 * @example
 * const dec = new FrameDecoder(FromRunner);
 * stdout.on("data", (chunk) => { for (const r of dec.push(chunk)) handle(r); });
 * stdout.on("end", () => { const e = dec.end(); if (e) fail(e); });
 */
export class FrameDecoder<T> {
  readonly #schema: z.ZodType<T>;
  readonly #maxFrame: number;
  #chunks: Uint8Array[] = [];
  #buffered = 0; // bytes held in #chunks
  #need = -1; // body length of the frame being read; -1 while its header is incomplete
  #failed = false;

  constructor(schema: z.ZodType<T>, maxFrame: number = MAX_RUNNER_FRAME) {
    this.#schema = schema;
    this.#maxFrame = maxFrame;
  }

  /** Whether a fatal error stopped this decoder. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Adds bytes; returns every frame they complete, in order. */
  push(chunk: Uint8Array): FrameResult<T>[] {
    const out: FrameResult<T>[] = [];
    if (this.#failed || chunk.length === 0) return out;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    for (;;) {
      if (this.#need < 0) {
        if (this.#buffered < 4) break;
        const header = this.#take(4);
        const length = new DataView(header.buffer, header.byteOffset, 4).getUint32(0, false);
        if (length > this.#maxFrame) {
          // Checked before buffering the body: a hostile length cannot make us allocate it.
          this.#fail();
          out.push({
            ok: false,
            error: protocolError(`frame length ${length} is over the ${this.#maxFrame}-byte cap`, true),
          });
          break;
        }
        this.#need = length;
      }
      if (this.#buffered < this.#need) break;
      const body = this.#take(this.#need);
      this.#need = -1;
      out.push(parseBody(this.#schema, body));
    }
    return out;
  }

  /** Call when the stream ends: a protocol error if it ended inside a frame. */
  end(): ProtocolError | undefined {
    if (this.#failed) return undefined;
    const inFrame = this.#need >= 0 || this.#buffered > 0;
    if (!inFrame) return undefined;
    const message =
      this.#need >= 0
        ? `stream ended inside a frame (${this.#buffered} of ${this.#need} body bytes)`
        : `stream ended inside a frame header (${this.#buffered} of 4 bytes)`;
    this.#fail();
    return protocolError(message, true);
  }

  #fail(): void {
    this.#failed = true;
    this.#chunks = [];
    this.#buffered = 0;
  }

  /** Removes the first n buffered bytes (n ≤ #buffered), copying only when they span chunks. */
  #take(n: number): Uint8Array {
    const first = this.#chunks[0];
    if (n === 0) return new Uint8Array(0);
    if (first !== undefined && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      this.#buffered -= n;
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const c = this.#chunks[0]!;
      const k = Math.min(c.length, n - filled);
      out.set(c.subarray(0, k), filled);
      filled += k;
      if (k === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    this.#buffered -= n;
    return out;
  }
}

/** What {@link readFrames} reports. */
export interface FrameHandlers<T> {
  /** A frame that passed its schema. */
  message(message: T): void;
  /** A bad frame; after a `fatal` one nothing more is reported. */
  error(error: ProtocolError): void;
  /** The stream ended on a frame boundary (not called after a fatal error). */
  end?(): void;
  /**
   * The stream ended inside a frame. Given, it is called instead of `error`: a writer that
   * died mid-frame (a crash) is told apart from one that wrote garbage.
   */
  truncated?(error: ProtocolError): void;
}

/**
 * Reads frames from a Node stream until it ends, reporting each as it completes. Returns a
 * function that detaches the listeners.
 *
 * @example
 * readFrames(child.stdout, FromRunner, { message: onMessage, error: (e) => kill(e.message) });
 */
export function readFrames<T>(
  stream: Readable,
  schema: z.ZodType<T>,
  handlers: FrameHandlers<T>,
  maxFrame: number = MAX_RUNNER_FRAME,
): () => void {
  const decoder = new FrameDecoder(schema, maxFrame);
  const onData = (chunk: Buffer | string): void => {
    const bytes = typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk;
    for (const r of decoder.push(bytes)) {
      if (r.ok) handlers.message(r.msg);
      else handlers.error(r.error);
    }
  };
  const onEnd = (): void => {
    if (decoder.failed) return;
    const err = decoder.end();
    if (err === undefined) handlers.end?.();
    else if (handlers.truncated) handlers.truncated(err);
    else handlers.error(err);
  };
  stream.on("data", onData);
  stream.on("end", onEnd);
  return () => {
    stream.off("data", onData);
    stream.off("end", onEnd);
  };
}

/**
 * Encodes one message as a length-prefixed frame. A message whose body would be over the cap
 * is a bug of the sender and throws a RangeError.
 */
export function encodeFrame(message: unknown, maxFrame: number = MAX_RUNNER_FRAME): Uint8Array {
  const body = encode(message);
  if (body.length > maxFrame) {
    throw new RangeError(`frame of ${body.length} bytes is over the ${maxFrame}-byte cap`);
  }
  return lengthPrefix(body);
}

/**
 * Writes one frame; resolves once the stream has taken it (after `drain` when its buffer is
 * full), so a sender of many large frames never queues unbounded memory. Rejects when the
 * stream errors or is already destroyed (the peer is gone).
 */
export function writeFrame(stream: Writable, message: unknown): Promise<void> {
  const frame = encodeFrame(message);
  return new Promise((resolve, reject) => {
    if (stream.destroyed || stream.writableEnded) {
      reject(new Error("stream closed"));
      return;
    }
    const ok = stream.write(frame, (err) => {
      if (err) reject(err);
    });
    if (ok) {
      resolve();
      return;
    }
    const cleanup = (): void => {
      stream.off("drain", onDrain);
      stream.off("close", onClose);
    };
    const onDrain = (): void => {
      cleanup();
      resolve();
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error("stream closed"));
    };
    stream.on("drain", onDrain);
    stream.on("close", onClose);
  });
}
