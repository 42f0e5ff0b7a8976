/**
 * AccountActor: one per account (named by the account id inside its API keys). Holds the
 * account's tier and rate limit, its keys as SHA-256 hashes, and its idempotency records. The
 * edge asks it only on an authentication cache miss and for submits that carry an
 * Idempotency-Key, so it is off the hot path of plain submits. It also counts, in memory, the
 * event streams the account's jobs hold (mesh/account/streams.ts). Its input files' records
 * live here too (mesh/account/files.ts); their bytes are in R2 under `inputs/<account>/`, which
 * the actor deletes with the record, and from its alarm past their retention.
 *
 * Its tables are made by the first write that belongs to a real account (creating it), never by
 * a read: an actor reached for an account that does not exist answers "not found" and writes
 * nothing, so it leaves no storage behind.
 */
import { DurableObject } from "cloudflare:workers";
import { fail } from "../shared/errors.ts";
import { inputKey, type FileCreate } from "../shared/files.ts";
import { createFile, fileParts, fileView, inputRefs, liveFile, uploadOf } from "./account/files.ts";
import { authenticate, claim, IDEMPOTENCY_TTL_MS, principalOf, type Claim } from "./account/logic.ts";
import { AccountStore, MIGRATIONS, type FileRow } from "./account/store.ts";
import { StreamCounts } from "./account/streams.ts";
import {
  addWebhook,
  disableWebhook,
  hookTarget,
  JOB_SECRET_ID,
  rotateSecret,
  webhookView,
} from "./account/webhooks.ts";
import type { WebhookEvent } from "../shared/webhooks.ts";
import { durableSql } from "./sql/durable.ts";
import { migrate, migrated } from "./sql/sql.ts";

export class AccountActor extends DurableObject<Env> {
  /** Absent until the account's storage exists. */
  private store: AccountStore | undefined;
  private readonly streams = new StreamCounts();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      const sql = durableSql(ctx.storage.sql);
      // Only an account that has storage gets its pending migrations here.
      if (migrated(sql)) this.store = this.open();
    });
  }

  /** The store, its tables made (or brought up to date) first. */
  private open(): AccountStore {
    const sql = durableSql(this.ctx.storage.sql);
    migrate(sql, MIGRATIONS);
    return new AccountStore(sql);
  }

  async create(
    a: { id: string; name: string; tier: string; rate_limit: number | null },
    keyId: string,
    keyHash: string,
  ) {
    if (this.store?.account()) return fail("conflict", `account ${a.id} exists`);
    this.store ??= this.open();
    const now = Date.now();
    this.store.createAccount({ ...a, created_at: now });
    this.store.addKey(keyId, keyHash, now);
    return { ok: true as const };
  }

  async info() {
    const account = this.store?.account();
    if (!this.store || !account) return fail("account_not_found", "no such account");
    const keys = this.store
      .keys()
      .map((k) => ({ key_id: k.key_id, created_at: k.created_at, revoked_at: k.revoked_at }));
    return { ok: true as const, account, keys };
  }

  async authenticate(keyId: string, hash: string) {
    return (this.store && authenticate(this.store, keyId, hash)) ?? null;
  }

  /** The principal of a live key by its id (for a stream token minted by it), or null. */
  async principal(keyId: string) {
    return (this.store && principalOf(this.store, keyId)) ?? null;
  }

  async addKey(keyId: string, hash: string) {
    if (!this.store?.account()) return fail("account_not_found", "no such account");
    this.store.addKey(keyId, hash, Date.now());
    return { ok: true as const };
  }

  async revokeKey(keyId: string) {
    if (!this.store?.account()) return fail("account_not_found", "no such account");
    if (!this.store.key(keyId)) return fail("not_found", `no key ${keyId}`);
    this.store.revokeKey(keyId, Date.now());
    return { ok: true as const };
  }

  async setTier(tier: string, rateLimit: number | null) {
    if (!this.store?.account()) return fail("account_not_found", "no such account");
    this.store.setTier(tier, rateLimit);
    return { ok: true as const };
  }

  /** Idempotency claims of submits, which the edge sends only for a key this account authenticated. */
  async claim(claims: Claim[]) {
    this.store ??= this.open();
    const now = Date.now();
    const out = claim(this.store, claims, now);
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(now + IDEMPOTENCY_TTL_MS);
    return out;
  }

  /** Whether a job may hold `n` event streams beside the account's others (and records it if so). */
  async admitStreams(jobId: string, n: number): Promise<boolean> {
    return this.streams.admit(jobId, n, Date.now());
  }

  /** A job's count of event streams now (its subscribers closed, or its periodic renewal). */
  async reportStreams(jobId: string, n: number): Promise<void> {
    this.streams.report(jobId, n, Date.now());
  }

  async addWebhook(url: string, events: WebhookEvent[] | undefined) {
    if (!this.store?.account()) return fail("account_not_found", "no such account");
    const out = addWebhook(this.store, url, events, Date.now());
    return "ok" in out ? out : { ok: true as const, webhook: out };
  }

  async webhooks() {
    return (this.store?.account() && this.store.webhooks().map(webhookView)) ?? [];
  }

  async removeWebhook(id: string) {
    if (!this.store || this.store.deleteWebhook(id) === 0) return fail("not_found", `no webhook ${id}`);
    return { ok: true as const };
  }

  /** A new secret for an endpoint, or (`job`) for jobs' own webhooks; the old one overlaps. */
  async rotateWebhook(id: string) {
    if (!this.store?.account()) return fail("account_not_found", "no such account");
    const out = rotateSecret(this.store, id, Date.now());
    if ("ok" in out) return out;
    return {
      ok: true as const,
      secret: out.secret,
      webhook: id === JOB_SECRET_ID ? null : webhookView(out.row),
      previous_valid_until: out.row.old_until === null ? null : new Date(out.row.old_until).toISOString(),
    };
  }

  /** Where the WebhookActor sends for an endpoint, and with which secrets (null: removed). */
  async webhookTarget(id: string) {
    return (this.store && hookTarget(this.store, id, Date.now())) ?? null;
  }

  /** Disables an endpoint that answered 410 or failed for days; answers its view if it was live. */
  async disableWebhook(id: string, reason: string) {
    if (!this.store || !disableWebhook(this.store, id, reason, Date.now())) return null;
    const row = this.store.webhook(id);
    return row ? webhookView(row) : null;
  }

  /** Records a file whose upload the edge started under `inputKey(account, id)`. */
  async createFile(id: string, body: Required<FileCreate>, r2Upload: string, retentionMs: number) {
    if (!this.store?.account()) return fail("account_not_found", "no such account");
    const view = createFile(this.store, id, body, r2Upload, Date.now(), retentionMs);
    await this.armAlarm();
    return { ok: true as const, file: view };
  }

  async file(id: string) {
    const f = this.store ? liveFile(this.store, id, Date.now()) : fail("file_not_found", `no file ${id}`);
    return f.ok ? { ok: true as const, file: fileView(f.file) } : f;
  }

  /** A page of the account's live files, newest first, after the file `cursor`. */
  async files(limit: number, cursor: string | undefined) {
    if (!this.store?.account()) return { files: [], next_cursor: null };
    const now = Date.now();
    const after = cursor === undefined ? undefined : this.store.file(cursor);
    const rows = this.store.files(limit + 1, after).filter((f) => f.expires_at > now);
    const page = rows.slice(0, limit);
    return { files: page.map(fileView), next_cursor: rows.length > limit ? (page.at(-1)?.id ?? null) : null };
  }

  async fileParts(id: string) {
    const f = this.store ? liveFile(this.store, id, Date.now()) : fail("file_not_found", `no file ${id}`);
    return f.ok ? { ok: true as const, parts: fileParts(this.store as AccountStore, f.file) } : f;
  }

  /** Where a part or a complete of file `id` goes: its key, R2's upload id and its stored parts. */
  async fileUpload(id: string) {
    const account = this.store?.account();
    if (!this.store || !account) return fail("file_not_found", `no file ${id}`);
    const u = uploadOf(this.store, id, Date.now());
    if (!u.ok) return u;
    return {
      ok: true as const,
      key: inputKey(account.id, id),
      r2_upload: u.r2_upload,
      size: u.file.size,
      part_bytes: u.file.part_bytes,
      stored: this.store.parts(id).map((p) => ({ part_number: p.n, etag: p.etag, size: p.size })),
    };
  }

  /** A part the edge stored for a file still uploading. */
  async recordPart(id: string, n: number, etag: string, size: number) {
    if (!this.store) return fail("file_not_found", `no file ${id}`);
    const u = uploadOf(this.store, id, Date.now());
    if (!u.ok) return u;
    this.store.putPart({ file_id: id, n, etag, size });
    return { ok: true as const };
  }

  /** The file's upload completed in R2 with bytes hashing to `sha256`: it may be named by jobs. */
  async completeFile(id: string, sha256: string) {
    if (!this.store) return fail("file_not_found", `no file ${id}`);
    const u = uploadOf(this.store, id, Date.now());
    if (!u.ok) return u;
    this.store.completeFile(id, sha256);
    this.store.deleteParts(id);
    const f = this.store.file(id) as FileRow;
    return { ok: true as const, file: fileView(f) };
  }

  /** Deletes a file: its record, then its bytes (or its unfinished upload). */
  async deleteFile(id: string) {
    const account = this.store?.account();
    if (!this.store || !account) return fail("file_not_found", `no file ${id}`);
    const f = liveFile(this.store, id, Date.now());
    if (!f.ok) return f;
    await this.dropFiles(account.id, [f.file]);
    return { ok: true as const };
  }

  /**
   * The refs of the files a submit's input names, each a live, complete file of this account;
   * called only for submits that name files.
   */
  async inputFiles(ids: string[]) {
    if (!this.store?.account())
      return Object.fromEntries(ids.map((id) => [id, fail("file_not_found", `no file ${id}`)]));
    return inputRefs(this.store, ids, Date.now());
  }

  /** Deletes files past their retention at `now` (the alarm's clock; tests pass a later one). */
  async sweepFiles(now: number): Promise<number> {
    const account = this.store?.account();
    if (!this.store || !account) return 0;
    let swept = 0;
    for (let batch = this.store.expiredFiles(now, 100); batch.length > 0; batch = this.store.expiredFiles(now, 100)) {
      await this.dropFiles(account.id, batch);
      swept += batch.length;
    }
    return swept;
  }

  /**
   * Removes files' records, then their bytes: an unfinished upload is aborted, a complete
   * object deleted. The record goes first, so a file is never named once its bytes may be gone.
   */
  private async dropFiles(accountId: string, files: FileRow[]): Promise<void> {
    const bucket = this.env.OUTPUTS;
    for (const f of files) this.store?.deleteFile(f.id);
    await Promise.all(
      files.map(async (f) => {
        const key = inputKey(accountId, f.id);
        if (f.r2_upload !== null) {
          await bucket
            .resumeMultipartUpload(key, f.r2_upload)
            .abort()
            .catch(() => undefined);
        }
        await bucket.delete(key);
      }),
    );
  }

  /** The alarm at the next idempotency record's or file's expiry, whichever is first. */
  private async armAlarm(): Promise<void> {
    if (!this.store) return;
    const oldest = this.store.oldestIdempotency();
    const times = [oldest === undefined ? undefined : oldest + IDEMPOTENCY_TTL_MS, this.store.nextFileExpiry()].filter(
      (t): t is number => t !== undefined,
    );
    if (times.length === 0) return;
    const next = Math.min(...times);
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > next) await this.ctx.storage.setAlarm(next);
  }

  override async alarm(): Promise<void> {
    if (!this.store) return;
    const now = Date.now();
    this.store.deleteIdempotencyBefore(now - IDEMPOTENCY_TTL_MS);
    await this.sweepFiles(now);
    await this.armAlarm();
  }
}
