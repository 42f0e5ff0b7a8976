/**
 * Parsing at the HTTP boundary: bodies must be JSON (415 otherwise), within the size limit
 * (413, enforced by the body-limit middleware) and the nesting limit, have no `__proto__` key,
 * and pass their zod schema (400 naming the field). Nothing is cast: handlers get the parsed
 * value or the request ends here. Path parameters, queries and headers are checked by the
 * routes' own validators (edge/openapi.ts).
 */
import type { Context } from "hono";
import type { z } from "zod";
import { MAX_BODY_DEPTH } from "../shared/api.ts";
import { FloodgateError } from "../shared/errors.ts";
import { describeZodError } from "./errors.ts";

/** A character that is half of a surrogate pair, alone: not well-formed Unicode. */
const LONE_SURROGATE = /\p{Cs}/u;

/** Objects in JSON bodies may not have this key: parsers make it a field, most code the prototype. */
const PROTO_KEY = { reserved: ["__proto__"], why: "a __proto__ key is not accepted in JSON bodies" };

/**
 * The first rule a parsed JSON value breaks, named with its path under `root`: nesting deeper
 * than `maxDepth` levels of objects and arrays, a key among `keys.reserved` (refused saying
 * `keys.why`), and with `keys.wellFormed`, a key that is not well-formed Unicode. Walks without
 * recursion, so no nesting can exhaust the stack; a scalar is depth 0, `{}` and `[]` depth 1.
 */
export function jsonProblem(
  value: unknown,
  root: string,
  maxDepth: number,
  keys: { reserved: readonly string[]; why: string; wellFormed?: boolean },
): string | undefined {
  const stack: { v: unknown; depth: number; path: string }[] = [{ v: value, depth: 1, path: root }];
  for (let top = stack.pop(); top !== undefined; top = stack.pop()) {
    const { v, depth, path } = top;
    if (v === null || typeof v !== "object") continue;
    if (depth > maxDepth) return `${root}: nested deeper than ${maxDepth} levels`;
    if (Array.isArray(v)) {
      v.forEach((x, i) => stack.push({ v: x, depth: depth + 1, path: `${path}.${i}` }));
      continue;
    }
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (keys.reserved.includes(k)) return `${path}: the key ${JSON.stringify(k)} is refused: ${keys.why}`;
      if (keys.wellFormed && LONE_SURROGATE.test(k))
        return `${path}: a key is not well-formed Unicode (a lone surrogate)`;
      stack.push({ v: x, depth: depth + 1, path: `${path}.${k}` });
    }
  }
  return undefined;
}

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
  const unfit = jsonProblem(raw, "body", MAX_BODY_DEPTH, PROTO_KEY);
  if (unfit) throw new FloodgateError("invalid_body", unfit);
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new FloodgateError("invalid_body", describeZodError(parsed.error));
  return parsed.data;
}
