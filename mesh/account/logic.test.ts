import { describe, expect, it } from "vitest";
import { canonicalJson } from "../../shared/canonical.ts";
import { newId, newJobId } from "../../shared/ids.ts";
import { hashKey, newApiKey, parseApiKey, sha256Hex } from "../../shared/keys.ts";
import { migrate } from "../sql/sql.ts";
import { nodeSql } from "../sql/node.ts";
import { IDEMPOTENCY_TTL_MS, authenticate, claim, type Claim } from "./logic.ts";
import { AccountStore, MIGRATIONS } from "./store.ts";

const T0 = Date.UTC(2026, 0, 1);

function freshStore(): AccountStore {
  const sql = nodeSql();
  migrate(sql, MIGRATIONS);
  return new AccountStore(sql);
}

async function accountWithKey(): Promise<{ store: AccountStore; key: string; accountId: string; keyId: string }> {
  const store = freshStore();
  const accountId = newId("acc");
  const keyId = newId("key");
  store.createAccount({ id: accountId, name: "Ada", tier: "plus", rate_limit: 120, created_at: T0 });
  const key = await newApiKey("test-key-signing-key", accountId, keyId);
  store.addKey(keyId, await hashKey(key), T0);
  return { store, key, accountId, keyId };
}

async function submitClaim(key: string, body: unknown): Promise<Claim> {
  return { key, body_hash: await sha256Hex(canonicalJson(body)), job_id: newJobId({ modelNumber: 0, shard: 0 }, T0) };
}

describe("authentication", () => {
  it("a key whose hash matches authenticates as its account, with the account's tier and rate limit", async () => {
    const { store, key, accountId, keyId } = await accountWithKey();
    const parsed = parseApiKey(key)!;
    expect(parsed).toEqual({ accountId, keyId });
    expect(authenticate(store, parsed.keyId, await hashKey(key))).toEqual({
      account_id: accountId,
      key_id: keyId,
      tier: "plus",
      rate_limit: 120,
      webhooks: [],
      job_webhooks: false,
    });
  });

  it("a wrong secret, an unknown key id or a missing account fails authentication", async () => {
    const { store, key, keyId } = await accountWithKey();
    const other = await newApiKey("test-key-signing-key", parseApiKey(key)!.accountId, keyId);
    expect(authenticate(store, keyId, await hashKey(other))).toBeUndefined();
    expect(authenticate(store, newId("key"), await hashKey(key))).toBeUndefined();
    const empty = freshStore();
    empty.addKey(keyId, await hashKey(key), T0);
    expect(authenticate(empty, keyId, await hashKey(key))).toBeUndefined();
  });

  it("a revoked key fails authentication; another key of the account still works", async () => {
    const { store, key, keyId, accountId } = await accountWithKey();
    const keyId2 = newId("key");
    const key2 = await newApiKey("test-key-signing-key", accountId, keyId2);
    store.addKey(keyId2, await hashKey(key2), T0);
    expect(store.revokeKey(keyId, T0 + 1000)).toBe(1);
    expect(store.revokeKey(keyId, T0 + 2000)).toBe(0);
    expect(authenticate(store, keyId, await hashKey(key))).toBeUndefined();
    expect(authenticate(store, keyId2, await hashKey(key2))?.key_id).toBe(keyId2);
  });

  it("a tier change shows in the next authentication", async () => {
    const { store, key, keyId } = await accountWithKey();
    store.setTier("api", null);
    expect(authenticate(store, keyId, await hashKey(key))).toMatchObject({ tier: "api", rate_limit: null });
  });
});

describe("idempotency", () => {
  it("the same key and body get the job id of the first submit", async () => {
    const store = freshStore();
    const body = { input: { prompt: "a cat", steps: 4 } };
    const first = await submitClaim("k-1", body);
    const [a] = claim(store, [first], T0);
    expect(a).toEqual({ ok: true, job_id: first.job_id, existed: false });
    // Same body with its keys in another order: same canonical hash.
    const again = await submitClaim("k-1", { input: { steps: 4, prompt: "a cat" } });
    expect(again.job_id).not.toBe(first.job_id);
    const [b] = claim(store, [again], T0 + 3600_000);
    expect(b).toEqual({ ok: true, job_id: first.job_id, existed: true });
  });

  it("the same key with another body is an idempotency_conflict", async () => {
    const store = freshStore();
    claim(store, [await submitClaim("k-1", { input: { prompt: "a cat" } })], T0);
    const [out] = claim(store, [await submitClaim("k-1", { input: { prompt: "a dog" } })], T0 + 1000);
    expect(out).toMatchObject({ ok: false, code: "idempotency_conflict" });
  });

  it("after 24 h the key is free again", async () => {
    const store = freshStore();
    const first = await submitClaim("k-1", { input: { prompt: "a cat" } });
    claim(store, [first], T0);
    const later = await submitClaim("k-1", { input: { prompt: "a cat" } });
    const [held] = claim(store, [later], T0 + IDEMPOTENCY_TTL_MS - 1);
    expect(held).toEqual({ ok: true, job_id: first.job_id, existed: true });
    const [free] = claim(store, [later], T0 + IDEMPOTENCY_TTL_MS);
    expect(free).toEqual({ ok: true, job_id: later.job_id, existed: false });
    // And the new claim holds for the next 24 h, even against another body.
    const [conflict] = claim(
      store,
      [await submitClaim("k-1", { input: { prompt: "a dog" } })],
      T0 + IDEMPOTENCY_TTL_MS + 1,
    );
    expect(conflict).toMatchObject({ ok: false, code: "idempotency_conflict" });
    const [otherBody] = claim(
      store,
      [await submitClaim("k-1", { input: { prompt: "a dog" } })],
      T0 + 2 * IDEMPOTENCY_TTL_MS,
    );
    expect(otherBody).toMatchObject({ ok: true, existed: false });
  });

  it("one call with the same key twice gives both the first job id", async () => {
    const store = freshStore();
    const c1 = await submitClaim("k-1", { input: { prompt: "a cat" } });
    const c2 = await submitClaim("k-1", { input: { prompt: "a cat" } });
    const c3 = await submitClaim("k-2", { input: { prompt: "a cat" } });
    const out = claim(store, [c1, c2, c3], T0);
    expect(out).toEqual([
      { ok: true, job_id: c1.job_id, existed: false },
      { ok: true, job_id: c1.job_id, existed: true },
      { ok: true, job_id: c3.job_id, existed: false },
    ]);
  });

  it("expired idempotency records are swept by age", async () => {
    const store = freshStore();
    claim(store, [await submitClaim("k-1", { a: 1 })], T0);
    claim(store, [await submitClaim("k-2", { a: 1 })], T0 + 1000);
    expect(store.oldestIdempotency()).toBe(T0);
    expect(store.deleteIdempotencyBefore(T0)).toBe(1);
    expect(store.idempotency("k-1")).toBeUndefined();
    expect(store.oldestIdempotency()).toBe(T0 + 1000);
  });
});
