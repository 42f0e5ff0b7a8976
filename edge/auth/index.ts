/**
 * Authentication middleware. User keys name their account and carry a MAC by the Worker's
 * `KEY_SIGNING_KEY`, so a key the edge did not mint is refused here, before any actor is asked
 * (or created); a minted key is checked by its one account's actor — no global lookup — and the
 * answer is cached in the isolate for `AUTH_CACHE_S` (a revoked key stops working within that
 * time). The admin key is a Worker secret compared in constant time. Every refusal counts
 * against the client's address (edge/ratelimit.ts).
 */
import type { Context, MiddlewareHandler } from "hono";
import { FloodgateError } from "../../shared/errors.ts";
import { readStreamToken, timingSafeEqual } from "../../shared/signing.ts";
import { hashKey, parseApiKey, verifyApiKey } from "../../shared/keys.ts";
import { actor, type AccountActor, type Principal } from "../../mesh/index.ts";
import type { AppEnv } from "../env.ts";
import { checkAddressLimit, checkRateLimit } from "../ratelimit.ts";

interface CacheEntry {
  principal: Principal | null;
  until: number;
}

/** Bounded so a flood of distinct keys cannot grow the isolate's memory without end. */
const MAX_CACHED = 10_000;
/** By the key's hash (a key presented), or by `id:<account>.<key id>` (a stream token's key). */
const cache = new Map<string, CacheEntry>();

function bearer(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return m?.[1];
}

/** The secret of API keys' MACs; 503 when the edge has none. */
export function keySecret(env: Env): string {
  if (!env.KEY_SIGNING_KEY) throw new FloodgateError("unavailable", "the edge has no KEY_SIGNING_KEY secret");
  return env.KEY_SIGNING_KEY;
}

/** Forgets cached answers for an account (after this isolate revoked one of its keys). */
export function forgetAccount(accountId: string): void {
  for (const [k, v] of cache) if (v.principal?.account_id === accountId) cache.delete(k);
}

async function cached(env: Env, cacheKey: string, ask: () => Promise<Principal | null>): Promise<Principal | null> {
  const now = Date.now();
  const hit = cache.get(cacheKey);
  if (hit && hit.until > now) return hit.principal;
  const principal = await ask();
  if (cache.size >= MAX_CACHED) cache.delete(cache.keys().next().value as string);
  cache.set(cacheKey, { principal, until: now + Number(env.AUTH_CACHE_S) * 1000 });
  return principal;
}

/** Who a user API key is, or null: a key without the edge's MAC never reaches an actor. */
export async function authenticateKey(env: Env, key: string): Promise<Principal | null> {
  const parsed = await verifyApiKey(keySecret(env), key);
  if (!parsed) return null;
  const hash = await hashKey(key);
  return await cached(env, hash, () =>
    actor<AccountActor>(env.ACCOUNT, parsed.accountId).authenticate(parsed.keyId, hash),
  );
}

/** Who a live key is, by its ids (a stream token names the key that minted it), or null. */
async function principalOfKey(env: Env, accountId: string, keyId: string): Promise<Principal | null> {
  return await cached(env, `id:${accountId}.${keyId}`, () =>
    actor<AccountActor>(env.ACCOUNT, accountId).principal(keyId),
  );
}

/** Counts a refused request against its client's address, then refuses it (429 past the limit). */
async function refuse(c: Context<AppEnv>, err: FloodgateError): Promise<never> {
  await checkAddressLimit(c.env, c.req.raw);
  throw err;
}

/** Requires a user API key; sets `principal` and applies the account's rate limit. */
export const userAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
  const key = bearer(c.req.header("authorization"));
  if (!key)
    return await refuse(c, new FloodgateError("unauthorized", "send your API key as Authorization: Bearer <key>"));
  const principal = await authenticateKey(c.env, key);
  if (!principal)
    return await refuse(
      c,
      new FloodgateError("unauthorized", "the API key is not valid (unknown, malformed or revoked)"),
    );
  await checkRateLimit(c.env, principal);
  c.set("principal", principal);
  await next();
};

const EVENTS_PATH = /^\/v1\/jobs\/(job_[0-9a-z]{30})\/events$/;
const PREVIEW_PATH = /^\/v1\/jobs\/[^/]+\/preview$/;

/**
 * Authentication for `/v1/jobs/*`: a user key, except a job's events, which also take a stream
 * token for that one job (`?token=`, browsers cannot set headers on EventSource or WebSocket),
 * and a preview, whose URL is signed instead. A stream token works while the key that minted it
 * is live, and its use counts against the account's rate limit like the key's own requests.
 */
export const jobsAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (PREVIEW_PATH.test(c.req.path)) return await next();
  const token = c.req.query("token");
  const events = EVENTS_PATH.exec(c.req.path);
  if (events && token !== undefined) {
    const claims = await readStreamToken(c.env.FILE_SIGNING_KEY ?? "", token);
    const principal =
      claims && claims.jobId === events[1] ? await principalOfKey(c.env, claims.accountId, claims.keyId) : null;
    if (!principal) {
      return await refuse(
        c,
        new FloodgateError(
          "unauthorized",
          "the stream token is not valid for this job, has expired, or the key that minted it was revoked",
        ),
      );
    }
    await checkRateLimit(c.env, principal);
    c.set("principal", principal);
    return await next();
  }
  return await userAuth(c, next);
};

/** Requires the admin key. */
export const adminAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
  const key = bearer(c.req.header("authorization"));
  if (!key)
    return await refuse(c, new FloodgateError("unauthorized", "send the admin key as Authorization: Bearer <key>"));
  if (!c.env.ADMIN_KEY || !timingSafeEqual(key, c.env.ADMIN_KEY)) {
    return await refuse(
      c,
      new FloodgateError(parseApiKey(key) ? "forbidden" : "unauthorized", "admin routes need the admin key"),
    );
  }
  await next();
};
