/**
 * A discrete-event replay of a job trace on a fixed pool of agent slots, in virtual time: each
 * slot is one agent of capacity 1 that asks its policy for the next job whenever it is free, and
 * holds the job for the job's service time. Policies are the real {@link SchedulerCore} (on
 * `node:sqlite`, clock passed as `now`) or the two baselines, strict priority and FIFO.
 *
 * Events at the same instant: completions first (the slot asks for its next job at once), then
 * arrivals (each offered to a free slot at once). Nothing sleeps: a replay of hours runs in
 * seconds.
 */
import type { ModelConfig } from "../../shared/api.ts";
import type { TierConfig } from "../../shared/slo.ts";
import { SchedulerCore, type AgentRef } from "../../mesh/scheduler/core.ts";
import { OLDEST_QUERY } from "../../mesh/scheduler/store.ts";
import { nodeSql } from "../../mesh/sql/node.ts";
import type { Row, Sql, SqlValue } from "../../mesh/sql/sql.ts";
import type { TraceJob } from "./trace.ts";

/** A scheduling policy as the replay drives it. */
export interface Policy {
  /** Offers a job at its arrival; false when the policy refuses it. */
  submit(job: TraceJob, nowMs: number): boolean;
  /** The next job (its `n`) for a free slot, or undefined when nothing waits. */
  take(slot: number, nowMs: number): number | undefined;
  /** The job on `slot` ended. */
  done(slot: number, n: number, nowMs: number): void;
}

/** What happened to each job of the trace, indexed by `n`. */
export interface ReplayOutcome {
  /** When the job was handed to a slot (ms), NaN when it was refused. */
  startMs: Float64Array;
  refused: Uint8Array;
  /** When the last job ended (ms). */
  endMs: number;
}

/** Replays `trace` (sorted by arrival) on `slots` slots under `policy`. */
export function replay(trace: readonly TraceJob[], slots: number, policy: Policy): ReplayOutcome {
  const startMs = new Float64Array(trace.length).fill(Number.NaN);
  const refused = new Uint8Array(trace.length);
  const busyUntil = new Float64Array(slots).fill(Number.POSITIVE_INFINITY);
  const holding = new Int32Array(slots).fill(-1);
  // Free slots, lowest number on top.
  const idle: number[] = Array.from({ length: slots }, (_, i) => slots - 1 - i);
  let next = 0;
  let endMs = 0;
  const start = (slot: number, n: number, now: number): void => {
    const job = trace[n]!;
    startMs[n] = now;
    holding[slot] = n;
    busyUntil[slot] = now + job.serviceMs;
  };
  for (;;) {
    let slot = -1;
    let tDone = Number.POSITIVE_INFINITY;
    for (let s = 0; s < slots; s++) {
      if (busyUntil[s]! < tDone) {
        tDone = busyUntil[s]!;
        slot = s;
      }
    }
    const arrival = trace[next];
    if (slot < 0 && !arrival) break;
    if (slot >= 0 && (!arrival || tDone <= arrival.atMs)) {
      const n = holding[slot]!;
      policy.done(slot, n, tDone);
      endMs = Math.max(endMs, tDone);
      busyUntil[slot] = Number.POSITIVE_INFINITY;
      holding[slot] = -1;
      const m = policy.take(slot, tDone);
      if (m === undefined) idle.push(slot);
      else start(slot, m, tDone);
      continue;
    }
    const job = arrival!;
    next++;
    if (!policy.submit(job, job.atMs)) {
      refused[job.n] = 1;
      continue;
    }
    while (idle.length > 0) {
      const free = idle.at(-1)!;
      const m = policy.take(free, job.atMs);
      if (m === undefined) break;
      idle.pop();
      start(free, m, job.atMs);
    }
  }
  return { startMs, refused, endMs };
}

/** FIFO: one queue in global arrival order, whatever the tier. */
export function fifoPolicy(): Policy {
  const queue: number[] = [];
  let head = 0;
  return {
    submit(job) {
      queue.push(job.n);
      return true;
    },
    take() {
      return head < queue.length ? queue[head++] : undefined;
    },
    done() {},
  };
}

/** Strict priority: always the first non-empty tier in `tiers` order; FIFO inside a tier. */
export function strictPolicy(tiers: readonly string[]): Policy {
  const queues = tiers.map(() => ({ items: [] as number[], head: 0 }));
  return {
    submit(job) {
      const i = tiers.indexOf(job.tier);
      if (i < 0) throw new Error(`unknown tier ${job.tier}`);
      queues[i]!.items.push(job.n);
      return true;
    },
    take() {
      for (const q of queues) if (q.head < q.items.length) return q.items[q.head++];
      return undefined;
    },
    done() {},
  };
}

/** The job id the SLO policy stores for trace job `n`: zero-padded, so ids sort by arrival. */
function jobId(n: number): string {
  return `job_${String(n).padStart(9, "0")}`;
}

/**
 * The rank of the blueprint's pick, as a what-if: a tier ranked by the wait of its head by
 * `(tag, id)` instead of its oldest queued job's. Only the pick and admission read
 * {@link OLDEST_QUERY}, so with admission off this is exactly that pick.
 */
const HEAD_WAIT_QUERY =
  "SELECT id, enqueued_at FROM jobs WHERE status = 'queued' AND tier = ? AND version IS ? ORDER BY tag, id LIMIT 1";

/** A what-if without touching mesh/: the {@link Sql} adapter answers {@link OLDEST_QUERY} with {@link HEAD_WAIT_QUERY}. */
function headUrgency(inner: Sql): Sql {
  return {
    all<T extends Row = Row>(query: string, ...params: SqlValue[]): T[] {
      return inner.all<T>(query === OLDEST_QUERY ? HEAD_WAIT_QUERY : query, ...params);
    },
    run(query: string, ...params: SqlValue[]): number {
      return inner.run(query, ...params);
    },
  };
}

export interface SloOptions {
  /** Enqueue with admission control (`admit = true`). */
  admit: boolean;
  /**
   * How the pick ranks tiers: `oldest` is SchedulerCore as shipped (the wait of the tier's
   * oldest queued job); `head` is a what-if (the wait of the head by tag; see {@link HEAD_WAIT_QUERY}).
   */
  urgency: "oldest" | "head";
}

/**
 * The SLO policy: the real {@link SchedulerCore} on an in-memory `node:sqlite` database. Each
 * slot is an agent of capacity 1 (`lease(agent, 1, now)`, no prefetch); every arrival is one
 * `enqueue` (with admission control when `admit`), every end one `complete(succeeded)`.
 */
export function sloPolicy(
  model: ModelConfig,
  tiers: readonly TierConfig[],
  slots: number,
  opts: SloOptions,
): Policy & { core: SchedulerCore; verify(trace: readonly TraceJob[], o: ReplayOutcome): void; close(): void } {
  const node = nodeSql(":memory:");
  const core = new SchedulerCore(opts.urgency === "head" ? headUrgency(node) : node);
  const admit = opts.admit;
  core.configure({ model, tiers: [...tiers] });
  const agents: AgentRef[] = Array.from({ length: slots }, (_, i) => ({
    id: `agent_${String(i).padStart(3, "0")}`,
    pool: "replay",
  }));
  const epochs = new Int32Array(slots);
  const body = { model: model.name, input: {} };
  return {
    core,
    close() {
      node.db.close();
    },
    /**
     * Checks the replay against what SchedulerCore stored: every admitted job succeeded once,
     * with `started_at − created_at` equal to the wait the replay measured; refused ones absent.
     */
    verify(trace, o) {
      const rows = node.all<{ id: string; status: string; created_at: number; started_at: number | null; n: number }>(
        "SELECT id, status, created_at, started_at, json_array_length(attempts) AS n FROM jobs",
      );
      const seen = new Set<number>();
      for (const row of rows) {
        const k = Number(row.id.slice(4));
        const job = trace[k];
        if (!job || o.refused[k] === 1) throw new Error(`verify: ${row.id} stored but refused or unknown`);
        if (
          row.status !== "succeeded" ||
          row.n !== 1 ||
          row.created_at !== job.atMs ||
          row.started_at !== o.startMs[k]
        ) {
          throw new Error(
            `verify: ${row.id} is ${row.status} (${row.n} attempts), created ${row.created_at}, started ${row.started_at}; replay says ${job.atMs}, ${o.startMs[k]}`,
          );
        }
        seen.add(k);
      }
      for (const job of trace) {
        if (o.refused[job.n] === 0 && !seen.has(job.n)) throw new Error(`verify: job ${job.n} admitted but not stored`);
      }
    },
    submit(job, nowMs) {
      const [out] = core.enqueue([{ id: jobId(job.n), account_id: job.account, tier: job.tier, body }], nowMs, admit);
      if (!out) throw new Error("enqueue answered nothing");
      if (!out.ok && out.code !== "overloaded") throw new Error(`enqueue refused ${job.n}: ${out.message}`);
      return out.ok;
    },
    take(slot, nowMs) {
      const [lease] = core.lease(agents[slot]!, 1, nowMs);
      if (!lease) return undefined;
      epochs[slot] = lease.epoch;
      return Number(lease.job_id.slice(4));
    },
    done(slot, n, nowMs) {
      const out = core.complete(
        { job_id: jobId(n), epoch: epochs[slot]! },
        { status: "succeeded", outputs: [] },
        nowMs,
      );
      if (!out.ok) throw new Error(`complete refused for ${n}: ${out.message}`);
    },
  };
}
