/**
 * `fairness`: a launch-day trace replayed in virtual time through the real scheduling code, and
 * through two baselines, to see who waits how long against their tier's SLO.
 *
 * The SLO policy is {@link SchedulerCore} itself on an in-memory `node:sqlite` database, driven
 * with an explicit `now` (bench/lib/replay.ts): a replay of hours takes seconds. Strict priority
 * (tier order, FIFO inside a tier) and FIFO (global arrival order) are small simulators over the
 * same trace, same slots and same per-job service times. A fourth run is the SLO policy with
 * admission control (`enqueue(…, admit = true)`); refused submissions are dropped (not retried)
 * and counted per tier.
 *
 * Two scenarios: `nominal` (offered load peaks at 0.95× capacity) and `overload` (2× capacity
 * for three hours, then 0.4× while the backlog drains). Heavy accounts flood the api, plus and
 * free tiers among many one-job accounts and a pool of regular ones. On the overload scenario,
 * what-if runs try the fixes the results suggest, without changing mesh/ (see WHAT_IFS).
 *
 * The full run writes bench/fairness.svg (wait/SLO over time per tier, overload); `--quick` and
 * `FAIRNESS_SEED=<n>` (another draw of the trace) write under bench/out/ instead.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import type { ModelConfig } from "../../shared/api.ts";
import { DEFAULT_TIERS } from "../../shared/slo.ts";
import type { SchedulerCore } from "../../mesh/scheduler/core.ts";
import { fifoPolicy, replay, sloPolicy, strictPolicy, type Policy, type ReplayOutcome } from "../lib/replay.ts";
import type { Benchmark, Report, Table } from "../lib/report.ts";
import { percentile, round } from "../lib/stats.ts";
import { fairnessChart, type ChartPanel } from "../lib/svg.ts";
import { capacityPerS, loadAt, makeTrace, traceEndH, type Flood, type TraceJob, type TraceSpec } from "../lib/trace.ts";

const BENCH_DIR = dirname(dirname(fileURLToPath(import.meta.url)));

export const MODEL: ModelConfig = {
  name: "bench",
  number: 0,
  updated_at: "2026-01-01T00:00:00.000Z",
  input_schema: { type: "object" },
  max_attempts: 3,
  run_timeout_s: 3600,
  queue_ttl_s: 30 * 86400,
  retention_s: 7 * 86400,
  expected_runtime_s: 60,
  shards: 1,
};

export const TIERS = DEFAULT_TIERS;
const TIER_NAMES = TIERS.map((t) => t.name);
/** The tiers that pay: every one but the largest SLO. */
export const PAID = TIERS.filter((t) => t.name !== "free").map((t) => t.name);

/** Launch day: most arrivals are free; the paid tiers together are 40% (0.8× capacity at 2×). */
const MIX = [
  { tier: "api", share: 0.06 },
  { tier: "enterprise", share: 0.06 },
  { tier: "plus", share: 0.1 },
  { tier: "light", share: 0.18 },
  { tier: "free", share: 0.6 },
];

const FLOODS: Flood[] = [
  { account: "acc_api_heavy", tier: "api", fromH: 2, toH: 4.5, share: 0.6 },
  { account: "acc_plus_heavy", tier: "plus", fromH: 2.5, toH: 4.5, share: 0.6 },
  { account: "acc_free_heavy", tier: "free", fromH: 1.5, toH: 3.5, share: 0.3 },
];

const SCENARIOS = {
  nominal: [
    { h: 0, load: 0.5 },
    { h: 1, load: 0.5 },
    { h: 1.5, load: 0.95 },
    { h: 4.5, load: 0.95 },
    { h: 5, load: 0.4 },
    { h: 9, load: 0.4 },
  ],
  overload: [
    { h: 0, load: 0.6 },
    { h: 1, load: 0.6 },
    { h: 1.5, load: 2 },
    { h: 4.5, load: 2 },
    { h: 5, load: 0.4 },
    { h: 9, load: 0.4 },
  ],
} as const;
export type ScenarioName = keyof typeof SCENARIOS;

/** The four policies the goals are judged on, run in both scenarios. */
const POLICIES = ["slo", "strict", "fifo", "slo_admission"] as const;
/** What-ifs, run on the overload scenario only; none is the shipped code. */
const WHAT_IFS = ["whatif_head"] as const;
type PolicyName = (typeof POLICIES)[number] | (typeof WHAT_IFS)[number];

const POLICY_LABEL: Record<PolicyName, string> = {
  slo: "SLO policy (SchedulerCore)",
  strict: "strict priority (api first, FIFO in a tier)",
  fifo: "FIFO (global arrival order)",
  slo_admission: "SLO policy + admission control",
  whatif_head: "what-if: the blueprint's pick (tiers ranked by their fair-queuing head's wait/SLO)",
};

/** Width of the chart's and the timeline's time buckets (s). */
const BUCKET_S = 600;

interface AccountWorst {
  account: string;
  kind: string;
  jobs: number;
  p50_s: number | null;
  max_s: number | null;
}

interface TierStats {
  slo_s: number;
  submitted: number;
  served: number;
  refused: number;
  refused_share: number | null;
  /** Share of the one-job accounts' submissions refused. */
  refused_one_job_share: number | null;
  /** Submissions of the tier's heavy account refused. */
  refused_heavy: number;
  p50_s: number | null;
  p95_s: number | null;
  p99_s: number | null;
  max_s: number | null;
  within_slo: number | null;
  p95_over_slo: number | null;
  /** The same, without the tier's heavy account: what the crowd of other accounts sees. */
  crowd_p95_over_slo: number | null;
  /** The account with the largest median wait in the tier. */
  worst_account: AccountWorst | null;
}

interface FloodCheck {
  tier: string;
  account: string;
  window_h: [number, number];
  heavy_jobs: number;
  heavy_p50_s: number | null;
  single_jobs: number;
  single_p50_s: number | null;
  tier_jobs: number;
  tier_p50_s: number | null;
  single_over_tier: number | null;
  met: boolean | null;
}

interface PolicyResult {
  tiers: Record<string, TierStats>;
  /** Largest over smallest p95 wait/SLO across tiers. */
  p95_over_slo_spread: number | null;
  crowd_p95_over_slo_spread: number | null;
  floods: FloodCheck[];
  last_job_end_h: number;
  replay_wall_s: number;
  /** Per bucket of arrival time, per tier: p95 of wait/SLO of the jobs that arrived in it. */
  timeline: (number | null)[][];
  /** What the pick saw while the offered load was at its peak (SLO policy, overload only). */
  head_probe?: Record<string, HeadProbe>;
}

/** Samples of one tier's head by tag, taken while the offered load was at its peak. */
interface HeadProbe {
  samples: number;
  /** Share of samples whose head was a one-job account's job. */
  head_one_job_share: number | null;
  /** Median of the head's wait over the tier's oldest queued job's wait. */
  head_over_oldest_wait_p50: number | null;
}

/**
 * Wraps an SLO policy's `take` to look, every `every` grants between `fromMs` and `toMs`, at
 * what the pick ranks each tier by: the head by `(tag, id)` (`store.headOf`, the pick's own
 * query) against the tier's oldest queued job (`store.oldestJob`). Reads only.
 */
function probeHeads<P extends Policy & { core: SchedulerCore }>(
  policy: P,
  trace: readonly TraceJob[],
  fromMs: number,
  toMs: number,
  every: number,
): { policy: P; result(): Record<string, HeadProbe> } {
  const acc = new Map(TIERS.map((t) => [t.name, { one: 0, ratios: [] as number[] }]));
  let grants = 0;
  const wrapped: P = {
    ...policy,
    take(slot, nowMs) {
      if (nowMs >= fromMs && nowMs < toMs && ++grants % every === 0) {
        for (const t of TIERS) {
          // The trace pins no version: every job waits in its tier's one lane.
          const head = policy.core.store.headOf(t.name, null);
          const oldest = policy.core.store.oldestJob(t.name, null)?.enqueued_at;
          if (!head || oldest === undefined || nowMs <= oldest) continue;
          const a = acc.get(t.name)!;
          if (trace[Number(head.id.slice(4))]?.kind === "single") a.one++;
          a.ratios.push((nowMs - head.enqueued_at) / (nowMs - oldest));
        }
      }
      return policy.take(slot, nowMs);
    },
  };
  return {
    policy: wrapped,
    result: () =>
      Object.fromEntries(
        [...acc].map(([tier, a]) => [
          tier,
          {
            samples: a.ratios.length,
            head_one_job_share: a.ratios.length === 0 ? null : r(a.one / a.ratios.length),
            head_over_oldest_wait_p50: r(percentile(a.ratios, 50)),
          },
        ]),
      ),
  };
}

interface ScenarioResult {
  jobs: number;
  offered_load_peak: number;
  offered_load_mean: number;
  mean_service_s: number;
  /** Offered load per bucket (service seconds arriving over slot-seconds). */
  load_timeline: number[];
  policies: Partial<Record<PolicyName, PolicyResult>>;
}

/** The default trace seed; `FAIRNESS_SEED=<n>` replays other draws (nominal uses n, overload n + 1). */
const DEFAULT_SEED = 20261122;

/** The launch-day trace of a scenario for a pool of `slots` (also replayed by the burst benchmark). */
export function launchDaySpec(name: ScenarioName, slots: number, seed = DEFAULT_SEED): TraceSpec {
  return {
    seed: name === "nominal" ? seed : seed + 1,
    slots,
    meanServiceS: 60,
    serviceSigma: 0.6,
    serviceClipS: [5, 600],
    profile: SCENARIOS[name],
    mix: MIX,
    floods: FLOODS,
    // Scaled with the pool, so a regular account submits at the same rate in --quick.
    regularAccounts: Math.round(slots * 2.5),
    regularShare: 0.4,
  };
}

function r(v: number, digits = 3): number | null {
  return round(v, digits);
}

function ratio(a: number | null, b: number | null): number | null {
  return a === null || b === null || b === 0 ? null : r(a / b);
}

function spread(values: (number | null)[]): number | null {
  const v = values.filter((v0): v0 is number => v0 !== null);
  if (v.length === 0) return null;
  const lo = Math.min(...v);
  // A tier whose p95 is 0 makes any spread infinite; floor it at 1% of its SLO.
  return r(Math.max(...v) / Math.max(lo, 0.01));
}

function waitS(o: ReplayOutcome, j: TraceJob): number {
  return (o.startMs[j.n]! - j.atMs) / 1000;
}

function tierStats(trace: readonly TraceJob[], o: ReplayOutcome, tier: string, sloS: number): TierStats {
  const jobs = trace.filter((j) => j.tier === tier);
  const served = jobs.filter((j) => o.refused[j.n] === 0);
  const waits = served.map((j) => waitS(o, j));
  const crowd = served.filter((j) => j.kind !== "heavy").map((j) => waitS(o, j));
  const byAccount = new Map<string, { kind: string; waits: number[] }>();
  for (const j of served) {
    let a = byAccount.get(j.account);
    if (!a) {
      a = { kind: j.kind, waits: [] };
      byAccount.set(j.account, a);
    }
    a.waits.push(waitS(o, j));
  }
  let worst: AccountWorst | null = null;
  for (const [account, a] of byAccount) {
    const p50 = percentile(a.waits, 50);
    if (worst === null || p50 > (worst.p50_s ?? -1) || (p50 === worst.p50_s && a.waits.length > worst.jobs)) {
      worst = { account, kind: a.kind, jobs: a.waits.length, p50_s: r(p50, 1), max_s: r(Math.max(...a.waits), 1) };
    }
  }
  const p95 = percentile(waits, 95);
  const ones = jobs.filter((j) => j.kind === "single");
  return {
    slo_s: sloS,
    submitted: jobs.length,
    served: served.length,
    refused: jobs.length - served.length,
    refused_share: jobs.length === 0 ? null : r((jobs.length - served.length) / jobs.length, 4),
    refused_one_job_share:
      ones.length === 0 ? null : r(ones.filter((j) => o.refused[j.n] === 1).length / ones.length, 4),
    refused_heavy: jobs.filter((j) => j.kind === "heavy" && o.refused[j.n] === 1).length,
    p50_s: r(percentile(waits, 50), 1),
    p95_s: r(p95, 1),
    p99_s: r(percentile(waits, 99), 1),
    max_s: waits.length === 0 ? null : r(Math.max(...waits), 1),
    within_slo: waits.length === 0 ? null : r(waits.filter((w) => w <= sloS).length / waits.length, 4),
    p95_over_slo: r(p95 / sloS),
    crowd_p95_over_slo: r(percentile(crowd, 95) / sloS),
    worst_account: worst,
  };
}

function floodCheck(trace: readonly TraceJob[], o: ReplayOutcome, f: Flood): FloodCheck {
  const inWindow = trace.filter(
    (j) => j.tier === f.tier && j.atMs >= f.fromH * 3_600_000 && j.atMs < f.toH * 3_600_000 && o.refused[j.n] === 0,
  );
  const all = inWindow.map((j) => waitS(o, j));
  const singles = inWindow.filter((j) => j.kind === "single").map((j) => waitS(o, j));
  const heavy = inWindow.filter((j) => j.account === f.account).map((j) => waitS(o, j));
  const singleP50 = r(percentile(singles, 50), 1);
  const tierP50 = r(percentile(all, 50), 1);
  return {
    tier: f.tier,
    account: f.account,
    window_h: [f.fromH, f.toH],
    heavy_jobs: heavy.length,
    heavy_p50_s: r(percentile(heavy, 50), 1),
    single_jobs: singles.length,
    single_p50_s: singleP50,
    tier_jobs: all.length,
    tier_p50_s: tierP50,
    single_over_tier: ratio(singleP50, tierP50),
    met: singleP50 === null || tierP50 === null ? null : singleP50 <= tierP50,
  };
}

function timeline(trace: readonly TraceJob[], o: ReplayOutcome, buckets: number): (number | null)[][] {
  const per = Array.from({ length: buckets }, () => TIERS.map((): number[] => []));
  const slo = new Map(TIERS.map((t, i) => [t.name, { i, s: t.slo_s }]));
  for (const j of trace) {
    if (o.refused[j.n] === 1) continue;
    const b = Math.min(buckets - 1, Math.floor(j.atMs / 1000 / BUCKET_S));
    const t = slo.get(j.tier)!;
    per[b]![t.i]!.push(waitS(o, j) / t.s);
  }
  return per.map((row) => row.map((w) => (w.length === 0 ? null : r(percentile(w, 95)))));
}

function makePolicy(
  name: PolicyName,
  slots: number,
): Policy & { close?: () => void; verify?: (trace: readonly TraceJob[], o: ReplayOutcome) => void } {
  switch (name) {
    case "slo":
      return sloPolicy(MODEL, TIERS, slots, { admit: false, urgency: "oldest" });
    case "slo_admission":
      return sloPolicy(MODEL, TIERS, slots, { admit: true, urgency: "oldest" });
    case "strict":
      return strictPolicy(TIER_NAMES);
    case "fifo":
      return fifoPolicy();
    case "whatif_head":
      return sloPolicy(MODEL, TIERS, slots, { admit: false, urgency: "head" });
  }
}

function runScenario(name: ScenarioName, slots: number, seed: number, log: (line: string) => void): ScenarioResult {
  const s = launchDaySpec(name, slots, seed);
  const trace = makeTrace(s);
  const endH = traceEndH(s);
  const buckets = Math.ceil((endH * 3600) / BUCKET_S);
  const load = Array.from({ length: buckets }, () => 0);
  let serviceTotal = 0;
  for (const j of trace) {
    load[Math.min(buckets - 1, Math.floor(j.atMs / 1000 / BUCKET_S))]! += j.serviceMs / 1000;
    serviceTotal += j.serviceMs / 1000;
  }
  const loadTimeline = load.map((l) => r(l / (slots * BUCKET_S)) ?? 0);
  const heavy = FLOODS.map((f) => `${f.account} ${trace.filter((j) => j.account === f.account).length}`).join(", ");
  log(`${name}: ${trace.length.toLocaleString("en")} jobs over ${endH} h on ${slots} slots (heavy: ${heavy})`);
  const result: ScenarioResult = {
    jobs: trace.length,
    offered_load_peak: r(Math.max(...s.profile.map((p) => p.load)), 2) ?? 0,
    offered_load_mean: r(serviceTotal / (slots * endH * 3600)) ?? 0,
    mean_service_s: r(serviceTotal / trace.length, 1) ?? 0,
    load_timeline: loadTimeline,
    policies: {},
  };
  const peak = Math.max(...s.profile.map((q) => q.load));
  const atPeak = s.profile.filter((q) => q.load === peak).map((q) => q.h * 3_600_000);
  const peakFrom = Math.min(...atPeak);
  const peakTo = Math.max(...atPeak);
  for (const p of name === "overload" ? [...POLICIES, ...WHAT_IFS] : POLICIES) {
    // The SLO policy's overload run also samples what its pick sees (reads only).
    const probe =
      name === "overload" && p === "slo"
        ? probeHeads(sloPolicy(MODEL, TIERS, slots, { admit: false, urgency: "oldest" }), trace, peakFrom, peakTo, 50)
        : undefined;
    const policy = probe?.policy ?? makePolicy(p, slots);
    const t0 = performance.now();
    let o: ReplayOutcome;
    try {
      o = replay(trace, slots, policy);
      policy.verify?.(trace, o);
    } finally {
      policy.close?.();
    }
    const wall = (performance.now() - t0) / 1000;
    const tiers = Object.fromEntries(TIERS.map((t) => [t.name, tierStats(trace, o, t.name, t.slo_s)]));
    result.policies[p] = {
      tiers,
      p95_over_slo_spread: spread(Object.values(tiers).map((t) => t.p95_over_slo)),
      crowd_p95_over_slo_spread: spread(Object.values(tiers).map((t) => t.crowd_p95_over_slo)),
      floods: FLOODS.map((f) => floodCheck(trace, o, f)),
      last_job_end_h: r(o.endMs / 3_600_000, 2) ?? 0,
      replay_wall_s: r(wall, 2) ?? 0,
      timeline: timeline(trace, o, buckets),
      ...(probe ? { head_probe: probe.result() } : {}),
    };
    log(`  ${p}: replayed in ${wall.toFixed(1)} s, last job ended at ${(o.endMs / 3_600_000).toFixed(2)} h`);
  }
  return result;
}

function fmtS(v: number | null): string {
  if (v === null) return "–";
  if (v >= 3600) return `${(v / 3600).toFixed(2)} h`;
  if (v >= 600) return `${(v / 60).toFixed(1)} min`;
  return `${v.toFixed(v >= 10 ? 0 : 1)} s`;
}

function pct(v: number | null, digits = 1): string {
  return v === null ? "–" : `${(v * 100).toFixed(digits)}%`;
}

function times(v: number | null): string {
  return v === null ? "–" : `${v.toFixed(v >= 10 ? 1 : 2)}×`;
}

function tierTable(title: string, res: ScenarioResult, policies: readonly PolicyName[]): Table {
  const rows: (string | number)[][] = [];
  for (const p of policies) {
    const pr = res.policies[p];
    if (!pr) continue;
    for (const t of TIER_NAMES) {
      const s = pr.tiers[t]!;
      rows.push([
        p,
        `${t} (${s.slo_s} s)`,
        s.served,
        s.refused === 0 ? "0" : `${s.refused} (${pct(s.refused_share)}; one-job ${pct(s.refused_one_job_share)})`,
        fmtS(s.p50_s),
        fmtS(s.p95_s),
        fmtS(s.p99_s),
        pct(s.within_slo, 2),
        times(s.p95_over_slo),
        times(s.crowd_p95_over_slo),
        s.worst_account
          ? `${s.worst_account.account} (${s.worst_account.jobs} job${s.worst_account.jobs === 1 ? "" : "s"}): p50 ${fmtS(s.worst_account.p50_s)}, max ${fmtS(s.worst_account.max_s)}`
          : "–",
      ]);
    }
  }
  return {
    title,
    columns: [
      "policy",
      "tier (SLO)",
      "served",
      "refused",
      "p50 wait",
      "p95 wait",
      "p99 wait",
      "within SLO",
      "p95/SLO",
      "p95/SLO w/o heavy",
      "worst account (largest median wait)",
    ],
    rows,
  };
}

function floodTable(results: Record<ScenarioName, ScenarioResult>): Table {
  const rows: (string | number)[][] = [];
  for (const [name, res] of Object.entries(results)) {
    // In nominal no backlog builds (every median is 0 s): the SLO policy's rows stand for all.
    for (const p of name === "nominal" ? (["slo"] as const) : [...POLICIES, ...WHAT_IFS]) {
      for (const f of res.policies[p]?.floods ?? []) {
        rows.push([
          `${name} ${p}`,
          `${f.tier}: ${f.account}, ${f.window_h[0]}–${f.window_h[1]} h`,
          `${f.heavy_jobs} / ${f.single_jobs} / ${f.tier_jobs}`,
          fmtS(f.heavy_p50_s),
          fmtS(f.single_p50_s),
          fmtS(f.tier_p50_s),
          f.single_over_tier === null ? "–" : f.single_over_tier.toFixed(2),
          f.met === null ? "–" : f.met ? "yes" : "no",
        ]);
      }
    }
  }
  return {
    title: "Heavy account vs one-job accounts: jobs that arrived in the tier while the heavy account flooded it",
    columns: [
      "scenario policy",
      "tier: heavy account, flood",
      "jobs heavy / one-job / tier",
      "heavy p50",
      "one-job p50",
      "tier p50",
      "one-job / tier",
      "one-job ≤ tier",
    ],
    rows,
  };
}

function probeTable(res: ScenarioResult): Table {
  const probe = res.policies.slo?.head_probe ?? {};
  return {
    title:
      "Why the pick ranks a tier by its oldest queued job: at the 2× peak (overload), how a tier's head by tag compares with its oldest job",
    columns: ["tier", "samples", "head is a one-job account's job", "head's wait / oldest job's wait (median)"],
    rows: Object.entries(probe).map(([tier, h]) => [
      tier,
      h.samples,
      pct(h.head_one_job_share, 0),
      h.head_over_oldest_wait_p50 ?? "–",
    ]),
  };
}

interface Goals {
  nominal_min_within_slo: number | null;
  nominal_met: boolean;
  overload_spread: number | null;
  overload_crowd_spread: number | null;
  overload_spread_met: boolean;
  strict_free_p95_h: number | null;
  single_vs_tier_worst: number | null;
  single_vs_tier_met: boolean;
  admission_paid_min_within_slo: number | null;
  admission_paid_max_p95_over_slo: number | null;
  admission_paid_met: boolean;
  admission_free_refused_share: number | null;
}

function goals(res: Record<ScenarioName, ScenarioResult>): Goals {
  const nomSlo = res.nominal.policies.slo!;
  const ovSlo = res.overload.policies.slo!;
  const ovAdm = res.overload.policies.slo_admission!;
  const within = Object.values(nomSlo.tiers).map((t) => t.within_slo ?? 0);
  // Only overload floods build a backlog; in `nominal` every wait is seconds (shown, not judged).
  const ratios = ovSlo.floods.map((f) => f.single_over_tier).filter((v): v is number => v !== null);
  const paid = PAID.map((t) => ovAdm.tiers[t]!);
  const paidWithin = Math.min(...paid.map((t) => t.within_slo ?? 0));
  const paidP95 = Math.max(...paid.map((t) => t.p95_over_slo ?? 0));
  const strictFree = res.overload.policies.strict!.tiers.free!.p95_s;
  return {
    nominal_min_within_slo: r(Math.min(...within), 4),
    nominal_met: Math.min(...within) >= 0.99,
    overload_spread: ovSlo.p95_over_slo_spread,
    overload_crowd_spread: ovSlo.crowd_p95_over_slo_spread,
    overload_spread_met: ovSlo.p95_over_slo_spread !== null && ovSlo.p95_over_slo_spread <= 1.5,
    strict_free_p95_h: strictFree === null ? null : r(strictFree / 3600, 2),
    single_vs_tier_worst: ratios.length === 0 ? null : r(Math.max(...ratios)),
    single_vs_tier_met: ratios.every((v) => v <= 1),
    admission_paid_min_within_slo: r(paidWithin, 4),
    admission_paid_max_p95_over_slo: r(paidP95),
    admission_paid_met: paidWithin >= 0.99,
    admission_free_refused_share: ovAdm.tiers.free!.refused_share,
  };
}

function goalNotes(g: Goals, res: Record<ScenarioName, ScenarioResult>): string[] {
  const ov = res.overload.policies;
  const worstTier = (pr: PolicyResult | undefined): string => {
    if (!pr) return "–";
    const e = Object.entries(pr.tiers).sort((a, b) => (b[1].p95_over_slo ?? 0) - (a[1].p95_over_slo ?? 0));
    const hi = e[0]!;
    const lo = e.at(-1)!;
    return `largest ${hi[0]} ${times(hi[1].p95_over_slo)}, smallest ${lo[0]} ${times(lo[1].p95_over_slo)}`;
  };
  const adm = ov.slo_admission!;
  return [
    `Goal 1, capacity ≥ demand → ≥ 99% of every tier within SLO (SLO policy, nominal): ${g.nominal_met ? "met" : "NOT met"}; the lowest tier has ${pct(g.nominal_min_within_slo, 2)} within SLO.`,
    `Goal 2, under 2× overload every tier's p95 wait/SLO within 1.5× of each other (SLO policy): ${g.overload_spread_met ? "met" : "NOT met"}; spread ${times(g.overload_spread)} (${worstTier(ov.slo)}); without the heavy accounts' own jobs ${times(g.overload_crowd_spread)}. Strict priority: spread ${times(ov.strict?.p95_over_slo_spread ?? null)}, free p95 wait ${g.strict_free_p95_h ?? "–"} h; FIFO: spread ${times(ov.fifo?.p95_over_slo_spread ?? null)}.`,
    `Goal 3, a one-job account waits at most its tier's median while a heavy account floods the tier (SLO policy, overload): ${g.single_vs_tier_met ? "met" : "NOT met"}; the largest one-job p50 / tier p50 is ${g.single_vs_tier_worst ?? "–"}. (In nominal no backlog builds and the medians are 0 s.)`,
    `Goal 4, with admission control every paid tier within SLO (≥ 99% of admitted jobs, overload): ${g.admission_paid_met ? "met" : "NOT met"}; lowest paid tier ${pct(g.admission_paid_min_within_slo, 2)} within SLO, largest paid p95/SLO ${times(g.admission_paid_max_p95_over_slo)}. Refused: ${TIER_NAMES.map((t) => `${t} ${pct(adm.tiers[t]!.refused_share)}`).join(", ")} of submissions.`,
  ];
}

/** One line per what-if: the figures of goals 2 and 4 under it. */
function whatIfNotes(res: ScenarioResult): string[] {
  return WHAT_IFS.flatMap((p) => {
    const pr = res.policies[p];
    if (!pr) return [];
    const paid = PAID.map((t) => pr.tiers[t]!);
    const within = Math.min(...paid.map((t) => t.within_slo ?? 0));
    const refused = TIER_NAMES.map((t) => `${t} ${pct(pr.tiers[t]!.refused_share)}`).join(", ");
    return [
      `What-if ${p} (${POLICY_LABEL[p].replace(/^what-if: /, "")}): p95/SLO spread ${times(pr.p95_over_slo_spread)} (${times(pr.crowd_p95_over_slo_spread)} without heavy accounts' jobs); lowest paid tier ${pct(within, 2)} within SLO, largest paid p95/SLO ${times(Math.max(...paid.map((t) => t.p95_over_slo ?? 0)))}; refused ${refused}.`,
    ];
  });
}

function chartPanels(res: ScenarioResult): ChartPanel[] {
  return [...POLICIES, "whatif_head" as const].flatMap((p) => {
    const pr = res.policies[p];
    if (!pr) return [];
    const refused = Object.values(pr.tiers).reduce((n, t) => n + t.refused, 0);
    const spreadText = `p95/SLO spread ${times(pr.p95_over_slo_spread)}`;
    return [
      {
        title: `${POLICY_LABEL[p]} — ${spreadText}${refused > 0 ? `, ${refused.toLocaleString("en")} refused (free ${pct(pr.tiers.free?.refused_share ?? null, 0)})` : ""}`,
        series: TIER_NAMES.map((t, i) => ({ name: t, values: pr.timeline.map((row) => row[i] ?? null) })),
      },
    ];
  });
}

export const fairness: Benchmark = {
  name: "fairness",
  description: "launch-day trace in virtual time: SLO policy (SchedulerCore on node:sqlite) vs strict priority vs FIFO",
  async run({ quick, log }): Promise<Report> {
    const slots = quick ? 16 : 128;
    const seedEnv = process.env["FAIRNESS_SEED"];
    const seed = seedEnv === undefined || seedEnv === "" ? DEFAULT_SEED : Number(seedEnv);
    if (!Number.isSafeInteger(seed)) throw new Error(`FAIRNESS_SEED must be an integer, not ${seedEnv}`);
    const results = {
      nominal: runScenario("nominal", slots, seed, log),
      overload: runScenario("overload", slots, seed, log),
    };
    const g = goals(results);
    const ov = launchDaySpec("overload", slots, seed);
    const bucketH = BUCKET_S / 3600;
    const svg = fairnessChart({
      title: `fairness, overload scenario: p95 wait/SLO of the jobs submitted in each ${BUCKET_S / 60}-minute bucket, per tier`,
      subtitle: [
        `${results.overload.jobs.toLocaleString("en")} jobs, ${slots} agent slots, mean service ${results.overload.mean_service_s} s; offered load (grey, right axis) peaks at ${results.overload.offered_load_peak}× capacity.`,
        "Virtual time through the real SchedulerCore on node:sqlite; strict and FIFO: simulators, same trace. A gap: none of the tier admitted.",
      ],
      bucketH,
      endH: traceEndH(ov),
      load: results.overload.load_timeline,
      profile: (h: number) => loadAt(ov, h),
      panels: chartPanels(results.overload),
    });
    // Only the full run with the default seed writes the committed chart.
    const chartPath =
      quick || seed !== DEFAULT_SEED
        ? join(BENCH_DIR, "out", `fairness${quick ? "-quick" : ""}${seed === DEFAULT_SEED ? "" : `-seed${seed}`}.svg`)
        : join(BENCH_DIR, "fairness.svg");
    mkdirSync(dirname(chartPath), { recursive: true });
    writeFileSync(chartPath, svg);
    log(`chart written to ${chartPath}`);
    const scenarios = Object.fromEntries(
      Object.entries(results).map(([name, res]) => [
        name,
        {
          jobs: res.jobs,
          offered_load_peak: res.offered_load_peak,
          offered_load_mean: res.offered_load_mean,
          mean_service_s: res.mean_service_s,
          ...Object.fromEntries(
            Object.entries(res.policies).map(([p, pr]) => [
              p,
              {
                tiers: pr.tiers,
                p95_over_slo_spread: pr.p95_over_slo_spread,
                crowd_p95_over_slo_spread: pr.crowd_p95_over_slo_spread,
                floods: pr.floods,
                last_job_end_h: pr.last_job_end_h,
                replay_wall_s: pr.replay_wall_s,
                ...(pr.head_probe ? { head_probe: pr.head_probe } : {}),
              },
            ]),
          ),
        },
      ]),
    );
    const report: Report & { scenarios: typeof scenarios } = {
      target:
        "no port: virtual time through the real SchedulerCore on node:sqlite (in-memory), clock passed as `now`; strict priority and FIFO are simulators over the same trace",
      setup: {
        tiers: TIERS.map((t) => `${t.name} ${t.slo_s} s (admission k ${t.admission_k})`).join(", "),
        pool: `${slots} agent slots (${slots} agents of capacity 1, no prefetch), capacity ${capacityPerS(ov).toFixed(3)} jobs/s at the 60 s mean`,
        service: "log-normal, mean 60 s, sigma 0.6, clipped to 5–600 s; drawn per job, the same under every policy",
        mix: MIX.map((m) => `${m.tier} ${m.share * 100}%`).join(", "),
        accounts: `of the non-heavy arrivals, 40% from ${Math.round(slots * 2.5)} regular accounts per tier (uniform), 60% each from a new one-job account`,
        floods: FLOODS.map((f) => `${f.account} takes ${f.share * 100}% of ${f.tier} in ${f.fromH}–${f.toH} h`).join(
          "; ",
        ),
        nominal: `offered load ${SCENARIOS.nominal.map((p) => `${p.load}× at ${p.h} h`).join(", ")}`,
        overload: `offered load ${SCENARIOS.overload.map((p) => `${p.load}× at ${p.h} h`).join(", ")}`,
        arrivals: "non-homogeneous Poisson (thinning), seeded; replays run until every admitted job has been served",
        admission: "slo_admission: enqueue(…, admit = true); refused submissions are dropped, not retried",
        what_ifs:
          "overload only: the blueprint's pick, run on SchedulerCore with a rewritten oldest-job query (see notes)",
        seed: `${seed} (nominal), ${seed + 1} (overload)${seed === DEFAULT_SEED ? "" : "; set by FAIRNESS_SEED"}`,
        chart: relative(dirname(BENCH_DIR), chartPath),
      },
      tables: [
        tierTable(
          `nominal: wait per tier (offered load peaks at ${results.nominal.offered_load_peak}× capacity; ${results.nominal.jobs.toLocaleString("en")} jobs)`,
          results.nominal,
          POLICIES,
        ),
        tierTable(
          `overload: wait per tier (offered load peaks at ${results.overload.offered_load_peak}× capacity; ${results.overload.jobs.toLocaleString("en")} jobs)`,
          results.overload,
          POLICIES,
        ),
        tierTable(
          "overload, what-if: the blueprint's pick (not the shipped code: a rewritten oldest-job query)",
          results.overload,
          WHAT_IFS,
        ),
        floodTable(results),
        probeTable(results.overload),
      ],
      metrics: {
        nominal_min_within_slo: g.nominal_min_within_slo,
        goal_nominal_99pct_within_slo_met: g.nominal_met,
        overload_p95_over_slo_spread: g.overload_spread,
        overload_crowd_p95_over_slo_spread: g.overload_crowd_spread,
        goal_overload_spread_within_1_5x_met: g.overload_spread_met,
        strict_overload_free_p95_wait_h: g.strict_free_p95_h,
        single_over_tier_p50_worst: g.single_vs_tier_worst,
        goal_single_at_or_below_tier_median_met: g.single_vs_tier_met,
        admission_paid_min_within_slo: g.admission_paid_min_within_slo,
        admission_paid_max_p95_over_slo: g.admission_paid_max_p95_over_slo,
        goal_admission_paid_within_slo_met: g.admission_paid_met,
        admission_free_refused_share: g.admission_free_refused_share,
      },
      notes: [
        ...goalNotes(g, results),
        ...whatIfNotes(results.overload),
        "Wait = lease time − enqueue time, in virtual seconds. 'within SLO' = share of served jobs whose wait ≤ the tier's SLO. 'p95/SLO w/o heavy' leaves out the heavy account's own jobs.",
        "Strict priority and FIFO are small simulators (bench/lib/replay.ts), not SchedulerCore configurations: SLOs many orders of magnitude apart would make its order across tiers strict, but inside a tier SchedulerCore serves by fair-queuing tag, never by arrival, so neither baseline is exactly a setting of it.",
        "Every SchedulerCore replay is checked against the rows it stored: each admitted job succeeded in one attempt, with started_at − created_at equal to the wait the replay measured; refused jobs were never stored.",
        "Not modelled: agent failures, lease renewal and sweeps (complete() does not look at lease deadlines, so no lease expires), prefetch, and clients retrying after 429 (refused submissions are dropped).",
        "What-ifs change no mesh/ code: 'the blueprint's pick' answers the oldest-job query (OLDEST_QUERY) through the Sql adapter with the enqueue time of the tier's head by (tag, id), so tiers are ranked by their head's wait/SLO, as the blueprint says; admission is off in it.",
      ],
      scenarios,
    };
    return report;
  },
};
