/**
 * Output files and previews: served through signed, expiring URLs. A URL is signed afresh on
 * every read of its job (shared/signing.ts, HMAC-SHA256 with FILE_SIGNING_KEY), so sharing one
 * gives access for its lifetime only; a tampered or expired signature is 403. URLs start with the
 * configured public origin (PUBLIC_URL), never the request's Host.
 *
 * Files are what agents uploaded, served from the API's own origin, so no answer may let a
 * browser run them there: every answer says `nosniff` and a sandboxing Content-Security-Policy,
 * and only images and video are served inline; everything else is an attachment.
 */
import type { MiddlewareHandler } from "hono";
import { z } from "zod";
import { FloodgateError } from "../shared/errors.ts";
import { INLINE_MEDIA_TYPES, mediaType } from "../shared/outputs.ts";
import { publicOrigin, signedOutputUrl, verify } from "../shared/signing.ts";
import { actor, type JobActor } from "../mesh/index.ts";
import type { AppEnv } from "./env.ts";
import { apiRoute, routesApp } from "./openapi.ts";

/** Where output files are served: every output key starts with `outputs/` (shared/outputs.ts). */
export const OUTPUT_FILES_PREFIX = "/v1/files/outputs/";

export function fileSecret(env: Env): string {
  if (!env.FILE_SIGNING_KEY) throw new FloodgateError("unavailable", "the edge has no FILE_SIGNING_KEY secret");
  return env.FILE_SIGNING_KEY;
}

/** A signed URL for an output key, at the edge's public origin. */
export async function outputUrl(env: Env, key: string): Promise<string> {
  return await signedOutputUrl(fileSecret(env), publicOrigin(env.PUBLIC_URL), key);
}

/**
 * Headers on every file and preview answer, errors included: no type sniffing, and a policy
 * that lets nothing load or run (`sandbox` also gives the document an opaque origin).
 */
export const FILE_SAFETY_HEADERS: Readonly<Record<string, string>> = {
  "x-content-type-options": "nosniff",
  "content-security-policy": "default-src 'none'; sandbox",
};

/** `inline` for media a browser only displays, `attachment` for everything else. */
function disposition(contentType: string | undefined, name: string): string {
  const kind = contentType !== undefined && INLINE_MEDIA_TYPES.has(mediaType(contentType)) ? "inline" : "attachment";
  return `${kind}; filename="${name}"`;
}

async function checkSigned(
  env: Env,
  message: (exp: number) => string,
  expText: string | undefined,
  sig: string | undefined,
): Promise<void> {
  const exp = Number(expText);
  if (!Number.isInteger(exp) || !(await verify(fileSecret(env), message(exp), sig ?? ""))) {
    throw new FloodgateError("forbidden", "the URL's signature is not valid; read the job again for a fresh URL");
  }
  if (exp < Date.now() / 1000)
    throw new FloodgateError("forbidden", "the URL has expired; read the job again for a fresh URL");
}

const safe: MiddlewareHandler<AppEnv> = async (c, next) => {
  await next();
  for (const [k, v] of Object.entries(FILE_SAFETY_HEADERS)) c.res.headers.set(k, v);
};

const readFile = apiRoute("none", {
  method: "get",
  path: "/v1/files/outputs/{path}",
  summary:
    "An output file, by the signed URL a job read returns (?exp=&sig=); `path` is the rest of its key, slashes included",
  request: { params: z.object({ path: z.string() }) },
  responses: {
    200: { description: "The file", content: { "*/*": { schema: { type: "string", format: "binary" } } } },
    403: { description: "Bad or expired signature" },
  },
});

const readPreview = apiRoute("none", {
  method: "get",
  path: "/v1/jobs/{id}/preview",
  summary: "A running job's latest preview frame, by the signed URL its events carry (?exp=&sig=)",
  request: { params: z.object({ id: z.string() }) },
  responses: {
    200: { description: "The image", content: { "image/*": { schema: { type: "string", format: "binary" } } } },
    403: { description: "Bad or expired signature" },
  },
});

export const fileRoutes = routesApp();
fileRoutes.use(`${OUTPUT_FILES_PREFIX}*`, safe);
fileRoutes.use("/v1/jobs/:id/preview", safe);
// An output key is the rest of the path, slashes included: a wildcard, which an OpenAPI path
// template cannot express, so this route is routed as one and declared to the document apart.
fileRoutes.openAPIRegistry.registerPath(readFile);
fileRoutes.get(`${OUTPUT_FILES_PREFIX}*`, async (c) => {
  let key: string;
  try {
    key = decodeURIComponent(new URL(c.req.url).pathname.slice("/v1/files/".length));
  } catch {
    throw new FloodgateError("not_found", "no such output");
  }
  await checkSigned(c.env, (exp) => `file\n${key}\n${exp}`, c.req.query("exp"), c.req.query("sig"));
  const object = await c.env.OUTPUTS.get(key);
  if (!object) throw new FloodgateError("not_found", "no such output (deleted, or past retention)");
  const headers = new Headers();
  object.writeHttpMetadata(headers);
  // Output names are [a-z0-9._-], safe in a quoted filename.
  headers.set(
    "content-disposition",
    disposition(object.httpMetadata?.contentType, key.slice(key.lastIndexOf("/") + 1)),
  );
  headers.set("etag", object.httpEtag);
  headers.set("content-length", String(object.size));
  headers.set("cache-control", "private, max-age=3600");
  return new Response(object.body, { headers });
});
fileRoutes.openapi(readPreview, async (c) => {
  const { id } = c.req.valid("param");
  await checkSigned(c.env, (exp) => `preview\n${id}\n${exp}`, c.req.query("exp"), c.req.query("sig"));
  const preview = await actor<JobActor>(c.env.JOB, id).previewBytes();
  if (!preview) throw new FloodgateError("not_found", "no preview for this job right now");
  return new Response(preview.data, {
    headers: {
      "content-type": preview.content_type,
      "content-disposition": disposition(preview.content_type, `${id}-preview`),
      "cache-control": "no-store",
    },
  });
});
