/**
 * `depth`: what one pick (lease + complete) costs as the queue grows from 1k to 1M jobs. The
 * design's rule is that a pick costs O(tiers) indexed queries and must not grow with depth
 * (goal: at 1M, within 1.5× of 1k).
 *
 * Runs {@link SchedulerCore} in this process on `node:sqlite` with a file-backed database: the
 * same store code and the same SQL as the SchedulerActor, on SQLite, without workerd, HTTP or
 * RPC. One database grows through the depths; after each fill the WAL is checkpointed so the
 * fill's one big transaction is not paid for by the first picks.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ModelConfig } from "../../shared/api.ts";
import { newJobId } from "../../shared/ids.ts";
import { DEFAULT_TIERS } from "../../shared/slo.ts";
import { SchedulerCore, type AgentRef, type EnqueueItem } from "../../mesh/scheduler/core.ts";
import { HEAD_QUERY } from "../../mesh/scheduler/store.ts";
import { nodeSql } from "../../mesh/sql/node.ts";
import type { Row, Sql, SqlValue } from "../../mesh/sql/sql.ts";
import { cpuMeter } from "../lib/cpu.ts";
import type { Benchmark, Report } from "../lib/report.ts";
import { mean, percentile, round } from "../lib/stats.ts";

const ACCOUNTS = 100;
const FILL_BATCH = 1000;
const ROUTE = { modelNumber: 0, shard: 0 };
const AGENT: AgentRef = { id: "agent-bench", pool: "bench" };

const MODEL: ModelConfig = {
  name: "bench",
  number: 0,
  updated_at: "2026-01-01T00:00:00.000Z",
  input_schema: { type: "object" },
  max_attempts: 3,
  run_timeout_s: 600,
  queue_ttl_s: 86400,
  retention_s: 7 * 86400,
  expected_runtime_s: 5,
  shards: 1,
};

/** Counts statements, to report how many one pick runs; the SQL itself is untouched. */
function counting(inner: Sql): Sql & { statements: number } {
  const wrapped = {
    statements: 0,
    all<T extends Row = Row>(query: string, ...params: SqlValue[]): T[] {
      wrapped.statements++;
      return inner.all<T>(query, ...params);
    },
    run(query: string, ...params: SqlValue[]): number {
      wrapped.statements++;
      return inner.run(query, ...params);
    },
  };
  return wrapped;
}

/** Job `n` of the synthetic load: accounts round-robin, each account in one of the 5 tiers. */
function item(n: number): EnqueueItem {
  const a = n % ACCOUNTS;
  return {
    id: newJobId(ROUTE),
    account_id: `acc_bench${String(a).padStart(3, "0")}`,
    tier: (DEFAULT_TIERS[a % DEFAULT_TIERS.length] as (typeof DEFAULT_TIERS)[number]).name,
    body: { model: MODEL.name, input: { prompt: `a red fox in the snow, take ${n}` } },
  };
}

interface Level {
  depth: number;
  fillS: number;
  leaseMs: number[];
  completeMs: number[];
  pickMs: number[];
  statementsPerPick: number;
  /** Cores other processes kept busy while the picks ran. */
  othersCores: number;
}

export const depth: Benchmark = {
  name: "depth",
  description: "pick cost (lease + complete) at 1k, 100k and 1M queued jobs (SchedulerCore on node:sqlite)",
  async run({ quick, log }): Promise<Report> {
    const depths = quick ? [1_000, 100_000] : [1_000, 100_000, 1_000_000];
    const picks = quick ? 2_000 : 5_000;
    const warmup = 200;
    const dir = mkdtempSync(join(tmpdir(), "floodgate-depth-"));
    const node = nodeSql(join(dir, "scheduler.sqlite"));
    try {
      // WAL without fsync per commit: the figure is the scheduler's SQL work, not the disk's.
      node.db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF");
      const sqliteVersion = String(node.all<{ v: string }>("SELECT sqlite_version() AS v")[0]?.v);
      const sql = counting(node);
      const core = new SchedulerCore(sql);
      const plan = node
        .all<{ detail: string }>(`EXPLAIN QUERY PLAN ${HEAD_QUERY}`, "api")
        .map((r) => r.detail)
        .join("; ");
      core.configure({ model: MODEL, tiers: [...DEFAULT_TIERS] });
      let queued = 0;
      let minted = 0;
      const levels: Level[] = [];
      for (const target of depths) {
        log(`filling to ${target.toLocaleString("en")} queued jobs…`);
        const t0 = performance.now();
        node.db.exec("BEGIN");
        while (queued < target) {
          const n = Math.min(FILL_BATCH, target - queued);
          const items = Array.from({ length: n }, () => item(minted++));
          // admit = false: admission control is the submit path's business, not the pick's.
          core.enqueue(items, Date.now(), false);
          queued += n;
        }
        node.db.exec("COMMIT");
        node.db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
        const fillS = (performance.now() - t0) / 1000;
        log(`  filled in ${fillS.toFixed(1)} s; ${picks} picks…`);
        const level: Level = {
          depth: target,
          fillS,
          leaseMs: [],
          completeMs: [],
          pickMs: [],
          statementsPerPick: 0,
          othersCores: 0,
        };
        let statements = 0;
        const cpu = cpuMeter();
        const pickStart = performance.now();
        for (let i = 0; i < warmup + picks; i++) {
          const s0 = sql.statements;
          const a = performance.now();
          const [lease] = core.lease(AGENT, 1, Date.now());
          const b = performance.now();
          if (!lease) throw new Error(`no job to lease at depth ${target}`);
          const done = core.complete(
            { job_id: lease.job_id, epoch: lease.epoch },
            { status: "succeeded", outputs: [] },
            Date.now(),
          );
          const c = performance.now();
          if (!done.ok) throw new Error(`complete refused: ${done.message}`);
          if (i >= warmup) {
            statements += sql.statements - s0;
            level.leaseMs.push(b - a);
            level.completeMs.push(c - b);
            level.pickMs.push(c - a);
          }
          // Untimed: one new job replaces the one served, so the depth holds at the target.
          core.enqueue([item(minted++)], Date.now(), false);
        }
        level.statementsPerPick = statements / picks;
        level.othersCores = cpu().othersMs / (performance.now() - pickStart);
        levels.push(level);
      }
      const base = levels[0] as Level;
      const baseMedian = percentile(base.pickMs, 50);
      const last = levels.at(-1) as Level;
      const ratio = percentile(last.pickMs, 50) / baseMedian;
      return {
        target: `no port: SchedulerCore in-process on node:sqlite (SQLite ${sqliteVersion}), file-backed; the same store code and SQL as the SchedulerActor, whose storage is SQLite too; no workerd, HTTP or RPC`,
        setup: {
          tiers: DEFAULT_TIERS.map((t) => `${t.name} (${t.slo_s} s)`).join(", "),
          accounts: `${ACCOUNTS}, each in one tier, jobs round-robin over accounts`,
          fill: `core.enqueue in batches of ${FILL_BATCH} inside one transaction, then a WAL checkpoint`,
          picks_per_depth: `${picks} timed after ${warmup} warm-up; each pick is lease(capacity 1) + complete(succeeded), each its own autocommit write; one untimed enqueue after each keeps the depth`,
          sqlite: "journal_mode WAL, synchronous OFF, default page cache",
        },
        tables: [
          {
            title: "Pick cost by queue depth (ms per pick; a pick = lease + complete)",
            columns: [
              "queued jobs",
              "fill s",
              "lease p50",
              "complete p50",
              "pick p50",
              "pick mean",
              "pick p99",
              "p50 vs 1k",
              "SQL statements/pick",
              "other procs, cores",
            ],
            rows: levels.map((l) => [
              l.depth.toLocaleString("en"),
              l.fillS,
              percentile(l.leaseMs, 50),
              percentile(l.completeMs, 50),
              percentile(l.pickMs, 50),
              mean(l.pickMs),
              percentile(l.pickMs, 99),
              `${(percentile(l.pickMs, 50) / baseMedian).toFixed(2)}×`,
              round(l.statementsPerPick, 1) ?? 0,
              l.othersCores,
            ]),
          },
        ],
        metrics: {
          ...Object.fromEntries(
            levels.flatMap((l) => [
              [`pick_p50_ms_at_${l.depth}`, round(percentile(l.pickMs, 50), 4)],
              [`pick_p99_ms_at_${l.depth}`, round(percentile(l.pickMs, 99), 4)],
            ]),
          ),
          deepest_over_1k_p50: round(ratio, 3),
          goal_within_1_5x_met: quick ? null : ratio <= 1.5,
        },
        notes: [
          `Goal: the pick p50 at ${last.depth.toLocaleString("en")} is ${ratio.toFixed(2)}× the one at 1,000${quick ? " (quick run: 1M not measured)" : ` (goal ≤ 1.5×: ${ratio <= 1.5 ? "met" : "not met"})`}.`,
          `Head query plan (per tier): ${plan}.`,
          "'other procs, cores': CPU every other process on the machine used while the picks ran, over their wall time (competing load; this machine has few cores).",
          "Each lease reads the head of every non-empty tier (5 here) and serves the largest wait/SLO, exactly as the actor does; the last column counts the SQL statements one pick runs.",
        ],
      };
    } finally {
      node.db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
