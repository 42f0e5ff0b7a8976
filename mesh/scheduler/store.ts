/**
 * All SQL of the scheduler actor: its migrations and every query, behind typed methods. The
 * hot query is the pick (`headOf`), served by the partial index `jobs_pick (tier, version, tag,
 * id) WHERE status = 'queued'`, so one pick costs O(tiers · lanes · log depth) however deep the
 * queues are (proved by `EXPLAIN QUERY PLAN` in store.test.ts). A lane is the jobs of a tier
 * pinned (or routed to a canary) to one model version, or (`version IS NULL`) those any version
 * may run.
 */
import { getMeta, one, setMeta, type Sql, type SqlValue } from "../sql/sql.ts";

export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
   CREATE TABLE jobs (
     id TEXT PRIMARY KEY,
     account_id TEXT NOT NULL,
     tier TEXT NOT NULL,
     status TEXT NOT NULL,
     phase TEXT NOT NULL,
     tag REAL NOT NULL,
     enqueued_at INTEGER NOT NULL,
     created_at INTEGER NOT NULL,
     started_at INTEGER,
     finished_at INTEGER,
     epoch INTEGER NOT NULL DEFAULT 0,
     agent_id TEXT,
     lease_deadline INTEGER,
     spent INTEGER NOT NULL DEFAULT 0,
     body TEXT NOT NULL,
     progress TEXT,
     outputs TEXT,
     error_code TEXT,
     error_message TEXT,
     attempts TEXT NOT NULL DEFAULT '[]'
   );
   CREATE INDEX jobs_pick ON jobs (tier, tag, id) WHERE status = 'queued';
   CREATE INDEX jobs_wait ON jobs (tier, enqueued_at) WHERE status = 'queued';
   CREATE INDEX jobs_lease ON jobs (lease_deadline) WHERE status = 'running';
   CREATE INDEX jobs_agent ON jobs (agent_id) WHERE status = 'running';
   CREATE INDEX jobs_account ON jobs (account_id, id);
   CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
   CREATE TABLE account_tags (
     account_id TEXT NOT NULL,
     tier TEXT NOT NULL,
     last_tag REAL NOT NULL,
     PRIMARY KEY (account_id, tier)
   ) WITHOUT ROWID`,
  `CREATE TABLE tombstones (id TEXT PRIMARY KEY, epoch INTEGER NOT NULL, deleted_at INTEGER NOT NULL) WITHOUT ROWID;
   CREATE INDEX tombstones_deleted ON tombstones (deleted_at)`,
  // The pick serves a tier's oldest queued job by (enqueued_at, id): one index seek, ties by id.
  `DROP INDEX jobs_wait;
   CREATE INDEX jobs_wait ON jobs (tier, enqueued_at, id) WHERE status = 'queued'`,
  // A job pinned to a model version waits in its own lane of its tier (NULL: any version), so
  // an agent's pick seeks only the lanes it may serve.
  `ALTER TABLE jobs ADD COLUMN version TEXT;
   UPDATE jobs SET version = json_extract(body, '$.version');
   DROP INDEX jobs_pick;
   CREATE INDEX jobs_pick ON jobs (tier, version, tag, id) WHERE status = 'queued';
   DROP INDEX jobs_wait;
   CREATE INDEX jobs_wait ON jobs (tier, version, enqueued_at, id) WHERE status = 'queued'`,
  // Leases live in memory (mesh/scheduler/leases.ts): nothing asks for an agent's rows any more.
  `DROP INDEX jobs_agent`,
  // A job routed to a canary's lane at enqueue (not pinned by its owner) goes back to the
  // unpinned lane when that version stops being the canary.
  `ALTER TABLE jobs ADD COLUMN routed INTEGER NOT NULL DEFAULT 0`,
  // Jobs that tell webhooks (NULL for the rest, which pay nothing for it): whom, as JSON. A
  // status change of such a job writes its messages to the outbox in the change's own commit;
  // they leave for the account's WebhookActor after it, and are deleted once it took them.
  `ALTER TABLE jobs ADD COLUMN hooks TEXT;
   CREATE TABLE webhook_outbox (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     account_id TEXT NOT NULL,
     job_id TEXT NOT NULL,
     endpoint TEXT NOT NULL,
     url TEXT,
     type TEXT NOT NULL,
     payload TEXT NOT NULL,
     at INTEGER NOT NULL
   )`,
  // Usage per account, version and hour, added to by the commit that ends an attempt or a job
  // (one UPSERT; the lease's fencing lets each attempt end once). Milliseconds, so sums are exact.
  `CREATE TABLE usage (
     account_id TEXT NOT NULL,
     version TEXT NOT NULL,
     hour INTEGER NOT NULL,
     gpu_ms INTEGER NOT NULL DEFAULT 0,
     executing_ms INTEGER NOT NULL DEFAULT 0,
     lost_gpu_ms INTEGER NOT NULL DEFAULT 0,
     attempts INTEGER NOT NULL DEFAULT 0,
     succeeded INTEGER NOT NULL DEFAULT 0,
     failed INTEGER NOT NULL DEFAULT 0,
     cancelled INTEGER NOT NULL DEFAULT 0,
     expired INTEGER NOT NULL DEFAULT 0,
     output_bytes INTEGER NOT NULL DEFAULT 0,
     PRIMARY KEY (account_id, hour, version)
   ) WITHOUT ROWID`,
];

/** One hour in ms: the width of a usage bucket. */
export const USAGE_HOUR_MS = 3_600_000;

/** What one event adds to an account's usage of a version in the hour it happened. */
export interface UsageDelta {
  account_id: string;
  /** The version that ran (`""` when none did: a job that expired queued). */
  version: string;
  /** When it happened (ms): its hour is its bucket. */
  at: number;
  gpu_ms?: number;
  executing_ms?: number;
  lost_gpu_ms?: number;
  attempts?: number;
  succeeded?: number;
  failed?: number;
  cancelled?: number;
  expired?: number;
  output_bytes?: number;
}

/** An hour's usage of one version by one account, as stored. */
export interface UsageRow {
  [k: string]: SqlValue;
  account_id: string;
  version: string;
  hour: number;
  gpu_ms: number;
  executing_ms: number;
  lost_gpu_ms: number;
  attempts: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  expired: number;
  output_bytes: number;
}

/** The UPSERT that adds a {@link UsageDelta} to its bucket. */
export const USAGE_UPSERT = `INSERT INTO usage (account_id, version, hour, gpu_ms, executing_ms, lost_gpu_ms, attempts,
    succeeded, failed, cancelled, expired, output_bytes)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
  ON CONFLICT (account_id, hour, version) DO UPDATE SET
    gpu_ms = gpu_ms + excluded.gpu_ms, executing_ms = executing_ms + excluded.executing_ms,
    lost_gpu_ms = lost_gpu_ms + excluded.lost_gpu_ms, attempts = attempts + excluded.attempts,
    succeeded = succeeded + excluded.succeeded, failed = failed + excluded.failed,
    cancelled = cancelled + excluded.cancelled, expired = expired + excluded.expired,
    output_bytes = output_bytes + excluded.output_bytes`;

/** A job row as stored. */
export interface JobRow {
  [k: string]: SqlValue;
  id: string;
  account_id: string;
  tier: string;
  status: string;
  phase: string;
  tag: number;
  enqueued_at: number;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  epoch: number;
  agent_id: string | null;
  lease_deadline: number | null;
  spent: number;
  body: string;
  /** The job's lane: the model version it is pinned or routed to (`null`: any). */
  version: string | null;
  /** 1 when the lane was chosen by canary routing, not by the job's owner. */
  routed: number;
  /** Whom the job's status changes are told (JSON {@link JobHook}[]), or `null`: nobody. */
  hooks: string | null;
  progress: string | null;
  outputs: string | null;
  error_code: string | null;
  error_message: string | null;
  attempts: string;
}

/** A running job's lease as stored: what a shard waking up loads into memory. */
export interface RunningLease {
  [k: string]: SqlValue;
  id: string;
  agent_id: string;
  epoch: number;
  /** The deadline the grant set (renewals move it in memory only). */
  lease_deadline: number | null;
  /** When the current attempt started (ms). */
  granted_at: number | null;
}

/** A tier's head as the pick reads it. */
export interface HeadRow {
  [k: string]: SqlValue;
  id: string;
  tag: number;
  enqueued_at: number;
}

/** The query the pick runs once per tier and lane; exported for the query-plan test. */
export const HEAD_QUERY =
  "SELECT id, tag, enqueued_at FROM jobs WHERE status = 'queued' AND tier = ? AND version IS ? ORDER BY tag, id LIMIT 1";

/** A lane's oldest queued job, ties by id: the pick's rank, and admission's oldest wait. */
export const OLDEST_QUERY =
  "SELECT id, enqueued_at FROM jobs WHERE status = 'queued' AND tier = ? AND version IS ? ORDER BY enqueued_at, id LIMIT 1";

/** Queued jobs of a lane ahead of a (tag, id): a queue position. */
export const AHEAD_QUERY =
  "SELECT count(*) AS n FROM jobs WHERE status = 'queued' AND tier = ? AND version IS ? AND (tag < ? OR (tag = ? AND id < ?))";

/** A lane's last queued tag: where position interpolation ends. */
export const TAIL_QUERY =
  "SELECT tag FROM jobs WHERE status = 'queued' AND tier = ? AND version IS ? ORDER BY tag DESC, id DESC LIMIT 1";

/** A lane's jobs queued before a time, oldest first: the queue-TTL sweep. */
export const EXPIRED_QUERY =
  "SELECT * FROM jobs WHERE status = 'queued' AND tier = ? AND version IS ? AND enqueued_at <= ? ORDER BY enqueued_at LIMIT ?";

/** An id's job, if any, and its tombstone, if deleted: what an enqueue checks first. */
export const CLAIMED_QUERY = `SELECT j.status, j.tier, j.created_at, t.epoch AS tomb
  FROM (SELECT ? AS id) k LEFT JOIN jobs j ON j.id = k.id LEFT JOIN tombstones t ON t.id = k.id`;

/** The running jobs' leases, read once when a shard wakes up. */
export const RUNNING_LEASES_QUERY = `SELECT id, agent_id, epoch, lease_deadline,
  json_extract(attempts, '$[#-1].started_at') AS granted_at
  FROM jobs WHERE status = 'running' AND lease_deadline IS NOT NULL`;

/** Routed jobs of a lane back to the unpinned lane (see {@link SchedulerStore.relane}). */
export const RELANE_QUERY =
  "UPDATE jobs SET version = NULL, routed = 0 WHERE status = 'queued' AND tier = ? AND version = ? AND routed = 1 RETURNING id";

/** A lane: a tier's jobs pinned to one version, or (`null`) those any version may run. */
export type Lane = string | null;

/** A webhook message waiting in the outbox for the account's WebhookActor to take it. */
export interface OutboxRow {
  [k: string]: SqlValue;
  id: number;
  account_id: string;
  job_id: string;
  endpoint: string;
  url: string | null;
  type: string;
  payload: string;
  at: number;
}

/** Typed access to the scheduler's tables. */
export class SchedulerStore {
  readonly sql: Sql;

  constructor(sql: Sql) {
    this.sql = sql;
  }

  getMeta(k: string): string | undefined {
    return getMeta(this.sql, k);
  }

  setMeta(k: string, v: string): void {
    setMeta(this.sql, k, v);
  }

  job(id: string): JobRow | undefined {
    return one<JobRow>(this.sql, "SELECT * FROM jobs WHERE id = ?", id);
  }

  insertJob(
    j: Pick<JobRow, "id" | "account_id" | "tier" | "tag" | "enqueued_at" | "body" | "version" | "routed" | "hooks">,
  ): void {
    this.sql.run(
      `INSERT INTO jobs (id, account_id, tier, status, phase, tag, enqueued_at, created_at, body, version, routed, hooks)
       VALUES (?, ?, ?, 'queued', 'waiting', ?, ?, ?, ?, ?, ?, ?)`,
      j.id,
      j.account_id,
      j.tier,
      j.tag,
      j.enqueued_at,
      j.enqueued_at,
      j.body,
      j.version,
      j.routed,
      j.hooks,
    );
  }

  /**
   * Moves a tier's queued jobs routed to `lane` back to the unpinned lane, keeping their enqueue
   * times and tags; jobs their owners pinned there stay. One statement over the lane's range of
   * the pick index; answers how many moved (counted by RETURNING: a Durable Object's
   * `rowsWritten` counts index writes too).
   */
  relane(tier: string, lane: string): number {
    return this.sql.all(RELANE_QUERY, tier, lane).length;
  }

  /** Puts one routed job back in the unpinned lane (it returns to its queue after its lane went). */
  unroute(id: string): void {
    this.sql.run("UPDATE jobs SET version = NULL, routed = 0 WHERE id = ?", id);
  }

  lastTag(accountId: string, tier: string): number | undefined {
    return one<{ last_tag: number }>(
      this.sql,
      "SELECT last_tag FROM account_tags WHERE account_id = ? AND tier = ?",
      accountId,
      tier,
    )?.last_tag;
  }

  setLastTag(accountId: string, tier: string, tag: number): void {
    this.sql.run(
      `INSERT INTO account_tags (account_id, tier, last_tag) VALUES (?, ?, ?)
       ON CONFLICT (account_id, tier) DO UPDATE SET last_tag = excluded.last_tag`,
      accountId,
      tier,
      tag,
    );
  }

  headOf(tier: string, lane: Lane): HeadRow | undefined {
    return one<HeadRow>(this.sql, HEAD_QUERY, tier, lane);
  }

  oldestJob(tier: string, lane: Lane): { id: string; enqueued_at: number } | undefined {
    return one<{ id: string; enqueued_at: number }>(this.sql, OLDEST_QUERY, tier, lane);
  }

  /** Queued jobs of a lane ahead of `tag`: walks the index range, so callers bound its use. */
  countAhead(tier: string, lane: Lane, tag: number, id: string): number {
    return one<{ n: number }>(this.sql, AHEAD_QUERY, tier, lane, tag, tag, id)?.n ?? 0;
  }

  lastQueuedTag(tier: string, lane: Lane): number | undefined {
    return one<{ tag: number }>(this.sql, TAIL_QUERY, tier, lane)?.tag;
  }

  /**
   * The running jobs' leases, as a shard waking up loads them: holder, epoch, deadline as granted,
   * and when the current attempt started (the last attempt's start).
   */
  runningLeases(): RunningLease[] {
    return this.sql.all<RunningLease>(RUNNING_LEASES_QUERY);
  }

  /** Queued jobs per tier, lane and account. */
  queuedLanes(): { tier: string; version: Lane; account_id: string; n: number }[] {
    return this.sql.all<{ tier: string; version: Lane; account_id: string; n: number }>(
      "SELECT tier, version, account_id, count(*) AS n FROM jobs WHERE status = 'queued' GROUP BY tier, version, account_id",
    );
  }

  countsByStatus(): { tier: string; status: string; n: number }[] {
    return this.sql.all<{ tier: string; status: string; n: number }>(
      "SELECT tier, status, count(*) AS n FROM jobs WHERE status IN ('queued', 'running') GROUP BY tier, status",
    );
  }

  expiredQueued(tier: string, lane: Lane, before: number, limit: number): JobRow[] {
    return this.sql.all<JobRow>(EXPIRED_QUERY, tier, lane, before, limit);
  }

  oldestFinished(): number | undefined {
    return (
      one<{ t: number | null }>(this.sql, "SELECT min(finished_at) AS t FROM jobs WHERE finished_at IS NOT NULL")?.t ??
      undefined
    );
  }

  /**
   * Deletes finished jobs past retention, oldest first, leaving tombstones (so an id that comes
   * back is known as deleted); answers the ids deleted.
   */
  deleteFinishedBefore(before: number, limit: number, now: number): string[] {
    const ids = this.sql
      .all<{ id: string }>(
        "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at <= ? ORDER BY finished_at LIMIT ?",
        before,
        limit,
      )
      .map((r) => r.id);
    for (const id of ids) this.deleteJob(id, now);
    return ids;
  }

  /** Deletes a job, leaving a tombstone with its last epoch. */
  deleteJob(id: string, now: number): void {
    this.sql.run(
      "INSERT OR REPLACE INTO tombstones (id, epoch, deleted_at) SELECT id, epoch, ? FROM jobs WHERE id = ?",
      now,
      id,
    );
    this.sql.run("DELETE FROM jobs WHERE id = ?", id);
  }

  /**
   * Whether an id is taken, in one read: the job holding it, or the last epoch of the job that
   * held it and was deleted recently enough to remember.
   */
  claimed(id: string): { job?: Pick<JobRow, "id" | "status" | "tier" | "created_at">; tombstone?: number } {
    const r = one<{ status: string | null; tier: string | null; created_at: number | null; tomb: number | null }>(
      this.sql,
      CLAIMED_QUERY,
      id,
    );
    if (r?.status != null && r.tier !== null && r.created_at !== null)
      return { job: { id, status: r.status, tier: r.tier, created_at: r.created_at } };
    return r?.tomb == null ? {} : { tombstone: r.tomb };
  }

  /** The last epoch of a deleted job, if it was deleted recently enough to remember. */
  tombstone(id: string): number | undefined {
    return one<{ epoch: number }>(this.sql, "SELECT epoch FROM tombstones WHERE id = ?", id)?.epoch;
  }

  deleteTombstonesBefore(before: number): number {
    return this.sql.run("DELETE FROM tombstones WHERE deleted_at <= ?", before);
  }

  /** The account's jobs, newest first (ids sort by creation time), after `cursor`. */
  listFor(accountId: string, status: string | undefined, limit: number, cursor: string | undefined): JobRow[] {
    const before = cursor ?? "\u{10ffff}";
    return status === undefined
      ? this.sql.all<JobRow>(
          "SELECT * FROM jobs WHERE account_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
          accountId,
          before,
          limit,
        )
      : this.sql.all<JobRow>(
          "SELECT * FROM jobs WHERE account_id = ? AND id < ? AND status = ? ORDER BY id DESC LIMIT ?",
          accountId,
          before,
          status,
          limit,
        );
  }

  /** Writes the mutable columns of a job row back. */
  saveJob(j: JobRow): void {
    this.sql.run(
      `UPDATE jobs SET status = ?, phase = ?, tag = ?, started_at = ?, finished_at = ?, epoch = ?, agent_id = ?,
         lease_deadline = ?, spent = ?, progress = ?, outputs = ?, error_code = ?, error_message = ?, attempts = ?
       WHERE id = ?`,
      j.status,
      j.phase,
      j.tag,
      j.started_at,
      j.finished_at,
      j.epoch,
      j.agent_id,
      j.lease_deadline,
      j.spent,
      j.progress,
      j.outputs,
      j.error_code,
      j.error_message,
      j.attempts,
      j.id,
    );
  }

  /** Adds to an account's usage of a version in the hour of `at`: one UPSERT. */
  addUsage(d: UsageDelta): void {
    this.sql.run(
      USAGE_UPSERT,
      d.account_id,
      d.version,
      Math.floor(d.at / USAGE_HOUR_MS) * USAGE_HOUR_MS,
      d.gpu_ms ?? 0,
      d.executing_ms ?? 0,
      d.lost_gpu_ms ?? 0,
      d.attempts ?? 0,
      d.succeeded ?? 0,
      d.failed ?? 0,
      d.cancelled ?? 0,
      d.expired ?? 0,
      d.output_bytes ?? 0,
    );
  }

  /** An account's usage buckets with hours in [from, to), oldest first. */
  usageFor(accountId: string, from: number, to: number): UsageRow[] {
    return this.sql.all<UsageRow>(
      "SELECT * FROM usage WHERE account_id = ? AND hour >= ? AND hour < ? ORDER BY hour, version",
      accountId,
      from,
      to,
    );
  }

  /** Adds a webhook message to the outbox; answers it with its id (its order within the shard). */
  addOutbox(m: Pick<OutboxRow, "account_id" | "job_id" | "endpoint" | "url" | "type" | "payload" | "at">): OutboxRow {
    const [row] = this.sql.all<OutboxRow>(
      `INSERT INTO webhook_outbox (account_id, job_id, endpoint, url, type, payload, at)
       VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *`,
      m.account_id,
      m.job_id,
      m.endpoint,
      m.url,
      m.type,
      m.payload,
      m.at,
    );
    if (!row) throw new Error("the outbox answered no row");
    return row;
  }

  /** The outbox's oldest messages. */
  outbox(limit: number): OutboxRow[] {
    return this.sql.all<OutboxRow>("SELECT * FROM webhook_outbox ORDER BY id LIMIT ?", limit);
  }

  /** Deletes messages the WebhookActor took. */
  deleteOutbox(ids: readonly number[]): void {
    for (const id of ids) this.sql.run("DELETE FROM webhook_outbox WHERE id = ?", id);
  }
}
