import { describe, expect, it } from "vitest";
import type { SqlValue } from "../sql/sql.ts";
import { migrate } from "../sql/sql.ts";
import { nodeSql } from "../sql/node.ts";
import {
  AHEAD_QUERY,
  CLAIMED_QUERY,
  EXPIRED_QUERY,
  HEAD_QUERY,
  MIGRATIONS,
  OLDEST_QUERY,
  RELANE_QUERY,
  RUNNING_LEASES_QUERY,
  SchedulerStore,
  TAIL_QUERY,
} from "./store.ts";

const TIERS = ["api", "enterprise", "plus", "light", "free"];

/** A migrated in-memory database with queued, running and finished jobs in every tier. */
function populated(n: number): { sql: ReturnType<typeof nodeSql>; store: SchedulerStore } {
  const sql = nodeSql();
  migrate(sql, MIGRATIONS);
  const store = new SchedulerStore(sql);
  for (let i = 0; i < n; i++) {
    const id = `job_${String(i).padStart(8, "0")}`;
    store.insertJob({
      id,
      account_id: `acc_${i % 7}`,
      tier: TIERS[i % TIERS.length]!,
      tag: 1000 + i * 0.5,
      enqueued_at: 1_000_000 + i,
      body: "{}",
      // Every fifth job is pinned to a version, every tenth routed there: its own lane of the tier.
      version: i % 5 === 0 ? "v2" : null,
      routed: i % 10 === 0 ? 1 : 0,
      hooks: null,
    });
    const row = store.job(id)!;
    if (i % 3 === 1) {
      row.status = "running";
      row.agent_id = `agent_${i % 4}`;
      row.lease_deadline = 2_000_000 + i;
      store.saveJob(row);
    } else if (i % 3 === 2) {
      row.status = "succeeded";
      row.finished_at = 3_000_000 + i;
      store.saveJob(row);
    }
  }
  return { sql, store };
}

function plan(sql: ReturnType<typeof nodeSql>, query: string, ...params: SqlValue[]): string[] {
  return sql.all<{ detail: string }>(`EXPLAIN QUERY PLAN ${query}`, ...params).map((r) => r.detail);
}

/** What is wrong with a plan that should search `index` without a scan or a sort: nothing, ideally. */
function planProblems(details: string[], index: string): string[] {
  const text = details.join("\n");
  const problems: string[] = [];
  if (!new RegExp(`USING (COVERING )?INDEX ${index}\\b`).test(text)) problems.push(`does not use ${index}: ${text}`);
  if (/SCAN jobs/.test(text)) problems.push(`scans jobs: ${text}`);
  if (/TEMP B-TREE/.test(text)) problems.push(`sorts in a temp b-tree: ${text}`);
  return problems;
}

describe("scheduler store query plans", () => {
  it("the pick query uses the jobs_pick index and never scans or sorts", () => {
    const { sql, store } = populated(600);
    expect(planProblems(plan(sql, HEAD_QUERY, "api", null), "jobs_pick")).toEqual([]);
    expect(planProblems(plan(sql, HEAD_QUERY, "api", "v2"), "jobs_pick")).toEqual([]);
    // Statistics must not talk the planner out of it.
    sql.run("ANALYZE");
    expect(planProblems(plan(sql, HEAD_QUERY, "free", null), "jobs_pick")).toEqual([]);
    // And the query answers the (tag, id) head of the tier's queued jobs.
    const head = store.headOf("api", null);
    const queued = sql.all<{ id: string; tag: number }>(
      "SELECT id, tag FROM jobs WHERE tier = 'api' AND status = 'queued' AND version IS NULL",
    );
    const expected = queued.sort((a, b) => a.tag - b.tag || (a.id < b.id ? -1 : 1))[0];
    expect(head?.id).toBe(expected?.id);
  });

  it("the sweep, wake-up and position queries use their partial indexes and never scan or sort", () => {
    const { sql } = populated(600);
    sql.run("ANALYZE");
    const cases: [string, string, ...SqlValue[]][] = [
      ["jobs_wait", OLDEST_QUERY, "api", null],
      ["jobs_wait", OLDEST_QUERY, "api", "v2"],
      ["jobs_wait", EXPIRED_QUERY, "api", null, 1_000_100, 500],
      ["jobs_wait", EXPIRED_QUERY, "api", "v2", 1_000_100, 500],
      ["jobs_lease", RUNNING_LEASES_QUERY],
      ["jobs_finished", "SELECT min(finished_at) AS t FROM jobs WHERE finished_at IS NOT NULL"],
      ["jobs_pick", AHEAD_QUERY, "api", null, 1100, 1100, "job_"],
      ["jobs_pick", AHEAD_QUERY, "api", "v2", 1100, 1100, "job_"],
      ["jobs_pick", TAIL_QUERY, "api", null],
      ["jobs_pick", TAIL_QUERY, "api", "v2"],
      // Either lane index serves it: both lead with (tier, version).
      ["jobs_(?:pick|wait)", RELANE_QUERY, "api", "v2"],
      ["sqlite_autoindex_jobs_1", CLAIMED_QUERY, "job_x"],
    ];
    const problems = cases.flatMap(([index, query, ...params]) =>
      planProblems(plan(sql, query, ...params), index).map((p) => `${query}: ${p}`),
    );
    expect(problems).toEqual([]);
    // The check itself sees a scan and a sort when there is one.
    const bad = plan(sql, "SELECT id FROM jobs WHERE body = ? ORDER BY created_at", "{}");
    expect(planProblems(bad, "jobs_pick")).toHaveLength(3);
  });

  it("migrations apply once: a second migrate on the same database is a no-op", () => {
    const { sql, store } = populated(10);
    migrate(sql, MIGRATIONS);
    expect(sql.all("SELECT n FROM _migrations")).toEqual(MIGRATIONS.map((_, i) => ({ n: i + 1 })));
    expect(store.countsByStatus().reduce((s, r) => s + r.n, 0)).toBe(7);
  });
});
