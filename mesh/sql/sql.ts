/**
 * The smallest SQL surface the actors' stores need, so that the same store code runs on a
 * Durable Object's SQLite (`ctx.storage.sql`) in workerd and on `node:sqlite` in plain-Node
 * tests and benchmarks. Adapters live beside the runtime that owns them.
 */
export type SqlValue = string | number | null;
export type Row = Record<string, SqlValue>;

export interface Sql {
  /** Runs a query and returns every row. */
  all<T extends Row = Row>(query: string, ...params: SqlValue[]): T[];
  /** Runs a statement and returns how many rows it wrote. */
  run(query: string, ...params: SqlValue[]): number;
}

/** Returns the first row of a query, or `undefined`. */
export function one<T extends Row>(sql: Sql, query: string, ...params: SqlValue[]): T | undefined {
  return sql.all<T>(query, ...params)[0];
}

/** Reads a value of an actor's `meta (k, v)` table. */
export function getMeta(sql: Sql, k: string): string | undefined {
  return one<{ v: string }>(sql, "SELECT v FROM meta WHERE k = ?", k)?.v;
}

/** Writes a value of an actor's `meta (k, v)` table. */
export function setMeta(sql: Sql, k: string, v: string): void {
  sql.run("INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", k, v);
}

/**
 * Whether migrations ever ran here. Reads only, so an actor can tell an empty store from one it
 * never made, and make its tables on its first legitimate write rather than whenever it is asked.
 */
export function migrated(sql: Sql): boolean {
  return one(sql, "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = '_migrations'") !== undefined;
}

/**
 * Applies numbered migrations once each, in order. A shipped migration is never edited: add
 * the next number instead.
 */
export function migrate(sql: Sql, migrations: readonly string[]): void {
  sql.run("CREATE TABLE IF NOT EXISTS _migrations (n INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
  const done = new Set(sql.all<{ n: number }>("SELECT n FROM _migrations").map((r) => r.n));
  migrations.forEach((m, i) => {
    if (done.has(i + 1)) return;
    for (const stmt of m
      .split(";")
      .map((s) => s.trim())
      .filter(Boolean))
      sql.run(stmt);
    sql.run("INSERT INTO _migrations (n, applied_at) VALUES (?, ?)", i + 1, Date.now());
  });
}
