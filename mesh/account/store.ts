/**
 * All SQL of the account actor: the account, its keys (SHA-256 hashes only), the
 * idempotency records of its submits (24 h), its webhooks and its input files.
 */
import { one, type Sql, type SqlValue } from "../sql/sql.ts";

export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE account (
     id TEXT PRIMARY KEY, name TEXT NOT NULL, tier TEXT NOT NULL, rate_limit INTEGER, created_at INTEGER NOT NULL
   );
   CREATE TABLE keys (
     key_id TEXT PRIMARY KEY, hash TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER
   );
   CREATE TABLE idempotency (
     key TEXT PRIMARY KEY, body_hash TEXT NOT NULL, job_id TEXT NOT NULL, created_at INTEGER NOT NULL
   );
   CREATE INDEX idempotency_created ON idempotency (created_at)`,
  // Webhook endpoints (kind 'endpoint') and the secret of jobs' own webhooks (the one row of
  // kind 'job', without URL). A rotated secret keeps signing beside the new one until old_until.
  `CREATE TABLE webhooks (
     id TEXT PRIMARY KEY, kind TEXT NOT NULL, url TEXT, events TEXT NOT NULL, secret TEXT NOT NULL,
     old_secret TEXT, old_until INTEGER, created_at INTEGER NOT NULL, disabled_at INTEGER, disabled_reason TEXT
   )`,
  // Input files: one row per file (sha256 NULL while its upload runs, r2_upload R2's multipart
  // upload id until then), and the parts stored so far, which the R2 binding cannot list.
  `CREATE TABLE files (
     id TEXT PRIMARY KEY, name TEXT NOT NULL, content_type TEXT NOT NULL, size INTEGER NOT NULL,
     part_bytes INTEGER NOT NULL, r2_upload TEXT, sha256 TEXT, created_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL
   );
   CREATE INDEX files_expires ON files (expires_at);
   CREATE TABLE file_parts (
     file_id TEXT NOT NULL, n INTEGER NOT NULL, etag TEXT NOT NULL, size INTEGER NOT NULL,
     PRIMARY KEY (file_id, n)
   )`,
];

export interface FileRow {
  [k: string]: SqlValue;
  id: string;
  name: string;
  content_type: string;
  size: number;
  part_bytes: number;
  /** R2's multipart upload id while the upload runs; null once complete. */
  r2_upload: string | null;
  /** Hex SHA-256 of the stored bytes once complete; null while uploading. */
  sha256: string | null;
  created_at: number;
  expires_at: number;
}

export interface FilePartRow {
  [k: string]: SqlValue;
  file_id: string;
  n: number;
  etag: string;
  size: number;
}

export interface AccountRow {
  [k: string]: SqlValue;
  id: string;
  name: string;
  tier: string;
  rate_limit: number | null;
  created_at: number;
}

export interface KeyRow {
  [k: string]: SqlValue;
  key_id: string;
  hash: string;
  created_at: number;
  revoked_at: number | null;
}

export interface IdempotencyRow {
  [k: string]: SqlValue;
  key: string;
  body_hash: string;
  job_id: string;
  created_at: number;
}

export interface WebhookRow {
  [k: string]: SqlValue;
  id: string;
  kind: "endpoint" | "job";
  url: string | null;
  /** JSON array of event names. */
  events: string;
  secret: string;
  old_secret: string | null;
  old_until: number | null;
  created_at: number;
  disabled_at: number | null;
  disabled_reason: string | null;
}

export class AccountStore {
  readonly sql: Sql;

  constructor(sql: Sql) {
    this.sql = sql;
  }

  account(): AccountRow | undefined {
    return one<AccountRow>(this.sql, "SELECT * FROM account LIMIT 1");
  }

  createAccount(a: AccountRow): void {
    this.sql.run(
      "INSERT INTO account (id, name, tier, rate_limit, created_at) VALUES (?, ?, ?, ?, ?)",
      a.id,
      a.name,
      a.tier,
      a.rate_limit,
      a.created_at,
    );
  }

  setTier(tier: string, rateLimit: number | null): void {
    this.sql.run("UPDATE account SET tier = ?, rate_limit = ?", tier, rateLimit);
  }

  key(keyId: string): KeyRow | undefined {
    return one<KeyRow>(this.sql, "SELECT * FROM keys WHERE key_id = ?", keyId);
  }

  keys(): KeyRow[] {
    return this.sql.all<KeyRow>("SELECT * FROM keys ORDER BY created_at");
  }

  addKey(keyId: string, hash: string, now: number): void {
    this.sql.run("INSERT INTO keys (key_id, hash, created_at) VALUES (?, ?, ?)", keyId, hash, now);
  }

  revokeKey(keyId: string, now: number): number {
    return this.sql.run("UPDATE keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL", now, keyId);
  }

  idempotency(key: string): IdempotencyRow | undefined {
    return one<IdempotencyRow>(this.sql, "SELECT * FROM idempotency WHERE key = ?", key);
  }

  putIdempotency(r: IdempotencyRow): void {
    this.sql.run(
      `INSERT INTO idempotency (key, body_hash, job_id, created_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET body_hash = excluded.body_hash, job_id = excluded.job_id, created_at = excluded.created_at`,
      r.key,
      r.body_hash,
      r.job_id,
      r.created_at,
    );
  }

  deleteIdempotencyBefore(before: number): number {
    return this.sql.run("DELETE FROM idempotency WHERE created_at <= ?", before);
  }

  oldestIdempotency(): number | undefined {
    return one<{ t: number | null }>(this.sql, "SELECT min(created_at) AS t FROM idempotency")?.t ?? undefined;
  }

  webhooks(): WebhookRow[] {
    return this.sql.all<WebhookRow>("SELECT * FROM webhooks WHERE kind = 'endpoint' ORDER BY created_at, id");
  }

  webhook(id: string): WebhookRow | undefined {
    return one<WebhookRow>(this.sql, "SELECT * FROM webhooks WHERE id = ?", id);
  }

  putWebhook(w: WebhookRow): void {
    this.sql.run(
      `INSERT INTO webhooks (id, kind, url, events, secret, old_secret, old_until, created_at, disabled_at, disabled_reason)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET url = excluded.url, events = excluded.events, secret = excluded.secret,
         old_secret = excluded.old_secret, old_until = excluded.old_until, disabled_at = excluded.disabled_at,
         disabled_reason = excluded.disabled_reason`,
      w.id,
      w.kind,
      w.url,
      w.events,
      w.secret,
      w.old_secret,
      w.old_until,
      w.created_at,
      w.disabled_at,
      w.disabled_reason,
    );
  }

  deleteWebhook(id: string): number {
    return this.sql.run("DELETE FROM webhooks WHERE id = ? AND kind = 'endpoint'", id);
  }

  file(id: string): FileRow | undefined {
    return one<FileRow>(this.sql, "SELECT * FROM files WHERE id = ?", id);
  }

  /** A page of files, newest first (ids are random: created_at orders, id breaks ties). */
  files(limit: number, after?: FileRow): FileRow[] {
    return after
      ? this.sql.all<FileRow>(
          `SELECT * FROM files WHERE (created_at, id) < (?, ?) ORDER BY created_at DESC, id DESC LIMIT ?`,
          after.created_at,
          after.id,
          limit,
        )
      : this.sql.all<FileRow>("SELECT * FROM files ORDER BY created_at DESC, id DESC LIMIT ?", limit);
  }

  putFile(f: FileRow): void {
    this.sql.run(
      `INSERT INTO files (id, name, content_type, size, part_bytes, r2_upload, sha256, created_at, expires_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      f.id,
      f.name,
      f.content_type,
      f.size,
      f.part_bytes,
      f.r2_upload,
      f.sha256,
      f.created_at,
      f.expires_at,
    );
  }

  completeFile(id: string, sha256: string): number {
    return this.sql.run("UPDATE files SET sha256 = ?, r2_upload = NULL WHERE id = ? AND sha256 IS NULL", sha256, id);
  }

  deleteFile(id: string): number {
    this.sql.run("DELETE FROM file_parts WHERE file_id = ?", id);
    return this.sql.run("DELETE FROM files WHERE id = ?", id);
  }

  /** Files whose retention ended at or before `now`, oldest first. */
  expiredFiles(now: number, limit: number): FileRow[] {
    return this.sql.all<FileRow>("SELECT * FROM files WHERE expires_at <= ? ORDER BY expires_at LIMIT ?", now, limit);
  }

  nextFileExpiry(): number | undefined {
    return one<{ t: number | null }>(this.sql, "SELECT min(expires_at) AS t FROM files")?.t ?? undefined;
  }

  parts(fileId: string): FilePartRow[] {
    return this.sql.all<FilePartRow>("SELECT * FROM file_parts WHERE file_id = ? ORDER BY n", fileId);
  }

  putPart(p: FilePartRow): void {
    this.sql.run(
      `INSERT INTO file_parts (file_id, n, etag, size) VALUES (?, ?, ?, ?)
       ON CONFLICT (file_id, n) DO UPDATE SET etag = excluded.etag, size = excluded.size`,
      p.file_id,
      p.n,
      p.etag,
      p.size,
    );
  }

  deleteParts(fileId: string): void {
    this.sql.run("DELETE FROM file_parts WHERE file_id = ?", fileId);
  }
}
