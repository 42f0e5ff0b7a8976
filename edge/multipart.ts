/**
 * What the edge's two multipart uploads share, agents' outputs (edge/routes/uploads.ts) and
 * accounts' input files (edge/routes/inputs.ts): the part number and length rules, R2's
 * refusals as this API's errors, and hashing what R2 stored.
 */
import type { Context } from "hono";
import { FloodgateError } from "../shared/errors.ts";
import { MAX_UPLOAD_PARTS, partCount, partLength } from "../shared/outputs.ts";

/** A part number from a path: 1–10,000, or `bad_request`. */
export function partNumber(text: string): number {
  const n = Number(text);
  if (!/^\d{1,5}$/.test(text) || !Number.isInteger(n) || n < 1 || n > MAX_UPLOAD_PARTS)
    throw new FloodgateError("bad_request", `part numbers are 1–${MAX_UPLOAD_PARTS}`);
  return n;
}

/**
 * Reads part `n` of an upload announced as `size` bytes in parts of `partBytes`: every part's
 * length follows from the announced size, so nothing past it is stored (`payload_too_large`)
 * and a part of another length is refused before storage (`invalid_upload`).
 */
export async function readPart(c: Context, size: number, partBytes: number, n: number): Promise<ArrayBuffer> {
  const parts = partCount(size, partBytes);
  const expected = partLength(size, partBytes, n);
  const over = (): FloodgateError =>
    new FloodgateError(
      "payload_too_large",
      `part ${n} goes past the ${size} bytes announced at the start (${parts} parts of ${partBytes} bytes, the last ${partLength(size, partBytes, parts)})`,
    );
  if (n > parts || Number(c.req.header("content-length") ?? 0) > expected) throw over();
  const bytes = await c.req.arrayBuffer();
  if (bytes.byteLength > expected) throw over();
  if (bytes.byteLength < expected) {
    throw new FloodgateError(
      "invalid_upload",
      `part ${n} is ${bytes.byteLength} bytes; an upload of ${size} bytes in parts of ${partBytes} needs ${expected}`,
    );
  }
  return bytes;
}

/**
 * Runs a multipart call on R2, answering what the caller got wrong as a 4xx: an upload that is
 * no longer there (completed or aborted) is `notFound()`, parts that do not match what was
 * uploaded `invalid_upload`.
 */
export async function storage<T>(call: () => Promise<T>, notFound: () => FloodgateError): Promise<T> {
  try {
    return await call();
  } catch (err) {
    const code = /\((\d{5})\)\s*$/.exec(String((err as Error)?.message))?.[1];
    // R2's codes: 10024 no such upload; 10025 a part not found, 10011 a part too small, 10048
    // parts that do not form an upload (unequal sizes).
    if (code === "10024") throw notFound();
    if (code === "10025" || code === "10011" || code === "10048") {
      throw new FloodgateError("invalid_upload", `storage refused the parts: ${(err as Error).message}`);
    }
    throw err;
  }
}

/** Hex SHA-256 of an object's bytes as stored, read back through workerd's DigestStream. */
export async function storedSha256(bucket: R2Bucket, key: string): Promise<string | undefined> {
  const object = await bucket.get(key);
  if (!object) return undefined;
  const digest = new crypto.DigestStream("SHA-256");
  await object.body.pipeTo(digest);
  return [...new Uint8Array(await digest.digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
