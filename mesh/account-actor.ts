/**
 * AccountActor: one per account (named by the account id inside its API keys). Holds the
 * account's tier and rate limit, its keys as SHA-256 hashes, and its idempotency records. The
 * edge asks it only on an authentication cache miss and for submits that carry an
 * Idempotency-Key, so it is off the hot path of plain submits.
 */
import { DurableObject } from "cloudflare:workers";
import { fail } from "../shared/errors.ts";
import { authenticate, claim, IDEMPOTENCY_TTL_MS, type Claim } from "./account/logic.ts";
import { AccountStore, MIGRATIONS } from "./account/store.ts";
import { durableSql } from "./sql/durable.ts";
import { migrate } from "./sql/sql.ts";

export class AccountActor extends DurableObject<Env> {
  private store!: AccountStore;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      const sql = durableSql(ctx.storage.sql);
      migrate(sql, MIGRATIONS);
      this.store = new AccountStore(sql);
    });
  }

  async create(
    a: { id: string; name: string; tier: string; rate_limit: number | null },
    keyId: string,
    keyHash: string,
  ) {
    if (this.store.account()) return fail("conflict", `account ${a.id} exists`);
    const now = Date.now();
    this.store.createAccount({ ...a, created_at: now });
    this.store.addKey(keyId, keyHash, now);
    return { ok: true as const };
  }

  async info() {
    const account = this.store.account();
    if (!account) return fail("account_not_found", "no such account");
    const keys = this.store
      .keys()
      .map((k) => ({ key_id: k.key_id, created_at: k.created_at, revoked_at: k.revoked_at }));
    return { ok: true as const, account, keys };
  }

  async authenticate(keyId: string, hash: string) {
    return authenticate(this.store, keyId, hash) ?? null;
  }

  async addKey(keyId: string, hash: string) {
    if (!this.store.account()) return fail("account_not_found", "no such account");
    this.store.addKey(keyId, hash, Date.now());
    return { ok: true as const };
  }

  async revokeKey(keyId: string) {
    if (!this.store.account()) return fail("account_not_found", "no such account");
    if (!this.store.key(keyId)) return fail("not_found", `no key ${keyId}`);
    this.store.revokeKey(keyId, Date.now());
    return { ok: true as const };
  }

  async setTier(tier: string, rateLimit: number | null) {
    const account = this.store.account();
    if (!account) return fail("account_not_found", "no such account");
    this.store.setTier(tier, rateLimit);
    return { ok: true as const };
  }

  async claim(claims: Claim[]) {
    const now = Date.now();
    const out = claim(this.store, claims, now);
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(now + IDEMPOTENCY_TTL_MS);
    return out;
  }

  override async alarm(): Promise<void> {
    const now = Date.now();
    this.store.deleteIdempotencyBefore(now - IDEMPOTENCY_TTL_MS);
    const oldest = this.store.oldestIdempotency();
    if (oldest !== undefined) await this.ctx.storage.setAlarm(oldest + IDEMPOTENCY_TTL_MS);
  }
}
