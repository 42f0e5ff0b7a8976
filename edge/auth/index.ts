/**
 * Authentication middleware. User keys name their account, so a key is checked by that one
 * account's actor — no global lookup — and the answer is cached in the isolate for
 * `AUTH_CACHE_S` (a revoked key stops working within that time). The admin key is a Worker
 * secret compared in constant time.
 */
import type { MiddlewareHandler } from "hono";
import { FloodgateError } from "../../shared/errors.ts";
import { readStreamToken } from "../../shared/signing.ts";
import { hashKey, parseApiKey, timingSafeEqual } from "../../shared/keys.ts";
import { actor, type AccountActor, type Principal } from "../../mesh/index.ts";
import type { AppEnv } from "../env.ts";
import { checkRateLimit } from "../ratelimit.ts";

interface CacheEntry {
  principal: Principal | null;
  until: number;
}

/** Bounded so a flood of distinct bad keys cannot grow the isolate's memory without end. */
const MAX_CACHED = 10_000;
const cache = new Map<string, CacheEntry>();

function bearer(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return m?.[1];
}

/** Forgets cached answers for an account (after this isolate revoked one of its keys). */
export function forgetAccount(accountId: string): void {
  for (const [k, v] of cache) if (v.principal?.account_id === accountId) cache.delete(k);
}

export async function authenticateKey(env: Env, key: string): Promise<Principal | null> {
  const parsed = parseApiKey(key);
  if (!parsed) return null;
  const hash = await hashKey(key);
  const now = Date.now();
  const hit = cache.get(hash);
  if (hit && hit.until > now) return hit.principal;
  const principal = await actor<AccountActor>(env.ACCOUNT, parsed.accountId).authenticate(parsed.keyId, hash);
  if (cache.size >= MAX_CACHED) cache.delete(cache.keys().next().value as string);
  cache.set(hash, { principal, until: now + Number(env.AUTH_CACHE_S) * 1000 });
  return principal;
}

/** Requires a user API key; sets `principal` and applies the account's rate limit. */
export const userAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
  const key = bearer(c.req.header("authorization"));
  if (!key) throw new FloodgateError("unauthorized", "send your API key as Authorization: Bearer <key>");
  const principal = await authenticateKey(c.env, key);
  if (!principal) throw new FloodgateError("unauthorized", "the API key is not valid (unknown, malformed or revoked)");
  await checkRateLimit(c.env, principal);
  c.set("principal", principal);
  await next();
};

const EVENTS_PATH = /^\/v1\/jobs\/(job_[0-9a-z]{30})\/events$/;
const PREVIEW_PATH = /^\/v1\/jobs\/[^/]+\/preview$/;

/**
 * Authentication for `/v1/jobs/*`: a user key, except a job's events, which also take a stream
 * token for that one job (`?token=`, browsers cannot set headers on EventSource or WebSocket),
 * and a preview, whose URL is signed instead.
 */
export const jobsAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (PREVIEW_PATH.test(c.req.path)) return await next();
  const token = c.req.query("token");
  const events = EVENTS_PATH.exec(c.req.path);
  if (events && token !== undefined) {
    const claims = await readStreamToken(c.env.FILE_SIGNING_KEY ?? "", token);
    if (!claims || claims.jobId !== events[1])
      throw new FloodgateError("unauthorized", "the stream token is not valid for this job, or has expired");
    c.set("principal", { account_id: claims.accountId, key_id: "stream-token", tier: "", rate_limit: null });
    return await next();
  }
  return await userAuth(c, next);
};

/** Requires the admin key. */
export const adminAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
  const key = bearer(c.req.header("authorization"));
  if (!key) throw new FloodgateError("unauthorized", "send the admin key as Authorization: Bearer <key>");
  if (!c.env.ADMIN_KEY || !timingSafeEqual(key, c.env.ADMIN_KEY)) {
    throw new FloodgateError(parseApiKey(key) ? "forbidden" : "unauthorized", "admin routes need the admin key");
  }
  await next();
};
