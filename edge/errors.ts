/**
 * The one place errors become HTTP answers: every failure, expected or not, leaves as
 * `{"error":{"code","message"}}` with the status from shared/errors.ts. Unexpected errors are
 * logged with the request id and answered as `internal` without their details.
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { z } from "zod";
import { ERROR_CODES, FloodgateError, type ErrorCode, type Failure } from "../shared/errors.ts";

export function errorResponse(c: Context, err: unknown): Response {
  let e: FloodgateError;
  if (err instanceof FloodgateError) e = err;
  else if (err instanceof HTTPException)
    e = new FloodgateError(codeForStatus(err.status), err.message || "request refused");
  else {
    console.error(
      JSON.stringify({
        level: "error",
        request_id: c.get("requestId" as never),
        error: String(err),
        stack: (err as Error)?.stack,
      }),
    );
    e = new FloodgateError("internal", "internal error; retry, and report the X-Request-Id if it persists");
  }
  const headers: Record<string, string> = {};
  if (e.retryAfterS !== undefined) headers["Retry-After"] = String(Math.max(1, Math.ceil(e.retryAfterS)));
  return c.json(e.toBody(), e.status as 400, headers);
}

function codeForStatus(status: number): ErrorCode {
  const found = (Object.entries(ERROR_CODES) as [ErrorCode, number][]).find(([, s]) => s === status);
  return found ? found[0] : status >= 500 ? "internal" : "bad_request";
}

/** Turns an RPC failure value into the thrown error the handler renders. */
export function raise(f: Failure): never {
  throw new FloodgateError(f.code, f.message, f.retry_after_s);
}

/** Names the first offending field of a zod error: `input.prompt: expected string`. */
export function describeZodError(err: z.ZodError, root = "body"): string {
  const issue = err.issues[0];
  if (!issue) return `${root} is invalid`;
  const path = [root, ...issue.path.map(String)].join(".");
  return `${path}: ${issue.message}`;
}
