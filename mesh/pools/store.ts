/**
 * All SQL of the pools actor: each pool's spec as applied, its webhook secret and its decision
 * state, and every call made to its provisioner or webhook with the answer (kept, and shown by
 * `floodgate pools status`).
 */
import type { PoolCall, PoolSpec } from "../../shared/pools.ts";
import { getMeta, one, setMeta, type Sql } from "../sql/sql.ts";
import type { PoolChange, PoolState } from "./decide.ts";

export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
   CREATE TABLE pools (name TEXT PRIMARY KEY, spec TEXT NOT NULL, secret TEXT, state TEXT NOT NULL) WITHOUT ROWID;
   CREATE TABLE pool_calls (
     id INTEGER PRIMARY KEY AUTOINCREMENT, pool TEXT NOT NULL, desired INTEGER NOT NULL, remove TEXT NOT NULL,
     reason TEXT NOT NULL, created_at INTEGER NOT NULL, sent_at INTEGER, answered_at INTEGER, ok INTEGER, answer TEXT
   );
   CREATE INDEX pool_calls_pool ON pool_calls (pool, id)`,
];

/** Calls kept per pool; older ones are dropped as new ones come. */
const CALLS_KEPT = 200;

export interface PoolRow {
  name: string;
  spec: PoolSpec;
  secret: string | null;
  state: PoolState;
}

interface CallRow {
  id: number;
  pool: string;
  desired: number;
  remove: string;
  reason: string;
  created_at: number;
  sent_at: number | null;
  answered_at: number | null;
  ok: number | null;
  answer: string | null;
  [k: string]: string | number | null;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** A call row as shown. */
export function callView(r: CallRow): PoolCall {
  return {
    id: r.id,
    pool: r.pool,
    desired: r.desired,
    remove: JSON.parse(r.remove) as string[],
    reason: r.reason,
    created_at: new Date(r.created_at).toISOString(),
    sent_at: iso(r.sent_at),
    answered_at: iso(r.answered_at),
    ok: r.ok === null ? null : r.ok === 1,
    answer: r.answer,
  };
}

export class PoolsStore {
  private readonly sql: Sql;

  constructor(sql: Sql) {
    this.sql = sql;
  }

  pools(): PoolRow[] {
    return this.sql
      .all<{ name: string; spec: string; secret: string | null; state: string }>(
        "SELECT name, spec, secret, state FROM pools ORDER BY name",
      )
      .map((r) => ({
        name: r.name,
        spec: JSON.parse(r.spec) as PoolSpec,
        secret: r.secret,
        state: JSON.parse(r.state) as PoolState,
      }));
  }

  putPool(p: PoolRow): void {
    this.sql.run(
      `INSERT INTO pools (name, spec, secret, state) VALUES (?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, secret = excluded.secret, state = excluded.state`,
      p.name,
      JSON.stringify(p.spec),
      p.secret,
      JSON.stringify(p.state),
    );
  }

  setState(name: string, state: PoolState): void {
    this.sql.run("UPDATE pools SET state = ? WHERE name = ?", JSON.stringify(state), name);
  }

  deletePool(name: string): void {
    this.sql.run("DELETE FROM pools WHERE name = ?", name);
    this.sql.run("DELETE FROM pool_calls WHERE pool = ?", name);
  }

  /** The pool's newest call, if any. */
  lastCall(pool: string): CallRow | undefined {
    return one<CallRow>(this.sql, "SELECT * FROM pool_calls WHERE pool = ? ORDER BY id DESC LIMIT 1", pool);
  }

  addCall(pool: string, c: PoolChange, now: number): number {
    this.sql.run(
      "INSERT INTO pool_calls (pool, desired, remove, reason, created_at) VALUES (?, ?, ?, ?, ?)",
      pool,
      c.desired,
      JSON.stringify(c.remove),
      c.reason,
      now,
    );
    const id = one<{ id: number }>(this.sql, "SELECT last_insert_rowid() AS id")?.id ?? 0;
    this.sql.run(
      "DELETE FROM pool_calls WHERE pool = ? AND id <= (SELECT id FROM pool_calls WHERE pool = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
      pool,
      pool,
      CALLS_KEPT,
    );
    return id;
  }

  /** A call not yet taken is brought up to date rather than followed by another. */
  updateUnsent(id: number, c: PoolChange, now: number): void {
    this.sql.run(
      "UPDATE pool_calls SET desired = ?, remove = ?, reason = ?, created_at = ? WHERE id = ? AND sent_at IS NULL",
      c.desired,
      JSON.stringify(c.remove),
      c.reason,
      now,
      id,
    );
  }

  /** Calls of `pools` not yet taken by a provisioner, oldest first; they are marked taken. */
  takeUnsent(pools: readonly string[], now: number): CallRow[] {
    if (pools.length === 0) return [];
    const marks = pools.map(() => "?").join(",");
    const rows = this.sql.all<CallRow>(
      `SELECT * FROM pool_calls WHERE sent_at IS NULL AND pool IN (${marks}) ORDER BY id`,
      ...pools,
    );
    for (const r of rows) this.sql.run("UPDATE pool_calls SET sent_at = ? WHERE id = ?", now, r.id);
    return rows;
  }

  markSent(id: number, now: number): void {
    this.sql.run("UPDATE pool_calls SET sent_at = ? WHERE id = ?", now, id);
  }

  call(id: number): CallRow | undefined {
    return one<CallRow>(this.sql, "SELECT * FROM pool_calls WHERE id = ?", id);
  }

  answer(id: number, ok: boolean, answer: string, now: number): void {
    this.sql.run(
      "UPDATE pool_calls SET answered_at = ?, ok = ?, answer = ? WHERE id = ? AND answered_at IS NULL",
      now,
      ok ? 1 : 0,
      answer.slice(0, 4096),
      id,
    );
  }

  recentCalls(pool: string, limit: number): PoolCall[] {
    return this.sql
      .all<CallRow>("SELECT * FROM pool_calls WHERE pool = ? ORDER BY id DESC LIMIT ?", pool, limit)
      .map(callView);
  }

  source(): string | undefined {
    return getMeta(this.sql, "source");
  }

  setSource(text: string): void {
    setMeta(this.sql, "source", text);
  }
}
