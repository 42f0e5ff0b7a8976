/**
 * The account's decisions: key checks and idempotency claims. Pure over {@link AccountStore}.
 */
import { fail, type Failure } from "../../shared/errors.ts";
import { timingSafeEqual } from "../../shared/signing.ts";
import type { AccountStore } from "./store.ts";
import { hasJobSecret, hookRefs, type HookRef } from "./webhooks.ts";

/** How long an idempotency key holds its job (ms). */
export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;

export interface Principal {
  account_id: string;
  key_id: string;
  tier: string;
  rate_limit: number | null;
  /** The account's live webhook endpoints: a submit records in its job which ones it tells. */
  webhooks: HookRef[];
  /** Whether jobs' own webhooks can be signed (the account made their secret). */
  job_webhooks: boolean;
}

function principal(
  store: AccountStore,
  account: { id: string; tier: string; rate_limit: number | null },
  keyId: string,
): Principal {
  return {
    account_id: account.id,
    key_id: keyId,
    tier: account.tier,
    rate_limit: account.rate_limit,
    webhooks: hookRefs(store),
    job_webhooks: hasJobSecret(store),
  };
}

/** Checks a key's hash against the stored one; revoked and unknown keys fail alike. */
export function authenticate(store: AccountStore, keyId: string, hash: string): Principal | undefined {
  const account = store.account();
  const key = store.key(keyId);
  if (!account || !key || key.revoked_at !== null || !timingSafeEqual(key.hash, hash)) return undefined;
  return principal(store, account, keyId);
}

/** The principal of a key by its id while the key is live (a stream token names its key). */
export function principalOf(store: AccountStore, keyId: string): Principal | undefined {
  const account = store.account();
  const key = store.key(keyId);
  if (!account || !key || key.revoked_at !== null) return undefined;
  return principal(store, account, keyId);
}

export interface Claim {
  key: string;
  body_hash: string;
  /** The id to use if this key is new. */
  job_id: string;
}

export type ClaimOutcome = { ok: true; job_id: string; existed: boolean } | Failure;

/**
 * Claims idempotency keys for submits. The same key and body within 24 h gets the job id it
 * got first; the same key with another body is a conflict. The actor runs one call at a time,
 * so concurrent submits with one key all receive the same id.
 */
export function claim(store: AccountStore, claims: readonly Claim[], now: number): ClaimOutcome[] {
  return claims.map((c) => {
    const held = store.idempotency(c.key);
    if (held && held.created_at > now - IDEMPOTENCY_TTL_MS) {
      if (held.body_hash !== c.body_hash) {
        return fail(
          "idempotency_conflict",
          `Idempotency-Key ${c.key} was used with another body within 24 h; use a new key for a new job`,
        );
      }
      return { ok: true, job_id: held.job_id, existed: true };
    }
    store.putIdempotency({ key: c.key, body_hash: c.body_hash, job_id: c.job_id, created_at: now });
    return { ok: true, job_id: c.job_id, existed: false };
  });
}
