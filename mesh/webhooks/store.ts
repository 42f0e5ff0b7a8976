/**
 * All SQL of the webhook actor: its messages (one event for one endpoint, with its state and
 * when it is next tried) and every attempt made at them. The hot query is the due pick
 * (`DUE_QUERY`): pending messages past their time whose job has no earlier message pending for
 * the same endpoint, so one job's events arrive in order.
 */
import { getMeta, one, setMeta, type Sql, type SqlValue } from "../sql/sql.ts";

export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
   CREATE TABLE messages (
     id TEXT PRIMARY KEY,
     job_id TEXT NOT NULL,
     endpoint TEXT NOT NULL,
     url TEXT,
     type TEXT NOT NULL,
     payload TEXT NOT NULL,
     seq INTEGER NOT NULL,
     created_at INTEGER NOT NULL,
     state TEXT NOT NULL,
     tries INTEGER NOT NULL DEFAULT 0,
     next_at INTEGER
   );
   CREATE INDEX messages_due ON messages (next_at) WHERE state = 'pending';
   CREATE INDEX messages_job ON messages (job_id, endpoint, seq);
   CREATE INDEX messages_created ON messages (created_at);
   CREATE TABLE attempts (
     message_id TEXT NOT NULL,
     n INTEGER NOT NULL,
     at INTEGER NOT NULL,
     status INTEGER,
     error TEXT,
     duration_ms INTEGER NOT NULL,
     PRIMARY KEY (message_id, n)
   ) WITHOUT ROWID`,
];

export interface MessageRow {
  [k: string]: SqlValue;
  id: string;
  job_id: string;
  endpoint: string;
  url: string | null;
  type: string;
  payload: string;
  seq: number;
  created_at: number;
  state: "pending" | "delivered" | "failed";
  /** Attempts since it was (re)queued: the retry schedule's place. */
  tries: number;
  next_at: number | null;
}

export interface AttemptRow {
  [k: string]: SqlValue;
  message_id: string;
  n: number;
  at: number;
  status: number | null;
  error: string | null;
  duration_ms: number;
}

/** Due messages: pending, past their time, and first in line for their job and endpoint. */
export const DUE_QUERY = `SELECT m.* FROM messages m
  WHERE m.state = 'pending' AND m.next_at <= ? AND NOT EXISTS (
    SELECT 1 FROM messages p
    WHERE p.job_id = m.job_id AND p.endpoint = m.endpoint AND p.seq < m.seq AND p.state = 'pending')
  ORDER BY m.next_at LIMIT ?`;

export class WebhookStore {
  readonly sql: Sql;

  constructor(sql: Sql) {
    this.sql = sql;
  }

  /** The account whose messages these are. */
  account(): string | undefined {
    return getMeta(this.sql, "account");
  }

  setAccount(id: string): void {
    setMeta(this.sql, "account", id);
  }

  /** Adds a message unless its id is known (a hand-over repeated after a restart). */
  insert(
    m: Pick<
      MessageRow,
      "id" | "job_id" | "endpoint" | "url" | "type" | "payload" | "seq" | "created_at" | "state" | "next_at"
    >,
  ): boolean {
    return (
      this.sql.run(
        `INSERT OR IGNORE INTO messages (id, job_id, endpoint, url, type, payload, seq, created_at, state, next_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        m.id,
        m.job_id,
        m.endpoint,
        m.url,
        m.type,
        m.payload,
        m.seq,
        m.created_at,
        m.state,
        m.next_at,
      ) > 0
    );
  }

  due(now: number, limit: number): MessageRow[] {
    return this.sql.all<MessageRow>(DUE_QUERY, now, limit);
  }

  /** When the next pending message is due, if any. */
  nextDue(): number | undefined {
    return (
      one<{ t: number | null }>(this.sql, "SELECT min(next_at) AS t FROM messages WHERE state = 'pending'")?.t ??
      undefined
    );
  }

  settle(id: string, state: MessageRow["state"], tries: number, nextAt: number | null): void {
    this.sql.run("UPDATE messages SET state = ?, tries = ?, next_at = ? WHERE id = ?", state, tries, nextAt, id);
  }

  addAttempt(a: Pick<AttemptRow, "message_id" | "at" | "status" | "error" | "duration_ms">): void {
    this.sql.run(
      `INSERT INTO attempts (message_id, n, at, status, error, duration_ms)
       VALUES (?, (SELECT count(*) + 1 FROM attempts WHERE message_id = ?), ?, ?, ?, ?)`,
      a.message_id,
      a.message_id,
      a.at,
      a.status,
      a.error,
      a.duration_ms,
    );
  }

  /** A job's messages, in the order they were made. */
  ofJob(jobId: string): MessageRow[] {
    return this.sql.all<MessageRow>("SELECT * FROM messages WHERE job_id = ? ORDER BY seq, endpoint", jobId);
  }

  attemptsOf(messageId: string): AttemptRow[] {
    return this.sql.all<AttemptRow>("SELECT * FROM attempts WHERE message_id = ? ORDER BY n", messageId);
  }

  /**
   * Queues a job's settled messages (of one event type, or all) again from the schedule's start;
   * answers how many (counted by RETURNING: a Durable Object's `rowsWritten` counts index writes).
   */
  redeliver(jobId: string, type: string | undefined, now: number): number {
    return this.sql.all(
      `UPDATE messages SET state = 'pending', tries = 0, next_at = ?
       WHERE job_id = ? AND state != 'pending' AND (? IS NULL OR type = ?) RETURNING id`,
      now,
      jobId,
      type ?? null,
      type ?? null,
    ).length;
  }

  /** Fails an endpoint's pending messages (it was disabled or removed). */
  failPending(endpoint: string): number {
    return this.sql.all(
      "UPDATE messages SET state = 'failed', next_at = NULL WHERE endpoint = ? AND state = 'pending' RETURNING id",
      endpoint,
    ).length;
  }

  /** Forgets settled messages made before `before`, with their attempts. */
  deleteSettledBefore(before: number): number {
    const ids = this.sql
      .all<{ id: string }>(
        "SELECT id FROM messages WHERE created_at <= ? AND state != 'pending' ORDER BY created_at LIMIT 500",
        before,
      )
      .map((r) => r.id);
    for (const id of ids) {
      this.sql.run("DELETE FROM attempts WHERE message_id = ?", id);
      this.sql.run("DELETE FROM messages WHERE id = ?", id);
    }
    return ids.length;
  }
}
