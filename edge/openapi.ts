/**
 * `/openapi.json`, generated from the same zod schemas the routes validate with (zod's own JSON
 * Schema output, draft 2020-12, which OpenAPI 3.1 uses as its schema dialect).
 */
import { z } from "zod";
import { ErrorAnswer } from "../shared/api.ts";

export interface RouteDoc {
  method: "get" | "post" | "put" | "delete";
  /** OpenAPI path, `{param}` style. */
  path: string;
  summary: string;
  auth: "user" | "admin" | "agent" | "none";
  body?: z.ZodType;
  query?: z.ZodType;
  headers?: Record<string, string>;
  responses: Record<number, { description: string; schema?: z.ZodType }>;
}

const ERRORS: Record<number, string> = {
  400: "Invalid request; the message names the offending field",
  401: "Missing or invalid key",
  404: "Not found (also for another account's job)",
  413: "Body too large",
  429: "Rate limited or overloaded; see Retry-After",
};

function schemaOf(s: z.ZodType): unknown {
  return z.toJSONSchema(s, { io: "input", unrepresentable: "any" });
}

export function openApiDocument(routes: readonly RouteDoc[], version: string): unknown {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const params = [...r.path.matchAll(/\{(\w+)\}/g)].map((m) => ({
      name: m[1],
      in: "path",
      required: true,
      schema: { type: "string" },
    }));
    if (r.query) {
      const q = schemaOf(r.query) as { properties?: Record<string, unknown>; required?: string[] };
      for (const [name, schema] of Object.entries(q.properties ?? {})) {
        params.push({
          name,
          in: "query",
          required: q.required?.includes(name) ?? false,
          schema: schema as { type: string },
        });
      }
    }
    for (const [name, description] of Object.entries(r.headers ?? {})) {
      params.push({ name, in: "header", required: false, schema: { type: "string" }, description } as never);
    }
    const responses: Record<string, unknown> = {};
    for (const [status, res] of Object.entries(r.responses)) {
      responses[status] = res.schema
        ? { description: res.description, content: { "application/json": { schema: schemaOf(res.schema) } } }
        : { description: res.description };
    }
    for (const [status, description] of Object.entries(ERRORS)) {
      if (r.auth === "none" && status === "401") continue;
      responses[status] ??= { description, content: { "application/json": { schema: schemaOf(ErrorAnswer) } } };
    }
    (paths[r.path] ??= {})[r.method] = {
      summary: r.summary,
      ...(r.auth === "none" ? { security: [] } : { security: [{ [r.auth]: [] }] }),
      parameters: params,
      ...(r.body
        ? { requestBody: { required: true, content: { "application/json": { schema: schemaOf(r.body) } } } }
        : {}),
      responses,
    };
  }
  return {
    openapi: "3.1.0",
    info: { title: "Floodgate", version, description: "Generative-media jobs at launch-day scale." },
    components: {
      securitySchemes: {
        user: { type: "http", scheme: "bearer", description: "An account's API key (fgk_…)" },
        admin: { type: "http", scheme: "bearer", description: "The admin key" },
        agent: { type: "http", scheme: "bearer", description: "An agent token (JWT)" },
      },
    },
    paths,
  };
}
