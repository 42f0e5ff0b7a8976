import { describe, expect, it } from "vitest";
import { nodeSql } from "../sql/node.ts";
import { migrate, type SqlValue } from "../sql/sql.ts";
import { HAS_PIECE_QUERY, LIST_QUERY, MIGRATIONS, UNSEEN_QUERY, VersionsStore } from "./store.ts";

const sha = (i: number): string => i.toString(16).padStart(64, "0");

/** A migrated in-memory store with `n` versions of 40 pieces each, half of them seen, half ready. */
function populated(n: number): { sql: ReturnType<typeof nodeSql>; store: VersionsStore } {
  const sql = nodeSql();
  migrate(sql, MIGRATIONS);
  const store = new VersionsStore(sql);
  for (let v = 0; v < n; v++) {
    const pieces = new Map(Array.from({ length: 40 }, (_, i) => [sha(v * 40 + i), 8] as const));
    store.addVersion(
      { version: `v${v}`, digest: sha(v), bytes: 320, pieces: 40, push: "{}", created_at: 1000 + v, created_by: "t" },
      pieces,
    );
    store.notePieces([...pieces].filter((_, i) => i % 2 === 0).map(([s, size]) => ({ sha256: s, size })));
    if (v % 2 === 0) store.markReady(`v${v}`, 2000 + v);
  }
  return { sql, store };
}

function plan(sql: ReturnType<typeof nodeSql>, query: string, ...params: SqlValue[]): string {
  return sql
    .all<{ detail: string }>(`EXPLAIN QUERY PLAN ${query}`, ...params)
    .map((r) => r.detail)
    .join("\n");
}

describe("versions store query plans", () => {
  it("an agent's piece check is a primary-key seek on version_pieces and on versions, never a scan", () => {
    const { sql, store } = populated(50);
    const text = plan(sql, HAS_PIECE_QUERY, "v2", sha(81));
    expect(text).toMatch(/SEARCH vp USING PRIMARY KEY \(version=\? AND sha256=\?\)/);
    expect(text).toMatch(/SEARCH v USING PRIMARY KEY \(version=\?\)/);
    expect(text).not.toMatch(/SCAN/);
    expect(store.hasPiece("v2", sha(81))).toBe(true);
    expect(store.hasPiece("v1", sha(41))).toBe(false);
    expect(store.hasPiece("v2", sha(41))).toBe(false);
  });

  it("a version's unseen pieces are read by its primary-key range, each checked by a seek on pieces", () => {
    const { sql, store } = populated(50);
    const text = plan(sql, UNSEEN_QUERY, "v3");
    expect(text).toMatch(/SEARCH vp USING PRIMARY KEY \(version=\?\)/);
    expect(text).toMatch(/SEARCH p USING PRIMARY KEY \(sha256=\?\)/);
    expect(text).not.toMatch(/SCAN/);
    expect(store.unseenPieces("v3")).toHaveLength(20);
  });

  it("a listing reads versions_created newest first without sorting", () => {
    const { sql, store } = populated(50);
    const text = plan(sql, LIST_QUERY);
    expect(text).toMatch(/USING (COVERING )?INDEX versions_created/);
    expect(text).not.toMatch(/TEMP B-TREE/);
    expect(
      store
        .versions()
        .map((v) => v.version)
        .slice(0, 3),
    ).toEqual(["v49", "v48", "v47"]);
  });
});
