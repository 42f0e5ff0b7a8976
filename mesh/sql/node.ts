/**
 * The {@link Sql} adapter over `node:sqlite`, for plain-Node tests and benchmarks of the same
 * store code that runs in the actors.
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { Row, Sql, SqlValue } from "./sql.ts";

export function nodeSql(path = ":memory:"): Sql & { db: DatabaseSync } {
  const db = new DatabaseSync(path);
  const cache = new Map<string, StatementSync>();
  const prep = (q: string): StatementSync => {
    let s = cache.get(q);
    if (!s) {
      s = db.prepare(q);
      cache.set(q, s);
    }
    return s;
  };
  return {
    db,
    all<T extends Row = Row>(query: string, ...params: SqlValue[]): T[] {
      return prep(query).all(...params) as T[];
    },
    run(query: string, ...params: SqlValue[]): number {
      return Number(prep(query).run(...params).changes);
    },
  };
}
