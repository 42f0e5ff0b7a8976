/**
 * Parsing at the HTTP boundary: bodies must be JSON (415 otherwise), within the size limit
 * (413, enforced by the body-limit middleware), and pass their zod schema (400 naming the
 * field). Nothing is cast: handlers get the parsed value or the request ends here.
 */
import type { Context } from "hono";
import type { z } from "zod";
import { FloodgateError } from "../shared/errors.ts";
import { describeZodError } from "./errors.ts";

export async function readJson<S extends z.ZodType>(c: Context, schema: S): Promise<z.infer<S>> {
  const type = c.req.header("content-type") ?? "";
  if (!/^application\/(.+\+)?json\b/i.test(type)) {
    throw new FloodgateError("unsupported_media_type", "send the body as JSON with Content-Type: application/json");
  }
  let raw: unknown;
  try {
    raw = JSON.parse(await c.req.text());
  } catch {
    throw new FloodgateError("invalid_body", "the body is not valid JSON");
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new FloodgateError("invalid_body", describeZodError(parsed.error));
  return parsed.data;
}

export function readQuery<S extends z.ZodType>(c: Context, schema: S): z.infer<S> {
  const parsed = schema.safeParse(c.req.query());
  if (!parsed.success) throw new FloodgateError("invalid_query", describeZodError(parsed.error, "query"));
  return parsed.data;
}

export function readParam<S extends z.ZodType>(
  c: Context,
  name: string,
  schema: S,
  code: "not_found" | "model_not_found" | "invalid_query" = "not_found",
): z.infer<S> {
  const parsed = schema.safeParse(c.req.param(name));
  if (!parsed.success) throw new FloodgateError(code, `no ${name} ${JSON.stringify(c.req.param(name))}`);
  return parsed.data;
}
