/**
 * Output files: served from R2 through signed, expiring URLs. A URL is signed afresh on every
 * read of its job (HMAC-SHA256 over the key and the expiry with FILE_SIGNING_KEY), so sharing
 * one gives access for its lifetime only; a tampered or expired signature is 403.
 */
import { Hono } from "hono";
import { FloodgateError } from "../shared/errors.ts";
import { timingSafeEqual } from "../shared/keys.ts";
import type { AppEnv } from "./env.ts";
import type { RouteDoc } from "./openapi.ts";

/** Lifetime of a signed output URL (s). */
export const URL_TTL_S = 3600;

const keys = new Map<string, CryptoKey>();

async function hmacKey(env: Env): Promise<CryptoKey> {
  const secret = env.FILE_SIGNING_KEY;
  if (!secret) throw new FloodgateError("unavailable", "the edge has no FILE_SIGNING_KEY secret");
  let k = keys.get(secret);
  if (!k) {
    k = await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    keys.set(secret, k);
  }
  return k;
}

function b64url(bytes: ArrayBuffer): string {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");
}

export async function signature(env: Env, key: string, exp: number): Promise<string> {
  return b64url(await crypto.subtle.sign("HMAC", await hmacKey(env), new TextEncoder().encode(`${key}\n${exp}`)));
}

/** A signed URL for an output key, valid for `ttlS` seconds. */
export async function outputUrl(env: Env, origin: string, key: string, ttlS = URL_TTL_S): Promise<string> {
  const exp = Math.floor(Date.now() / 1000) + ttlS;
  return `${origin}/v1/files/${key}?exp=${exp}&sig=${await signature(env, key, exp)}`;
}

export const fileRoutes = new Hono<AppEnv>().get("/v1/files/*", async (c) => {
  const key = decodeURIComponent(new URL(c.req.url).pathname.slice("/v1/files/".length));
  const exp = Number(c.req.query("exp"));
  const sig = c.req.query("sig") ?? "";
  if (!Number.isInteger(exp) || !timingSafeEqual(sig, await signature(c.env, key, exp))) {
    throw new FloodgateError("forbidden", "the URL's signature is not valid; read the job again for a fresh URL");
  }
  if (exp < Date.now() / 1000)
    throw new FloodgateError("forbidden", "the URL has expired; read the job again for a fresh URL");
  const object = await c.env.OUTPUTS.get(key);
  if (!object) throw new FloodgateError("not_found", "no such output (deleted, or past retention)");
  const headers = new Headers();
  object.writeHttpMetadata(headers);
  headers.set("etag", object.httpEtag);
  headers.set("content-length", String(object.size));
  headers.set("cache-control", "private, max-age=3600");
  return new Response(object.body, { headers });
});

export const fileDocs: RouteDoc[] = [
  {
    method: "get",
    path: "/v1/files/{key}",
    summary: "An output file, by the signed URL a job read returns (?exp=&sig=)",
    auth: "none",
    responses: { 200: { description: "The file" }, 403: { description: "Bad or expired signature" } },
  },
];
