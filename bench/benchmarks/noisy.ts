/**
 * `noisy`: does a noisy neighbour slow a quiet account down? On workerd's own port, a quiet
 * `api` account submits at a steady rate to a model that in-process agents serve, and its
 * latency from submit to the agent's runner starting the job is measured in alternating blocks:
 * alone; beside a control flood of `GET /healthz` at the same request rate as the neighbour;
 * beside the noisy neighbour, a `free` account (60 requests a minute) submitting at 100 times
 * its limit while a second account of the neighbour's holds 300 Server-Sent Event streams on
 * queued jobs of a model no agent serves. The floods come from test/chaos/noisy.ts, each in a
 * process of its own. Then what one refused submit costs workerd, against a submit with a
 * malformed key and an accepted one.
 *
 * All of it twice: with Miniflare's rate-limit simulator (a SQLite-backed Durable Object, so
 * every `limit()` is an actor call), and with the bindings stubbed in memory (bench/lib/edge.ts),
 * which is how the deployed binding counts: in the Worker's own process.
 */
import type { Pool } from "undici";
import { startFlood, type Flood } from "../../test/chaos/flood.ts";
import type { BlockTally, NoisyReport } from "../../test/chaos/noisy.ts";
import { groupCpuMeter, processCpuMs } from "../lib/cpu.ts";
import { call, createAccount, MEASURED_PORT, startEdge, type Edge } from "../lib/edge.ts";
import { modelFleet, stateFilesystem, waitFor, type Fleet } from "../lib/fleet.ts";
import { connect, openLoop, statusCell } from "../lib/load.ts";
import type { Benchmark, Report, Table } from "../lib/report.ts";
import { joinRuns, jobShots, SubmitTracker } from "../lib/runs.ts";
import { mean, percentile, round } from "../lib/stats.ts";
import { threadMeter, type BusiestThread } from "../lib/threads.ts";

/** The quiet account's pace (submits/s, open loop). */
const QUIET_RATE = 20;
/** The noisy account's tier (`free`) allows 60 requests a minute; it sends 100 times that. */
const NOISY_LIMIT_PER_MIN = 60;
const NOISY_RATE = (100 * NOISY_LIMIT_PER_MIN) / 60;
const STREAMS = 300;
/** Queued jobs the neighbour's streams are spread over. */
const STREAM_JOBS = 20;
/** The streaming account's limit: its 300 streams are opened again in every noisy block. */
const STREAMER_LIMIT_PER_MIN = 6000;
/** The quiet model's agents: room to spare for the quiet account's pace. */
const AGENTS = 2;
const SLOTS = 4;
const PREFETCH = 1;
/** How long the stand-in runner holds a slot per job (ms). */
const SERVICE_MS = 20;
const QUIET_MODEL = "noisy-quiet";
/** No agent serves it: the noisy account's allowed submits and the streamed jobs wait there. */
const IDLE_MODEL = "noisy-idle";
/** Requests sent at once while measuring the edge's CPU per request. */
const CPU_CONCURRENCY = 20;

const SIDES = ["alone", "healthz", "noisy"] as const;
type Side = (typeof SIDES)[number];
/**
 * The rows reported: each side, and the noisy blocks in which the neighbour's limit let none of
 * its submits through (its window's 60 went in an earlier block), to tell the refusals' share of
 * the effect from that of its allowed burst.
 */
const ROWS = [...SIDES, "refused"] as const;
type Row = (typeof ROWS)[number];
const ROW_LABEL: Record<Row, string> = {
  alone: "alone",
  healthz: `beside ${NOISY_RATE} GET /healthz/s`,
  noisy: "beside the noisy neighbour",
  refused: "beside the noisy neighbour, blocks where it got only 429s",
};
const ROW_SHORT: Record<Row, string> = {
  alone: "alone",
  healthz: "healthz",
  noisy: "noisy",
  refused: "only-429 blocks",
};

type Mode = "simulator" | "stub";
const MODE_LABEL: Record<Mode, string> = {
  simulator: "simulator",
  stub: "stub, in memory",
};

interface Plan {
  rounds: number;
  blockS: number;
  warmS: number;
  /** CPU per request: interleaved rounds of `perBlock` requests of each kind. */
  cpuRounds: number;
  perBlock: number;
}

interface Block {
  round: number;
  side: Side;
  /** The flood beside it: what it sent and its answers. */
  flood: BlockTally | undefined;
  latencies: number[];
  /** Quiet submits sent, their answers, and how long each 202 took (ms). */
  sent: number;
  statuses: Record<string, number>;
  answers: number[];
  undispatched: number;
  wallS: number;
  workerdMs: number;
  floodMs: number;
  selfMs: number;
  othersMs: number;
  thread: BusiestThread;
}

interface CpuKind {
  label: string;
  ms: number[];
  statuses: Record<string, number>;
  /** Blocks measured again because the limit's window rolled over inside them. */
  redone: number;
}

interface EdgeRun {
  mode: Mode;
  url: string;
  blocks: Block[];
  noisy: NoisyReport;
  healthz: NoisyReport;
  cpu: { refused: CpuKind; malformed: CpuKind; accepted: CpuKind; healthz: CpuKind };
  fatal: string[];
}

/** The quiet account's submits for `durationS` at its pace; answers its block's figures. */
async function quietBlock(
  edge: Edge,
  pool: Pool,
  fleet: Fleet,
  shot: ReturnType<typeof jobShots>["single"],
  durationS: number,
  floodPid: number | undefined,
): Promise<Omit<Block, "round" | "side" | "flood">> {
  const tracker = new SubmitTracker();
  const meter = groupCpuMeter({ workerd: [edge.workerdPid], flood: [floodPid] });
  const threads = threadMeter(edge.workerdPid);
  const t0 = performance.now();
  const load = await openLoop({
    pool,
    rate: QUIET_RATE,
    durationS,
    shot,
    workerdPid: undefined,
    onAnswer: tracker.onAnswer,
  });
  const used = meter();
  const thread = threads();
  const wallS = (performance.now() - t0) / 1000;
  const ids = [...tracker.dueById.keys()];
  await waitFor(() => ids.every((id) => fleet.log.starts.has(id)), 30_000);
  const runs = joinRuns(tracker, fleet.log, fleet.log.marks.length, t0);
  return {
    latencies: runs.latencies,
    sent: load.sent,
    statuses: load.statuses,
    answers: load.latencies,
    undispatched: runs.neverStarted,
    wallS,
    workerdMs: used.groups.workerd,
    floodMs: used.groups.flood,
    selfMs: used.selfMs,
    othersMs: used.othersMs,
    thread,
  };
}

/** Sends `n` requests, {@link CPU_CONCURRENCY} at a time; answers workerd's CPU per request (ms) and the statuses. */
async function cpuPerRequest(
  edge: Edge,
  pool: Pool,
  n: number,
  request: () => { method: "GET" | "POST"; path: string; headers: Record<string, string>; body?: string },
): Promise<{ ms: number; statuses: Record<string, number> }> {
  const statuses: Record<string, number> = {};
  const before = processCpuMs(edge.workerdPid);
  for (let i = 0; i < n; i += CPU_CONCURRENCY) {
    await Promise.all(
      Array.from({ length: Math.min(CPU_CONCURRENCY, n - i) }, async () => {
        const res = await pool.request(request());
        await res.body.text();
        statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
      }),
    );
  }
  return { ms: (processCpuMs(edge.workerdPid) - before) / n, statuses };
}

const cpuKind = (label: string): CpuKind => ({ label, ms: [], statuses: {}, redone: 0 });

function addStatuses(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/**
 * workerd's CPU per submit refused for the account's rate limit, per submit with a key that
 * cannot even be parsed (refused by the Worker's first check; counted against the client's
 * address), per accepted submit (queued on the idle model) and per `GET /healthz`, in
 * interleaved blocks so that a burst of other work lands on every kind alike.
 */
async function cpuKinds(edge: Edge, keys: { noisy: string; quiet: string }, plan: Plan): Promise<EdgeRun["cpu"]> {
  const pool = connect(edge.url, CPU_CONCURRENCY);
  const path = `/v1/models/${IDLE_MODEL}/jobs`;
  const body = JSON.stringify({ input: {} });
  const json = { "content-type": "application/json" };
  const out = {
    refused: cpuKind("refused: over its rate limit"),
    malformed: cpuKind("malformed key"),
    accepted: cpuKind("accepted (queued)"),
    healthz: cpuKind("GET /healthz (no credentials)"),
  };
  // Each block of malformed keys comes from its own address (TEST-NET-2): refusals for
  // credentials are limited per address (RL_ADDRESS), and this measures a refusal, not that limit.
  let address = 0;
  const spend = async (): Promise<void> => {
    for (let i = 0; i <= NOISY_LIMIT_PER_MIN; i++) {
      const res = await pool.request({
        method: "POST",
        path,
        headers: { ...json, authorization: `Bearer ${keys.noisy}` },
        body,
      });
      await res.body.text();
      if (res.statusCode === 429) return;
    }
    throw new Error(`the noisy account was not refused after ${NOISY_LIMIT_PER_MIN + 1} submits`);
  };
  try {
    for (let r = 0; r < plan.cpuRounds; r++) {
      // The limit's window is the clock's minute: a block that straddles its turn lets up to 60
      // submits through, so such a block is measured again.
      for (let attempt = 0; ; attempt++) {
        await spend();
        const b = await cpuPerRequest(edge, pool, plan.perBlock, () => ({
          method: "POST",
          path,
          headers: { ...json, authorization: `Bearer ${keys.noisy}` },
          body,
        }));
        if (Object.keys(b.statuses).every((s) => s === "429") || attempt === 2) {
          out.refused.ms.push(b.ms);
          addStatuses(out.refused.statuses, b.statuses);
          break;
        }
        out.refused.redone++;
      }
      address++;
      const m = await cpuPerRequest(edge, pool, plan.perBlock, () => ({
        method: "POST",
        path,
        headers: { ...json, authorization: "Bearer fgk_malformed", "cf-connecting-ip": `198.51.100.${address}` },
        body,
      }));
      out.malformed.ms.push(m.ms);
      addStatuses(out.malformed.statuses, m.statuses);
      const a = await cpuPerRequest(edge, pool, plan.perBlock, () => ({
        method: "POST",
        path,
        headers: { ...json, authorization: `Bearer ${keys.quiet}` },
        body,
      }));
      out.accepted.ms.push(a.ms);
      addStatuses(out.accepted.statuses, a.statuses);
      const h = await cpuPerRequest(edge, pool, plan.perBlock, () => ({
        method: "GET",
        path: "/healthz",
        headers: {},
      }));
      out.healthz.ms.push(h.ms);
      addStatuses(out.healthz.statuses, h.statuses);
    }
  } finally {
    await pool.close();
  }
  return out;
}

/** One edge (rate limits as `mode` says): setup, the alternating blocks, then CPU per request. */
async function runEdge(mode: Mode, plan: Plan, log: (l: string) => void): Promise<EdgeRun> {
  log(`${mode}: starting workerd…`);
  const edge = await startEdge({ rateLimits: mode });
  const floods: Flood[] = [];
  let fleet: Fleet | undefined;
  const pool = connect(edge.url, 16);
  try {
    ({ fleet } = await modelFleet(edge, {
      model: QUIET_MODEL,
      count: AGENTS,
      slots: SLOTS,
      prefetch: PREFETCH,
      serviceMs: SERVICE_MS,
      idPrefix: mode === "stub" ? "nq" : "ns",
      log: (l) => log(`${mode}: ${l}`),
    }));
    if (fleet.connected < AGENTS) throw new Error(`only ${fleet.connected} of ${AGENTS} agents connected`);
    await call(
      edge,
      edge.adminKey,
      "PUT",
      `/v1/admin/models/${IDLE_MODEL}`,
      { input_schema: { type: "object" }, shards: 1, expected_runtime_s: 5 },
      [200, 201],
    );
    const quiet = await createAccount(edge, "quiet", "api", 60_000);
    const noisy = await createAccount(edge, "noisy", "free", NOISY_LIMIT_PER_MIN);
    const streamer = await createAccount(edge, "streamer", "free", STREAMER_LIMIT_PER_MIN);
    log(`${mode}: flood clients setting up (${STREAM_JOBS} queued jobs, their stream tokens)…`);
    const common = { url: edge.url, model: IDLE_MODEL, input: {}, idle_model: IDLE_MODEL, rate: NOISY_RATE };
    const noisyFlood = await startFlood({
      ...common,
      key: noisy.key,
      stream_key: streamer.key,
      stream_jobs: STREAM_JOBS,
      streams: STREAMS,
    });
    floods.push(noisyFlood);
    const healthzFlood = await startFlood({ ...common, stream_jobs: 0, streams: 0 });
    floods.push(healthzFlood);
    const shot = jobShots(QUIET_MODEL, quiet.key).single;
    log(`${mode}: warm-up, ${QUIET_RATE} quiet submits/s for ${plan.warmS} s (not reported)…`);
    await quietBlock(edge, pool, fleet, shot, plan.warmS, undefined);
    const blocks: Block[] = [];
    const beside: Record<Side, Flood | undefined> = { alone: undefined, healthz: healthzFlood, noisy: noisyFlood };
    for (let n = 1; n <= plan.rounds; n++) {
      // Each round starts on the next side, so that whatever a block leaves behind (the
      // neighbour's 300 streams closing) lands before every side alike.
      const order = SIDES.map((_, i) => SIDES[(i + n - 1) % SIDES.length]!);
      for (const side of order) {
        const flood = beside[side];
        await flood?.on();
        const b = await quietBlock(edge, pool, fleet, shot, plan.blockS, flood?.pid);
        const tally = await flood?.off();
        blocks.push({ round: n, side, flood: tally, ...b });
        log(
          `${mode}, round ${n}, ${side}: p50 ${round2(percentile(b.latencies, 50))} ms, p99 ${round2(percentile(b.latencies, 99))} ms, workerd ${round2(b.workerdMs / 1000 / b.wallS)} cores, busiest thread ${round2(b.thread.cores)}`,
        );
      }
    }
    const noisyReport = await noisyFlood.end();
    const healthzReport = await healthzFlood.end();
    log(`${mode}: workerd CPU per refused, malformed-key and accepted submit…`);
    const cpu = await cpuKinds(edge, { noisy: noisy.key, quiet: quiet.key }, plan);
    return {
      mode,
      url: edge.url,
      blocks,
      noisy: noisyReport,
      healthz: healthzReport,
      cpu,
      fatal: fleet.fatal.slice(0, 3),
    };
  } finally {
    for (const f of floods) f.kill();
    await pool.close();
    await fleet?.stop();
    await edge.stop();
  }
}

const round2 = (v: number): number => round(v, 2) ?? Number.NaN;

interface SideFigures {
  latencies: number[];
  blocks: Block[];
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

function bySide(run: EdgeRun, row: Row): SideFigures {
  const blocks = run.blocks.filter((b) =>
    row === "refused" ? b.side === "noisy" && (b.flood?.by_status["202"] ?? 0) === 0 : b.side === row,
  );
  const latencies = blocks.flatMap((b) => b.latencies);
  return {
    latencies,
    blocks,
    p50: percentile(latencies, 50),
    p90: percentile(latencies, 90),
    p99: percentile(latencies, 99),
    max: percentile(latencies, 100),
  };
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
/** A group of blocks' CPU over their summed wall time, in cores. */
const cores = (blocks: Block[], ms: (b: Block) => number): number =>
  sum(blocks.map(ms)) / 1000 / Math.max(1e-9, sum(blocks.map((b) => b.wallS)));

/** The busiest workerd thread over a group of blocks: mean and largest of the blocks' busiest, in cores. */
function threadCell(blocks: Block[]): string {
  const c = blocks.map((b) => b.thread.cores);
  const names = [...new Set(blocks.map((b) => b.thread.name))].join(", ");
  return `${mean(c).toFixed(2)} (max ${Math.max(...c).toFixed(2)}; ${names})`;
}

function statusesOf(blocks: Block[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const b of blocks) addStatuses(out, b.statuses);
  return out;
}

const cell = (statuses: Record<string, number>): string => statusCell({ statuses } as Parameters<typeof statusCell>[0]);

const GOAL = 1.1;
/** A block counts as measured on a quiet machine when every other process together used less than this (cores). */
const QUIET_OTHERS_CORES = 0.3;

/** A ratio as a cell: `1.23×`, or `—` when either side had no samples. */
const times = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(2)}×` : "—");

export const noisy: Benchmark = {
  name: "noisy",
  description:
    "a quiet account's submit → agent p99 alone, beside a /healthz flood and beside a noisy neighbour (workerd)",
  async run({ quick, log }): Promise<Report> {
    const plan: Plan = quick
      ? { rounds: 1, blockS: 3, warmS: 1, cpuRounds: 2, perBlock: 100 }
      : { rounds: 8, blockS: 2.5, warmS: 2, cpuRounds: 5, perBlock: 200 };
    const runs: EdgeRun[] = [];
    for (const mode of ["simulator", "stub"] as const) runs.push(await runEdge(mode, plan, log));

    const latencyTable: Table = {
      title: `Quiet account, submit → agent's runner starts the job (${QUIET_RATE} submits/s, open loop; ${plan.rounds} × ${plan.blockS} s per row, blocks alternating)`,
      columns: [
        "rate limits",
        "quiet account",
        "jobs",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "submit 202 p99 ms",
        "not dispatched",
        "workerd cores",
        "busiest workerd thread, cores",
        "flood client cores",
        "this process cores",
        "other procs, cores",
      ],
      rows: runs.flatMap((r) =>
        ROWS.flatMap((side) => {
          const f = bySide(r, side);
          if (f.blocks.length === 0) return [];
          return [
            [
              MODE_LABEL[r.mode],
              ROW_LABEL[side],
              f.latencies.length,
              f.p50,
              f.p90,
              f.p99,
              f.max,
              percentile(
                f.blocks.flatMap((b) => b.answers),
                99,
              ),
              sum(f.blocks.map((b) => b.undispatched)),
              cores(f.blocks, (b) => b.workerdMs),
              threadCell(f.blocks),
              side === "alone" ? "—" : cores(f.blocks, (b) => b.floodMs),
              cores(f.blocks, (b) => b.selfMs),
              cores(f.blocks, (b) => b.othersMs),
            ],
          ];
        }),
      ),
    };
    const ratio = (r: EdgeRun, a: Row, b: Row): number => bySide(r, a).p99 / bySide(r, b).p99;
    /** Each round's p99 beside the noisy neighbour over its p99 alone: a burst of other work lands on one round. */
    const roundRatios = (r: EdgeRun): { ratio: number; burst: boolean }[] =>
      Array.from({ length: plan.rounds }, (_, i) => {
        const block = (side: Side): Block | undefined => r.blocks.find((b) => b.round === i + 1 && b.side === side);
        const noisyBlock = block("noisy");
        return {
          ratio: percentile(noisyBlock?.latencies ?? [], 99) / percentile(block("alone")?.latencies ?? [], 99),
          burst: (noisyBlock?.flood?.by_status["202"] ?? 0) > 0,
        };
      });
    /** workerd's CPU per request of a flood (ms): its blocks' workerd cores less the quiet ones' alone, over the flood's rate. */
    const floodCpuMs = (r: EdgeRun, side: Side): number =>
      ((cores(bySide(r, side).blocks, (b) => b.workerdMs) - cores(bySide(r, "alone").blocks, (b) => b.workerdMs)) *
        1000) /
      NOISY_RATE;
    const ratioTable: Table = {
      title: `Quiet account's p99, ratios (goal: beside the noisy neighbour ≤ ${GOAL}× alone)`,
      columns: [
        "rate limits",
        "p99 alone / healthz / noisy ms",
        "noisy / alone",
        "noisy / healthz",
        "healthz / alone",
        "only-429 blocks / alone",
        "noisy / alone by round († its allowed submits in that block)",
        "workerd CPU per flood request, beyond alone: healthz / noisy ms",
        "goal",
      ],
      rows: runs.map((r) => [
        MODE_LABEL[r.mode],
        SIDES.map((side) => bySide(r, side).p99.toFixed(1)).join(" / "),
        times(ratio(r, "noisy", "alone")),
        times(ratio(r, "noisy", "healthz")),
        times(ratio(r, "healthz", "alone")),
        times(ratio(r, "refused", "alone")),
        roundRatios(r)
          .map((x) => `${times(x.ratio)}${x.burst ? "†" : ""}`)
          .join(", "),
        `${floodCpuMs(r, "healthz").toFixed(2)} / ${floodCpuMs(r, "noisy").toFixed(2)}`,
        ratio(r, "noisy", "alone") <= GOAL ? "met" : "missed",
      ]),
    };
    const blockTable: Table = {
      title: "Every block, in the order run",
      columns: [
        "rate limits",
        "round",
        "quiet account",
        "jobs",
        "p50 ms",
        "p99 ms",
        "flood's answers",
        "workerd cores",
        "busiest workerd thread, cores",
        "other procs, cores",
      ],
      rows: runs.flatMap((r) =>
        r.blocks.map((b) => [
          r.mode,
          b.round,
          ROW_LABEL[b.side],
          b.latencies.length,
          percentile(b.latencies, 50),
          percentile(b.latencies, 99),
          b.flood ? cell(b.flood.by_status) : "—",
          b.workerdMs / 1000 / b.wallS,
          b.thread.cores,
          b.othersMs / 1000 / b.wallS,
        ]),
      ),
    };
    /** The blocks that other processes left nearly alone: what the three sides look like on a quiet machine. */
    const quietBlocks = (r: EdgeRun, row: Row): Block[] =>
      bySide(r, row).blocks.filter((b) => b.othersMs / 1000 / b.wallS < QUIET_OTHERS_CORES);
    const quietP99 = (r: EdgeRun, row: Row): number =>
      percentile(
        quietBlocks(r, row).flatMap((b) => b.latencies),
        99,
      );
    const quietTable: Table = {
      title: `Only the blocks in which other processes used under ${QUIET_OTHERS_CORES} cores (a quiet machine)`,
      columns: [
        "rate limits",
        ...ROWS.map((row) => `${ROW_SHORT[row]}: blocks, p99 ms`),
        "noisy / alone",
        "only-429 blocks / alone",
      ],
      rows: runs.map((r) => [
        MODE_LABEL[r.mode],
        ...ROWS.map((row) => {
          const n = quietBlocks(r, row).length;
          return n === 0 ? "0" : `${n}, ${quietP99(r, row).toFixed(1)}`;
        }),
        times(quietP99(r, "noisy") / quietP99(r, "alone")),
        times(quietP99(r, "refused") / quietP99(r, "alone")),
      ]),
    };
    const cpuTable: Table = {
      title: `workerd CPU per request (${plan.cpuRounds} interleaved blocks of ${plan.perBlock} per kind, ${CPU_CONCURRENCY} at a time)`,
      columns: [
        "rate limits",
        "request",
        "answers",
        "workerd CPU ms/request",
        "spread of blocks ms",
        "vs malformed key",
      ],
      rows: runs.flatMap((r) => {
        const malformed = mean(r.cpu.malformed.ms);
        return Object.values(r.cpu).map((k) => [
          MODE_LABEL[r.mode],
          k.label + (k.redone > 0 ? ` (${k.redone} blocks redone: the window turned)` : ""),
          cell(k.statuses),
          mean(k.ms),
          `${Math.min(...k.ms).toFixed(2)}–${Math.max(...k.ms).toFixed(2)}`,
          `${(mean(k.ms) / malformed).toFixed(2)}×`,
        ]);
      }),
    };
    const floodTable: Table = {
      title: "The floods, over every block they ran in",
      columns: ["rate limits", "flood", "requests", "answers", "refused for the limit", "fewest streams held open"],
      rows: runs.flatMap((r) => [
        [
          MODE_LABEL[r.mode],
          `noisy: ${NOISY_RATE} submits/s, free account (${NOISY_LIMIT_PER_MIN}/min)`,
          r.noisy.sent,
          `${cell(r.noisy.by_status)} (${Object.entries(r.noisy.by_code)
            .map(([k, v]) => `${k}×${v}`)
            .join(", ")})`,
          `${((100 * (r.noisy.by_code.rate_limited ?? 0)) / Math.max(1, r.noisy.sent)).toFixed(1)} %`,
          `${r.noisy.streams_open} of ${STREAMS}`,
        ],
        [
          MODE_LABEL[r.mode],
          `control: ${NOISY_RATE} GET /healthz/s`,
          r.healthz.sent,
          cell(r.healthz.by_status),
          "—",
          "—",
        ],
      ]),
    };

    const metrics: Report["metrics"] = {};
    const extra: Record<string, unknown> = {};
    for (const r of runs) {
      const k = r.mode;
      for (const side of ROWS) {
        const f = bySide(r, side);
        metrics[`${k}_${side}_p50_ms`] = round(f.p50);
        metrics[`${k}_${side}_p99_ms`] = round(f.p99);
        metrics[`${k}_${side}_busiest_thread_cores`] = round(mean(f.blocks.map((b) => b.thread.cores)), 2);
      }
      metrics[`${k}_p99_noisy_over_alone`] = round(ratio(r, "noisy", "alone"));
      metrics[`${k}_p99_noisy_over_healthz`] = round(ratio(r, "noisy", "healthz"));
      metrics[`${k}_p99_noisy_over_alone_median_of_rounds`] = round(
        percentile(
          roundRatios(r).map((x) => x.ratio),
          50,
        ),
      );
      metrics[`${k}_p99_only_429_blocks_over_alone`] = round(ratio(r, "refused", "alone"));
      metrics[`${k}_quiet_machine_p99_noisy_over_alone`] = round(quietP99(r, "noisy") / quietP99(r, "alone"));
      metrics[`${k}_goal_met`] = ratio(r, "noisy", "alone") <= GOAL;
      metrics[`${k}_workerd_cpu_ms_per_healthz_flood_request`] = round(floodCpuMs(r, "healthz"));
      metrics[`${k}_workerd_cpu_ms_per_noisy_flood_request`] = round(floodCpuMs(r, "noisy"));
      metrics[`${k}_cpu_ms_per_refused`] = round(mean(r.cpu.refused.ms));
      metrics[`${k}_cpu_ms_per_malformed`] = round(mean(r.cpu.malformed.ms));
      metrics[`${k}_cpu_ms_per_accepted`] = round(mean(r.cpu.accepted.ms));
      metrics[`${k}_cpu_ms_per_healthz`] = round(mean(r.cpu.healthz.ms));
      metrics[`${k}_refused_share`] = round((r.noisy.by_code.rate_limited ?? 0) / Math.max(1, r.noisy.sent));
      metrics[`${k}_streams_held`] = r.noisy.streams_open;
      extra[`${k}_blocks`] = r.blocks.map(({ latencies, ...b }) => ({
        ...b,
        p50_ms: round(percentile(latencies, 50)),
        p99_ms: round(percentile(latencies, 99)),
      }));
      extra[`${k}_cpu`] = r.cpu;
      extra[`${k}_noisy`] = { ...r.noisy, accepted: r.noisy.accepted.length };
    }

    return {
      target: `${MEASURED_PORT}, two edges one after the other (${runs.map((r) => `${r.mode} ${r.url}`).join(", ")}); real Agent instances (gpu-agent/agent.ts) in this process, synthetic runners standing in for the GPU; each flood (test/chaos/noisy.ts) in a Node process of its own; everything shares this machine's cores`,
      setup: {
        quiet: `an api account (60,000/min), ${QUIET_RATE} single submits/s in an open loop (bench/lib/load.ts, 16 keep-alive connections) to model ${QUIET_MODEL} (1 shard), served by ${AGENTS} agents × ${SLOTS} slots, prefetch ${PREFETCH}; the runner holds a slot ${SERVICE_MS} ms`,
        latency:
          "the runner's run() call (the agent holds the lease and starts the job) − the submit's scheduled send time, both on this process's performance.now(), joined by job id",
        blocks: `${plan.rounds} rounds of alone, beside healthz, beside noisy, ${plan.blockS} s each, each round starting on the next side; ${plan.warmS} s of the quiet account alone first, not reported. A flood starts once its streams are open and stops (streams closed) after the block's last answer`,
        healthz: `control: ${NOISY_RATE} GET /healthz/s, no credentials (the cheapest answer the edge gives), its own process`,
        noisy: `a free account (${NOISY_LIMIT_PER_MIN} requests/min, binding RL_60) submitting ${NOISY_RATE}/s to ${IDLE_MODEL}, which no agent serves; a second account (${STREAMER_LIMIT_PER_MIN}/min) holds ${STREAMS} SSE streams on ${STREAM_JOBS} queued jobs there (opening a stream counts against its account's limit); one process for both`,
        rate_limits:
          "simulator: wrangler.toml's bindings as Miniflare runs them, each limit() a call to a SQLite-backed Durable Object (a read, and a write when it allows). in memory: the same limits and clock-aligned windows counted in a Worker of its own (bench/lib/edge.ts `rateLimits: \"stub\"`), as the deployed binding counts in the Worker's own process",
        state: stateFilesystem(),
      },
      tables: [latencyTable, ratioTable, quietTable, cpuTable, floodTable, blockTable],
      metrics,
      notes: [
        "workerd cores: workerd's CPU over the row's blocks (the quiet load's first send to its last answer) over their wall time; busiest workerd thread: the same for its busiest thread in each block (its JavaScript thread: the Worker and every actor run there locally), the mean and largest of the blocks; near 1.0 means that thread was saturated, and then anything queued behind it waits whoever sent it. flood client cores: the flood process; this process: the quiet load generator and the agents; other procs: every other process on the machine, well above 0 means competing load.",
        "workerd CPU per request: workerd's CPU (from /proc, 10 ms ticks) over a block over its requests. refused: the noisy account's submits once its minute's 60 are spent (429 rate_limited); malformed key: `Bearer fgk_malformed`, from an address per block (401); accepted: the quiet account's submits to the idle model (202, queued, through the account and scheduler actors); GET /healthz: no credentials, no actor.",
        "workerd CPU per flood request, beyond alone: the flood blocks' workerd cores less the alone blocks', over the flood's 100 requests/s; the noisy neighbour's includes its 300 open streams and the submits its limit lets through.",
        "The rate limit's window is the clock's minute: at 100× its limit the noisy account's 60 allowed submits arrive in the first 0.6 s of its flood in each minute, and they queue on a model of its own (no agent). Those submits fall in one noisy block per minute; the 'blocks where it got only 429s' row and the 'only-429 blocks / alone' ratio leave those blocks out, so they show what the refusals and the streams cost the quiet account on their own.",
        `Every p99 here is of a few hundred samples (a block's of ${QUIET_RATE * plan.blockS}, where it is nearly the largest): a few slow answers move it, and on this shared machine a burst of other work in one block moves it most; the per-round ratios and the every-block table show the spread.`,
        ...runs.flatMap((r) => r.fatal.map((f) => `${r.mode}: agent fatal error: ${f}`)),
        ...runs.flatMap((r) => {
          const s = statusesOf(r.blocks);
          return Object.keys(s).some((k) => k !== "202") ? [`${r.mode}: quiet submits answered ${cell(s)}`] : [];
        }),
      ],
      extra,
    };
  },
};
