/**
 * The {@link Sql} adapter over a Durable Object's SQLite storage. Each RPC call into an actor is
 * one event, and all writes of one event are committed together (the output gate holds the
 * answer until they are durable), so stores need no explicit transactions.
 */
import type { Row, Sql, SqlValue } from "./sql.ts";

export function durableSql(storage: SqlStorage): Sql {
  return {
    all<T extends Row = Row>(query: string, ...params: SqlValue[]): T[] {
      return storage.exec<T>(query, ...params).toArray();
    },
    run(query: string, ...params: SqlValue[]): number {
      const cursor = storage.exec(query, ...params);
      cursor.toArray();
      return cursor.rowsWritten;
    },
  };
}
