/**
 * `burst`: the fairness benchmark's launch-day trace (its `overload` scenario: 2× the base
 * fleet's capacity for three hours) replayed in virtual time through the real scheduling code
 * ({@link SchedulerCore} on `node:sqlite`), on a fleet that a simulated provisioner grows and
 * shrinks with the real decisions: the demand signal (shared/capacity.ts, read from the shard's
 * own `load()`) and a pool's rules (mesh/pools/decide.ts). The provisioner's cloud is outside
 * the system, so it is simulated: an agent asked for serves 3 minutes later (a GPU VM loading a
 * 20 GB model), and costs GPU-minutes from the moment it is asked for until it is removed.
 *
 * Three fleets: `burst` (the pool: from the base fleet, up to 3× it), `without` (the base fleet,
 * fixed) and `fixed_peak` (a fixed fleet sized for the peak: 2× the base). Reported per fleet:
 * each tier's share of jobs that started within its SLO, p95 wait/SLO, agents over time and
 * GPU-minutes. Goal: every paid tier ≥ 99% within SLO with ≤ 60% of the fixed peak fleet's
 * GPU-minutes. The chart (agents over time, and the offered load) is drawn by Vega.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, View, type Spec } from "vega";
import { demand } from "../../shared/capacity.ts";
import { PoolSpec } from "../../shared/pools.ts";
import { SchedulerCore, type AgentRef } from "../../mesh/scheduler/core.ts";
import { decide, initialState, type PoolState } from "../../mesh/pools/decide.ts";
import { nodeSql } from "../../mesh/sql/node.ts";
import type { Benchmark, Report } from "../lib/report.ts";
import { percentile, round } from "../lib/stats.ts";
import { loadAt, makeTrace, type TraceJob } from "../lib/trace.ts";
import { launchDaySpec, MODEL, PAID, TIERS } from "./fairness.ts";

const BENCH_DIR = dirname(dirname(fileURLToPath(import.meta.url)));
/** A GPU VM with a 20 GB model serves this long after it is asked for (ms). */
const STARTUP_MS = 180_000;
/** How often the pool decides (ms): the PoolsActor's alarm, coarser to keep the replay short. */
const TICK_MS = 10_000;
/** Agents over time are sampled this often (ms). */
const SAMPLE_MS = 60_000;

type FleetName = "burst" | "without" | "fixed_peak";

interface Agent {
  ref: AgentRef;
  askedAt: number;
  readyAt: number;
  removedAt: number | null;
  job: { n: number; epoch: number; until: number } | null;
}

interface FleetResult {
  tiers: Record<string, { jobs: number; within_slo: number; p95_over_slo: number | null }>;
  gpu_minutes: number;
  peak_agents: number;
  samples: { h: number; agents: number; serving: number }[];
  end_h: number;
}

/** Replays `trace` on a fleet: fixed at `fixed` agents, or the pool `spec` when `fixed` is undefined. */
function run(trace: readonly TraceJob[], base: number, fixed: number | undefined, spec: PoolSpec): FleetResult {
  const node = nodeSql(":memory:");
  const core = new SchedulerCore(node);
  core.configure({ model: MODEL, tiers: [...TIERS] });
  const agents: Agent[] = [];
  let seq = 0;
  const add = (now: number, ready: number): void => {
    agents.push({
      ref: { id: `agt_${String(seq++).padStart(16, "0")}`, pool: "cloud" },
      askedAt: now,
      readyAt: ready,
      removedAt: null,
      job: null,
    });
  };
  const start = fixed ?? base;
  for (let i = 0; i < start; i++) add(0, 0);
  let state: PoolState = initialState(spec, start, 0);
  const startMs = new Float64Array(trace.length).fill(Number.NaN);
  const samples: FleetResult["samples"] = [];
  const live = (): Agent[] => agents.filter((a) => a.removedAt === null);
  const serve = (now: number): void => {
    for (const a of live()) {
      if (a.job !== null || a.readyAt > now) continue;
      const [lease] = core.lease(a.ref, 1, now);
      if (!lease) continue;
      const n = Number(lease.job_id.slice(4));
      startMs[n] = now;
      a.job = { n, epoch: lease.epoch, until: now + (trace[n]?.serviceMs ?? 0) };
    }
  };
  let next = 0;
  let tick = 0;
  let sample = 0;
  let now = 0;
  let done = 0;
  for (;;) {
    const arrival = trace[next]?.atMs ?? Number.POSITIVE_INFINITY;
    let end = Number.POSITIVE_INFINITY;
    let ready = Number.POSITIVE_INFINITY;
    for (const a of agents) {
      if (a.removedAt !== null) continue;
      if (a.job && a.job.until < end) end = a.job.until;
      if (a.readyAt > now && a.readyAt < ready) ready = a.readyAt;
    }
    if (done === trace.length && next === trace.length) break;
    now = Math.min(arrival, end, ready, tick, sample);
    if (now === sample) {
      const l = live();
      samples.push({ h: now / 3_600_000, agents: l.length, serving: l.filter((a) => a.readyAt <= now).length });
      sample += SAMPLE_MS;
    }
    if (now === end) {
      for (const a of live()) {
        if (!a.job || a.job.until !== now) continue;
        core.complete({ job_id: jobId(a.job.n), epoch: a.job.epoch }, { status: "succeeded", outputs: [] }, now);
        a.job = null;
        done++;
      }
    }
    if (now === arrival) {
      while (trace[next]?.atMs === now) {
        const job = trace[next]!;
        core.enqueue(
          [{ id: jobId(job.n), account_id: job.account, tier: job.tier, body: { model: MODEL.name, input: {} } }],
          now,
          false,
        );
        next++;
      }
    }
    if (now === tick) {
      tick += TICK_MS;
      if (fixed === undefined) {
        const load = core.load(now);
        const l = live();
        const need = demand(
          load ? [load] : [],
          l.filter((a) => a.readyAt <= now).map(() => ({ slots: 1 })),
          spec.startup_s,
        ).agents_needed;
        const out = decide(
          spec,
          state,
          need,
          l.filter((a) => a.readyAt <= now).map((a) => ({ id: a.ref.id, running: a.job ? 1 : 0 })),
          now,
        );
        state = out.state;
        if (out.change) {
          for (const id of out.change.remove) {
            const a = agents.find((x) => x.ref.id === id);
            if (a && !a.job) {
              a.removedAt = now;
              core.unpark(id);
            }
          }
          // The provisioner makes the pool its desired size: agents still starting count.
          let have = live().length;
          while (have < out.change.desired) {
            add(now, now + STARTUP_MS);
            have++;
          }
        }
      }
    }
    serve(now);
  }
  const endMs = now;
  let gpuMs = 0;
  for (const a of agents) gpuMs += (a.removedAt ?? endMs) - a.askedAt;
  const tiers: FleetResult["tiers"] = {};
  for (const t of TIERS) {
    const waits = trace.filter((j) => j.tier === t.name).map((j) => ((startMs[j.n] ?? 0) - j.atMs) / 1000 / t.slo_s);
    tiers[t.name] = {
      jobs: waits.length,
      within_slo: waits.length === 0 ? 1 : waits.filter((w) => w <= 1).length / waits.length,
      p95_over_slo: waits.length === 0 ? null : round(percentile(waits, 95), 3),
    };
  }
  node.db.close();
  return {
    tiers,
    gpu_minutes: Math.round(gpuMs / 60_000),
    peak_agents: Math.max(...samples.map((s) => s.agents)),
    samples,
    end_h: endMs / 3_600_000,
  };
}

function jobId(n: number): string {
  return `job_${String(n).padStart(28, "0")}`;
}

/** The chart: agents over time per fleet, and the offered load, drawn by Vega as SVG. */
async function chart(
  results: Record<FleetName, FleetResult>,
  load: (h: number) => number,
  base: number,
): Promise<string> {
  const values: { fleet: string; h: number; agents: number }[] = (Object.keys(results) as FleetName[]).flatMap(
    (fleet) => results[fleet].samples.map((s) => ({ fleet, h: s.h, agents: s.agents })),
  );
  const endH = Math.max(...Object.values(results).map((r) => r.end_h));
  for (let h = 0; h <= endH; h += 1 / 60) values.push({ fleet: "offered load (agents)", h, agents: load(h) * base });
  const spec: Spec = {
    $schema: "https://vega.github.io/schema/vega/v6.json",
    width: 900,
    height: 320,
    padding: 8,
    title: { text: "burst: agents over time on the launch-day trace (3 min start-up)", anchor: "start" },
    data: [{ name: "series", values }],
    scales: [
      { name: "x", type: "linear", domain: { data: "series", field: "h" }, range: "width" },
      {
        name: "y",
        type: "linear",
        domain: { data: "series", field: "agents" },
        range: "height",
        nice: true,
        zero: true,
      },
      { name: "color", type: "ordinal", domain: { data: "series", field: "fleet" }, range: "category" },
    ],
    axes: [
      { orient: "bottom", scale: "x", title: "hours" },
      { orient: "left", scale: "y", title: "agents" },
    ],
    legends: [{ fill: "color", title: "fleet" }],
    marks: [
      {
        type: "group",
        from: { facet: { name: "line", data: "series", groupby: "fleet" } },
        marks: [
          {
            type: "line",
            from: { data: "line" },
            encode: {
              enter: {
                x: { scale: "x", field: "h" },
                y: { scale: "y", field: "agents" },
                stroke: { scale: "color", field: "fleet" },
                strokeWidth: { value: 1.5 },
              },
            },
          },
        ],
      },
    ],
  };
  const view = new View(parse(spec), { renderer: "none" });
  return await view.toSVG();
}

export const burst: Benchmark = {
  name: "burst",
  description:
    "launch-day trace on a fleet the demand signal and a pool grow and shrink (3 min start-up), against the base fleet and a fixed peak fleet: SLO attainment and GPU-minutes",
  async run({ quick, log }): Promise<Report> {
    const base = quick ? 16 : 64;
    const traceSpec = launchDaySpec("overload", base);
    const trace = makeTrace(traceSpec);
    const pool = PoolSpec.parse({
      models: [MODEL.name],
      min: Math.ceil(base / 4),
      max: base * 3,
      command: "simulated",
      step_up: Math.ceil(base / 4),
      step_down: Math.max(1, Math.round(base / 8)),
      burst_window_s: 120,
      window_s: 180,
      cooldown_s: 180,
      startup_s: STARTUP_MS / 1000,
    });
    log(`burst: ${trace.length} jobs, base fleet ${base}`);
    const results = {} as Record<FleetName, FleetResult>;
    for (const [name, fixed] of [
      ["burst", undefined],
      ["without", base],
      ["fixed_peak", base * 2],
    ] as const) {
      const t0 = performance.now();
      results[name] = run(trace, base, fixed, pool);
      log(`burst: ${name} replayed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    const peakGpu = results.fixed_peak.gpu_minutes;
    const share = results.burst.gpu_minutes / peakGpu;
    const paidOk = PAID.every((t) => (results.burst.tiers[t]?.within_slo ?? 0) >= 0.99);
    const svg = await chart(results, (h) => loadAt(traceSpec, h), base);
    const file = quick ? join(BENCH_DIR, "out", "burst-quick.svg") : join(BENCH_DIR, "burst.svg");
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, svg);
    const fleets = Object.keys(results) as FleetName[];
    return {
      target: "in-process: SchedulerCore on node:sqlite, demand signal and pool decisions, virtual time",
      setup: {
        jobs: trace.length,
        base_fleet: base,
        fixed_peak_fleet: base * 2,
        pool_min: pool.min,
        pool_max: pool.max,
        startup_s: STARTUP_MS / 1000,
        tick_s: TICK_MS / 1000,
        chart: relative(process.cwd(), file),
      },
      tables: [
        {
          title: "share of jobs started within their tier's SLO (p95 wait/SLO)",
          columns: ["tier", ...fleets],
          rows: TIERS.map((t) => [
            t.name,
            ...fleets.map((f) => {
              const r = results[f].tiers[t.name];
              return `${((r?.within_slo ?? 0) * 100).toFixed(2)}% (${r?.p95_over_slo ?? "-"})`;
            }),
          ]),
        },
        {
          title: "fleet",
          columns: ["fleet", "GPU-minutes", "share of fixed peak", "peak agents"],
          rows: fleets.map((f) => [
            f,
            results[f].gpu_minutes,
            round(results[f].gpu_minutes / peakGpu, 3) ?? 0,
            results[f].peak_agents,
          ]),
        },
      ],
      metrics: {
        burst_gpu_share_of_fixed_peak: round(share, 3),
        burst_paid_tiers_within_slo_99: paidOk,
        goal_met: paidOk && share <= 0.6,
        ...Object.fromEntries(
          PAID.map((t) => [`burst_${t}_within_slo`, round(results.burst.tiers[t]?.within_slo ?? 0, 4)]),
        ),
      },
      notes: [
        "The fleet's agents have one slot each; an agent asked for serves 3 minutes later and costs GPU-minutes from the ask until its removal (only idle agents are removed).",
        "Admission control is off: every job is served, so SLO attainment shows what each fleet can do with the whole launch-day load.",
      ],
    };
  },
};
