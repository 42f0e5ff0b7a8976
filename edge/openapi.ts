/**
 * How the edge's routes are declared, validated and documented, with @hono/zod-openapi: each
 * route file builds its routes on {@link routesApp}, declares each route once with
 * {@link apiRoute} beside its handler, and edge/app.ts serves `/openapi.json` as the library
 * generates it from those declarations (OpenAPI 3.1, whose schema dialect is JSON Schema draft
 * 2020-12).
 *
 * Path parameters, queries and headers a route declares are checked by the library's validators,
 * and {@link refuse} turns their failures into this API's error answers, the same codes and
 * messages the handlers gave when they checked them themselves. JSON bodies are declared for the
 * document only ({@link jsonBody}) and read by `readJson` (edge/validate.ts) in the handler: it
 * owns the body rules (which content types are JSON, the nesting limit, no `__proto__` key) and
 * runs after the handler's own lookups, so an unknown model is 404 before its body is read.
 *
 * Descriptions go on schemas with zod's own `.describe()`, never the library's `.openapi()`:
 * shared/'s schemas are built before the library extends zod, and zod copies methods onto a
 * schema when it is made.
 */
import { createRoute, OpenAPIHono, type RouteConfig } from "@hono/zod-openapi";
import type { Context, ValidationTargets } from "hono";
import { z, type ZodError } from "zod";
import { ErrorAnswer } from "../shared/api.ts";
import { assertExhaustive, FloodgateError } from "../shared/errors.ts";
import type { AppEnv } from "./env.ts";
import { describeZodError } from "./errors.ts";

/** Who may call a route: the security scheme of its bearer credential, or anyone. */
export type Auth = "user" | "admin" | "agent" | "provisioner" | "none";

/** The document's security schemes, one per kind of bearer credential. */
export const SECURITY_SCHEMES = {
  user: { type: "http", scheme: "bearer", description: "An account's API key (fgk_…)" },
  admin: { type: "http", scheme: "bearer", description: "The admin key" },
  agent: { type: "http", scheme: "bearer", description: "An agent token (JWT)" },
  provisioner: { type: "http", scheme: "bearer", description: "A provisioner token (JWT)" },
} as const;

/** The refusals any route may answer, each documented with {@link ErrorAnswer}. */
const REFUSALS: Readonly<Record<number, string>> = {
  400: "Invalid request; the message names the offending field",
  401: "Missing or invalid key",
  404: "Not found (also for another account's job)",
  413: "Body too large",
  429: "Rate limited or overloaded; see Retry-After",
};

const ERROR_CONTENT = { "application/json": { schema: ErrorAnswer } };

type Responses = RouteConfig["responses"];
type RequestBody = NonNullable<NonNullable<RouteConfig["request"]>["body"]>;
type BodySchema = Exclude<Extract<RequestBody["content"][string], { schema?: unknown }>["schema"], z.ZodType>;

/** A JSON answer: its description and the zod schema of its body. */
export function json<S extends z.ZodType>(description: string, schema: S) {
  return { description, content: { "application/json": { schema } } };
}

/**
 * A JSON request body, for the document: the body's zod schema as zod's own JSON Schema of its
 * input. A plain schema object rather than the zod schema, so the library adds no body validator
 * of its own: the handler reads the body with `readJson(c, schema)`.
 */
export function jsonBody(schema: z.ZodType): RequestBody {
  const doc = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" });
  // zod's type of a JSON Schema allows boolean subschemas, which OpenAPI's type of one leaves out.
  return { required: true, content: { "application/json": { schema: doc as BodySchema } } };
}

/**
 * A query schema that reads the first value of a repeated parameter, as `c.req.query()` does
 * (Hono's validator hands repeated parameters over as arrays). The document lists `schema`'s
 * fields, since the library documents a preprocessed object by its output.
 */
export function firstValues<S extends z.ZodObject>(schema: S) {
  return z
    .transform((q: unknown) =>
      typeof q === "object" && q !== null
        ? Object.fromEntries(Object.entries(q).map(([k, v]) => [k, Array.isArray(v) ? v[0] : v]))
        : q,
    )
    .pipe(schema);
}

/**
 * `createRoute` with this API's conventions: `auth` sets the route's security (`none`: open to
 * all), and every route documents the shared refusals (400, 401 unless open, 404, 413, 429) and
 * each error status it declares itself with the {@link ErrorAnswer} schema.
 *
 * @example
 * const cancel = apiRoute("user", {
 *   method: "post",
 *   path: "/v1/jobs/{id}/cancel",
 *   summary: "Cancel a queued or running job (idempotent)",
 *   request: { params: z.object({ id: z.string() }) },
 *   responses: { 200: json("The job after cancelling", JobView) },
 * });
 * jobRoutes.openapi(cancel, async (c) => …);
 */
export function apiRoute<const P extends string, const R extends Omit<RouteConfig, "path" | "security"> & { path: P }>(
  auth: Auth,
  config: R,
) {
  const responses: Responses = {};
  for (const [status, res] of Object.entries(config.responses as Responses)) {
    responses[status] =
      Number(status) >= 400 && !("$ref" in res) && !res.content ? { ...res, content: ERROR_CONTENT } : res;
  }
  for (const [status, description] of Object.entries(REFUSALS)) {
    if (auth === "none" && status === "401") continue;
    responses[status] ??= { description, content: ERROR_CONTENT };
  }
  return createRoute({
    ...config,
    security: auth === "none" ? [] : [{ [auth]: [] }],
    // Typed as declared: the added refusals are thrown, never returned by a handler.
    responses: responses as R["responses"],
  });
}

/**
 * The library's validation hook, less the validated value it never reads (so a route's input
 * types are inferred from the route alone).
 */
type Refusal = (
  result: { target: keyof ValidationTargets } & ({ success: true } | { success: false; error: ZodError }),
  c: Context<AppEnv>,
) => undefined;

/** The codes a path parameter that fails its schema may be refused with. */
type ParamCode = "not_found" | "model_not_found" | "version_not_found" | "invalid_query";

/**
 * The validation hook: a value that fails its route's schema becomes this API's error answer. A
 * path parameter is refused as `no <name> "<value>"` with `paramCode` (a malformed id names
 * nothing: 404 by default), a query as `invalid_query`, a header as `bad_request`, each naming
 * the first offending field as {@link describeZodError} does.
 */
export function refuse(paramCode: ParamCode = "not_found"): Refusal {
  return (result, c) => {
    if (result.success) return undefined;
    const { error, target } = result;
    switch (target) {
      case "param": {
        const name = String(error.issues[0]?.path[0] ?? "");
        throw new FloodgateError(paramCode, `no ${name} ${JSON.stringify(c.req.param(name))}`);
      }
      case "query":
        throw new FloodgateError("invalid_query", describeZodError(error, "query"));
      case "json":
      case "form":
        throw new FloodgateError("invalid_body", describeZodError(error));
      case "header":
      case "cookie":
        throw new FloodgateError("bad_request", describeZodError(error, target));
      default:
        return assertExhaustive(target);
    }
  };
}

/**
 * A router whose routes are declared with {@link apiRoute}: mounted with `app.route`, its
 * declarations join the app's document.
 */
export function routesApp(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({ defaultHook: refuse() });
}
