/**
 * `dispatch`: end-to-end jobs/s and submit → agent latency through the real edge and agents,
 * side by side with the stack a Node team would otherwise build, Fastify + BullMQ on Redis,
 * under the same workload, the same load generator and the same stand-in runner.
 *
 * Ours: the edge in workerd (bench/lib/edge.ts, workerd's own port) and N protocol-complete
 * agents in this process (bench/lib/fleet.ts). The peer: redis-server, a Fastify server and
 * BullMQ worker processes whose concurrency adds up to the same N slots (bench/lib/bullmq.ts).
 * Scenarios, for N = 50 and 500: (a) `rate200`, an open loop of 200 single submits/s;
 * (b) `single`, a closed loop of single submits; (c) `batch`, a closed loop of 10-job batches.
 * A job's latency is the time its runner started it minus the time its submit was due (open
 * loop) or sent (closed loop), on one clock, joined by job id (bench/lib/runs.ts).
 */
import { randomBytes } from "node:crypto";
import type { Pool } from "undici";
import { groupCpuMeter } from "../lib/cpu.ts";
import { BENCH_INPUT_SCHEMA, createAccount, MEASURED_PORT, startEdge, type Edge } from "../lib/edge.ts";
import { peerVersions, startPeerServer, startPeerWorkers, startRedis, type PeerProcess } from "../lib/bullmq.ts";
import { modelFleet, RunLog, stateFilesystem, type Fleet } from "../lib/fleet.ts";
import { closedLoop, connect, openLoop, statusCell, type LoadResult } from "../lib/load.ts";
import type { Benchmark, Report, Table } from "../lib/report.ts";
import { backlogGate, joinRuns, jobShots, SubmitTracker, waitForRuns, type Runs } from "../lib/runs.ts";
import { percentile, round, sleep } from "../lib/stats.ts";

const RATE = 200; // jobs/s offered in `rate200`
/** How long the stand-in runner holds a slot per job, on both sides. */
const SERVICE_MS = 5;
/** Per agent (ours); the peer's worker concurrency is agents × SLOTS. */
const SLOTS = 1;
const PREFETCH = 1;
/** Jobs per batch submit, and closed-loop clients per scenario. */
const BATCH = 10;
const CLIENTS = { single: 32, batch: 8 } as const;
/** Closed-loop clients pause while this many accepted jobs wait unstarted. */
const BACKLOG = 500;
/** The peer's worker processes, over which its concurrency is spread. */
const WORKER_PROCESSES = 4;
/** Keep-alive connections of the load generator's pool, per side. */
const CONNECTIONS = 64;

const SCENARIOS = ["rate200", "single", "batch"] as const;
type Scenario = (typeof SCENARIOS)[number];
type SideName = "ours" | "bullmq";

/** One side under test, with its agents (ours) or workers (the peer) connected. */
interface Side {
  name: SideName;
  pool: Pool;
  shots: ReturnType<typeof jobShots>;
  log: RunLog;
  /** Processes of the queueing side (workerd; Redis and Fastify). */
  serverPids: (number | undefined)[];
  /** Processes of the agents, when not this one (the peer's workers). */
  agentPids: (number | undefined)[];
}

interface Outcome {
  side: SideName;
  agents: number;
  scenario: Scenario;
  load: LoadResult;
  accepted: number;
  runs: Runs;
  /** Every accepted job ran before the drain deadline. */
  drained: boolean;
  duplicates: number;
  /** CPU over the scenario (first submit to the last run's end), ms. */
  cpu: { serverMs: number; agentsMs: number; selfMs: number; othersMs: number };
  wallS: number;
}

/** Runs one scenario on a side: the load, then waits (bounded) until every accepted job ended. */
async function runScenario(
  side: Side,
  agents: number,
  scenario: Scenario,
  durationS: number,
  drainMs: number,
): Promise<Outcome> {
  const tracker = new SubmitTracker();
  const from = side.log.marks.length;
  const dup0 = side.log.duplicates;
  const meter = groupCpuMeter({ server: side.serverPids, agents: side.agentPids });
  const t0 = performance.now();
  const common = { pool: side.pool, durationS, workerdPid: undefined, onAnswer: tracker.onAnswer };
  const load =
    scenario === "rate200"
      ? await openLoop({ ...common, rate: RATE, shot: side.shots.single })
      : await closedLoop({
          ...common,
          clients: CLIENTS[scenario],
          maxRequests: 10_000_000,
          shot: scenario === "single" ? side.shots.single : side.shots.batch,
          countItems: scenario === "batch",
          gate: backlogGate(tracker, side.log, BACKLOG, t0 + durationS * 1000),
        });
  const drained = await waitForRuns(tracker, side.log, from, drainMs);
  const used = meter();
  const wallS = (performance.now() - t0) / 1000;
  return {
    side: side.name,
    agents,
    scenario,
    load,
    accepted: tracker.accepted,
    runs: joinRuns(tracker, side.log, from, t0),
    drained,
    duplicates: side.log.duplicates - dup0,
    cpu: { serverMs: used.groups.server, agentsMs: used.groups.agents, selfMs: used.selfMs, othersMs: used.othersMs },
    wallS,
  };
}

interface Plan {
  agents: number[];
  durationS: Record<Scenario, number>;
  warmS: number;
  drainMs: number;
}

/** Warms a side up (not reported), then runs every scenario on it. */
async function runSide(side: Side, agents: number, plan: Plan, log: (l: string) => void): Promise<Outcome[]> {
  log(`${side.name}, ${agents} agents: warm-up, ${RATE} submits/s for ${plan.warmS} s (not reported)…`);
  await runScenario(side, agents, "rate200", plan.warmS, plan.drainMs);
  await sleep(500);
  const out: Outcome[] = [];
  for (const scenario of SCENARIOS) {
    log(`${side.name}, ${agents} agents: ${scenario} for ${plan.durationS[scenario]} s…`);
    const o = await runScenario(side, agents, scenario, plan.durationS[scenario], plan.drainMs);
    log(
      `  ${round(o.runs.jobsPerS, 1)} jobs/s, p50 ${round(percentile(o.runs.latencies, 50), 2)} ms, p99 ${round(percentile(o.runs.latencies, 99), 2)} ms, ${o.accepted} accepted${o.drained ? "" : `, ${o.accepted - o.runs.ended} not done by the deadline`}`,
    );
    out.push(o);
    // Let the agents go back to waiting for work before the next scenario.
    await sleep(500);
  }
  return out;
}

/** Ours at `agents` agents: a fresh model and fleet, every scenario; agent trouble goes to `problems`. */
async function runOurs(
  edge: Edge,
  key: string,
  agents: number,
  plan: Plan,
  problems: string[],
  log: (l: string) => void,
): Promise<Outcome[]> {
  const model = `dispatch-${agents}`;
  const pool = connect(edge.url, CONNECTIONS);
  let fleet: Fleet | undefined;
  try {
    log(`ours: a fresh model and ${agents} agents…`);
    ({ fleet } = await modelFleet(edge, {
      model,
      count: agents,
      slots: SLOTS,
      prefetch: PREFETCH,
      serviceMs: SERVICE_MS,
      idPrefix: `x${agents}`,
      log,
    }));
    if (fleet.connected < agents) problems.push(`ours, ${agents} agents: only ${fleet.connected} connected.`);
    const side: Side = {
      name: "ours",
      pool,
      shots: jobShots(model, key, BATCH),
      log: fleet.log,
      serverPids: [edge.workerdPid],
      agentPids: [],
    };
    const out = await runSide(side, agents, plan, log);
    problems.push(...fleet.fatal.slice(0, 3).map((e) => `ours, ${agents} agents: agent fatal error: ${e}`));
    return out;
  } finally {
    await pool.close();
    await fleet?.stop();
  }
}

/** The peer at `agents` slots: worker processes on a fresh queue, every scenario. */
async function runPeer(
  peer: { url: string; redisPort: number; apiKey: string; serverPids: (number | undefined)[] },
  agents: number,
  plan: Plan,
  log: (l: string) => void,
): Promise<Outcome[]> {
  const queue = `dispatch-${agents}`;
  const runLog = new RunLog();
  log(`bullmq: ${agents} slots in ${Math.min(WORKER_PROCESSES, agents)} worker processes starting…`);
  const workers = await startPeerWorkers({
    redisPort: peer.redisPort,
    queue,
    concurrency: agents * SLOTS,
    processes: WORKER_PROCESSES,
    serviceMs: SERVICE_MS,
    log: runLog,
  });
  const pool = connect(peer.url, CONNECTIONS);
  try {
    const side: Side = {
      name: "bullmq",
      pool,
      shots: jobShots(queue, peer.apiKey, BATCH),
      log: runLog,
      serverPids: peer.serverPids,
      agentPids: workers.pids,
    };
    return await runSide(side, agents, plan, log);
  } finally {
    await pool.close();
    await workers.stop();
  }
}

const metricOf = (o: Outcome): { jobs_per_s: number | null; p50_ms: number | null; p99_ms: number | null } => ({
  jobs_per_s: round(o.runs.jobsPerS, 1),
  p50_ms: round(percentile(o.runs.latencies, 50)),
  p99_ms: round(percentile(o.runs.latencies, 99)),
});

const ratio = (a: number, b: number): number => (b > 0 ? a / b : Number.NaN);

/** Per scenario at one agent count: both sides' figures and ours/peer ratios. */
function scenarioJson(outcomes: Outcome[], agents: number): Record<string, unknown> {
  const find = (side: SideName, s: Scenario): Outcome | undefined =>
    outcomes.find((o) => o.side === side && o.agents === agents && o.scenario === s);
  return Object.fromEntries(
    SCENARIOS.flatMap((s) => {
      const ours = find("ours", s);
      const peer = find("bullmq", s);
      if (!ours || !peer) return [];
      const [a, b] = [metricOf(ours), metricOf(peer)];
      return [
        [
          s,
          {
            ours: { ...a, accepted: ours.accepted, cpu_ms_per_job: round(totalCpuPerJob(ours)) },
            bullmq: { ...b, accepted: peer.accepted, cpu_ms_per_job: round(totalCpuPerJob(peer)) },
            ratio: {
              jobs_per_s: round(ratio(ours.runs.jobsPerS, peer.runs.jobsPerS)),
              p50_ms: round(ratio(percentile(ours.runs.latencies, 50), percentile(peer.runs.latencies, 50))),
              p99_ms: round(ratio(percentile(ours.runs.latencies, 99), percentile(peer.runs.latencies, 99))),
            },
          },
        ],
      ];
    }),
  );
}

function totalCpuPerJob(o: Outcome): number {
  return (o.cpu.serverMs + o.cpu.agentsMs + o.cpu.selfMs) / Math.max(1, o.runs.ended);
}

interface Goal {
  id: string;
  text: string;
  scenario: Scenario;
  /** Ours over the peer, per the goal's measure. */
  measure: (o: Outcome) => number;
  unit: string;
  target: number;
  /** true: ratio ≥ target meets it; false: ratio ≤ target does. */
  atLeast: boolean;
}

const GOALS: Goal[] = [
  {
    id: "a_rate200_p99",
    text: "(a) p99 submit → agent at 200 jobs/s within 1.5× the peer's",
    scenario: "rate200",
    measure: (o) => percentile(o.runs.latencies, 99),
    unit: "ms",
    target: 1.5,
    atLeast: false,
  },
  {
    id: "b_single_jobs_per_s",
    text: "(b) jobs/s at saturation, single submits, ≥ 0.5× the peer's",
    scenario: "single",
    measure: (o) => o.runs.jobsPerS,
    unit: "jobs/s",
    target: 0.5,
    atLeast: true,
  },
  {
    id: "c_batch_jobs_per_s",
    text: "(c) jobs/s at saturation, 10-job batches, ≥ 1.0× the peer's",
    scenario: "batch",
    measure: (o) => o.runs.jobsPerS,
    unit: "jobs/s",
    target: 1.0,
    atLeast: true,
  },
];

function goalRows(outcomes: Outcome[], agentCounts: number[]): { rows: (string | number)[][]; json: unknown[] } {
  const rows: (string | number)[][] = [];
  const json: unknown[] = [];
  for (const agents of agentCounts) {
    for (const g of GOALS) {
      const ours = outcomes.find((o) => o.side === "ours" && o.agents === agents && o.scenario === g.scenario);
      const peer = outcomes.find((o) => o.side === "bullmq" && o.agents === agents && o.scenario === g.scenario);
      if (!ours || !peer) continue;
      const r = ratio(g.measure(ours), g.measure(peer));
      const met = g.atLeast ? r >= g.target : r <= g.target;
      rows.push([
        g.text,
        agents,
        `${round(g.measure(ours), 2)} ${g.unit}`,
        `${round(g.measure(peer), 2)} ${g.unit}`,
        `${round(r, 3)}×`,
        met ? "met" : "missed",
      ]);
      json.push({
        goal: g.id,
        agents,
        ours: round(g.measure(ours)),
        bullmq: round(g.measure(peer)),
        ratio: round(r),
        target: g.target,
        met,
      });
    }
  }
  return { rows, json };
}

function loadCell(o: Outcome, plan: Plan): string {
  const d = plan.durationS[o.scenario];
  if (o.scenario === "rate200") return `open loop, ${RATE} submits/s, ${d} s`;
  if (o.scenario === "single") return `${CLIENTS.single} clients, single, ${d} s`;
  return `${CLIENTS.batch} clients × ${BATCH} jobs, ${d} s`;
}

export const dispatch: Benchmark = {
  name: "dispatch",
  description: "jobs/s and submit → agent latency through edge and agents, side by side with Fastify + BullMQ on Redis",
  async run({ quick, log }): Promise<Report> {
    const plan: Plan = quick
      ? { agents: [50], durationS: { rate200: 2, single: 2, batch: 2 }, warmS: 1, drainMs: 5_000 }
      : { agents: [50, 500], durationS: { rate200: 10, single: 6, batch: 6 }, warmS: 1, drainMs: 30_000 };
    // Fails before anything starts when redis-server is missing.
    const versions = peerVersions();
    const apiKey = randomBytes(24).toString("base64url");
    const outcomes: Outcome[] = [];
    const problems: string[] = [];
    const stops: (() => Promise<void>)[] = [];
    let edgeUrl = "";
    let peerUrl = "";
    try {
      log("bundling the Worker and starting workerd…");
      const edge = await startEdge();
      stops.push(edge.stop);
      edgeUrl = edge.url;
      log(`starting redis-server ${versions.redis} and the Fastify server…`);
      const redis: PeerProcess & { port: number } = await startRedis();
      stops.push(redis.stop);
      // draft-07 for Fastify's Ajv: the same schema without its 2020-12 `$schema`.
      const { $schema: _draft, ...inputSchema } = BENCH_INPUT_SCHEMA;
      const server = await startPeerServer({ redisPort: redis.port, apiKey, inputSchema });
      stops.push(server.stop);
      peerUrl = server.url;
      const acct = await createAccount(edge);
      const peer = { url: server.url, redisPort: redis.port, apiKey, serverPids: [redis.pid, server.pid] };
      for (const agents of plan.agents) {
        outcomes.push(...(await runOurs(edge, acct.key, agents, plan, problems, log)));
        outcomes.push(...(await runPeer(peer, agents, plan, log)));
      }
    } finally {
      for (const stop of stops.toReversed()) await stop().catch((err: Error) => log(`stopping: ${err.message}`));
    }

    const perJob = (ms: number, o: Outcome): number => ms / Math.max(1, o.runs.ended);
    const runner = `synthetic stand-in for the GPU: holds a slot ${SERVICE_MS} ms (a timer), no frames, no outputs`;
    const resultTable: Table = {
      title: `Dispatch, ours vs Fastify + BullMQ on Redis (${runner}; ours on ${MEASURED_PORT})`,
      columns: [
        "agents",
        "scenario",
        "side",
        "load",
        "submits",
        "answers",
        "jobs accepted",
        "accepted jobs/s",
        "jobs/s end to end",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "not run by deadline",
        "server CPU ms/job",
        "agents CPU ms/job",
        "client CPU ms/job",
        "total CPU ms/job",
        "other procs, cores",
      ],
      rows: outcomes.map((o) => [
        o.agents,
        o.scenario,
        o.side,
        loadCell(o, plan),
        o.load.sent,
        statusCell(o.load),
        o.accepted,
        o.accepted / o.load.wallS,
        o.runs.jobsPerS,
        percentile(o.runs.latencies, 50),
        percentile(o.runs.latencies, 90),
        percentile(o.runs.latencies, 99),
        percentile(o.runs.latencies, 100),
        o.accepted - o.runs.ended,
        perJob(o.cpu.serverMs, o),
        o.side === "ours" ? "in client" : perJob(o.cpu.agentsMs, o),
        perJob(o.cpu.selfMs, o),
        totalCpuPerJob(o),
        o.cpu.othersMs / 1000 / o.wallS,
      ]),
    };
    const ratioTable: Table = {
      title: `Ours / peer, same run (${runner})`,
      columns: [
        "agents",
        "scenario",
        "jobs/s ours",
        "jobs/s bullmq",
        "jobs/s ratio",
        "p50 ratio",
        "p99 ratio",
        "CPU/job ratio",
      ],
      rows: plan.agents.flatMap((agents) =>
        SCENARIOS.flatMap((s) => {
          const ours = outcomes.find((o) => o.side === "ours" && o.agents === agents && o.scenario === s);
          const peer = outcomes.find((o) => o.side === "bullmq" && o.agents === agents && o.scenario === s);
          if (!ours || !peer) return [];
          return [
            [
              agents,
              s,
              ours.runs.jobsPerS,
              peer.runs.jobsPerS,
              ratio(ours.runs.jobsPerS, peer.runs.jobsPerS),
              ratio(percentile(ours.runs.latencies, 50), percentile(peer.runs.latencies, 50)),
              ratio(percentile(ours.runs.latencies, 99), percentile(peer.runs.latencies, 99)),
              ratio(totalCpuPerJob(ours), totalCpuPerJob(peer)),
            ],
          ];
        }),
      ),
    };
    const goals = goalRows(outcomes, plan.agents);
    const goalTable: Table = {
      title: `Goals (ours / peer from the same run; ${runner})`,
      columns: ["goal", "agents", "ours", "bullmq", "ratio", "result"],
      rows: goals.rows,
    };
    const main = plan.agents[0] as number;
    const extra: Record<string, unknown> = { scenarios: scenarioJson(outcomes, main), goals: goals.json };
    for (const agents of plan.agents.slice(1)) extra[`scenarios_${agents}`] = scenarioJson(outcomes, agents);
    const metrics: Report["metrics"] = {};
    for (const o of outcomes) {
      const k = `${o.side}_a${o.agents}_${o.scenario}`;
      const m = metricOf(o);
      metrics[`${k}_jobs_per_s`] = m.jobs_per_s;
      metrics[`${k}_p50_ms`] = m.p50_ms;
      metrics[`${k}_p99_ms`] = m.p99_ms;
      metrics[`${k}_cpu_ms_per_job`] = round(totalCpuPerJob(o));
    }
    for (const g of goals.json as { goal: string; agents: number; met: boolean }[]) {
      metrics[`goal_${g.goal}_a${g.agents}_met`] = g.met;
    }
    return {
      target: `ours: ${MEASURED_PORT} (${edgeUrl}), real Agent instances (gpu-agent/agent.ts), one WebSocket each, in this process; peer: Fastify ${versions.fastify} (${peerUrl}, its own process) + BullMQ ${versions.bullmq} (ioredis ${versions.ioredis}) on redis-server ${versions.redis}, workers in ${WORKER_PROCESSES} processes; the runner on both sides is a synthetic stand-in for the GPU; everything shares this machine's cores`,
      setup: {
        runner: `${runner}; the same on both sides`,
        agents: `${plan.agents.join(" and ")}: ours, that many agents with ${SLOTS} slot and prefetch ${PREFETCH} each (model expected_runtime_s ${SERVICE_MS / 1000}, 1 shard); the peer, that many BullMQ Worker slots (concurrency) spread evenly over ${WORKER_PROCESSES} processes; either way at most ${plan.agents.map((n) => (n * SLOTS * 1000) / SERVICE_MS).join(" and ")} jobs/s of runner time`,
        scenarios: `rate200: open loop, ${RATE} single submits/s; single: closed loop, ${CLIENTS.single} clients, single submits; batch: closed loop, ${CLIENTS.batch} clients, ${BATCH}-job batches (POST /v1/models/{model}/jobs/batch; the peer: one addBulk); closed-loop clients also pause while ${BACKLOG} accepted jobs wait unstarted`,
        durations_s: `rate200 ${plan.durationS.rate200}, single ${plan.durationS.single}, batch ${plan.durationS.batch}; then until every accepted job ran (at most ${plan.drainMs / 1000} s); ${plan.warmS} s at ${RATE}/s per side and agent count first, not reported`,
        http: `the same load generator for both (bench/lib/load.ts): undici Pool, ${CONNECTIONS} keep-alive connections, same request bodies and bearer key header`,
        latency:
          "run start − submit due (open loop) or sent (closed loop), joined by job id; ours: the runner's run() in this process (performance.now()); the peer: the worker's processor call, on CLOCK_MONOTONIC (process.hrtime) in the worker process, turned into this process's performance.now() by the offset between the two, read once (Node's performance.now() counts on the same clock)",
        peer_server:
          "Fastify: bearer-key check, JSON Schema validation of the body (the edge's input schema), Queue.add / Queue.addBulk with BullMQ's default job options (completed jobs kept), 202 with the id",
        peer_redis:
          "127.0.0.1, a free port, appendonly yes (appendfsync everysec, the default), RDB snapshots off, data in a temporary directory",
        state: `${stateFilesystem()}: workerd's actor state and Redis's AOF`,
      },
      tables: [resultTable, ratioTable, goalTable],
      metrics,
      notes: [
        "accepted jobs/s: jobs accepted (202) over the load's own time, first send to last answer. jobs/s end to end: runs ended over the time from the scenario's first submit to its last run's end (the backlog left when the load stops is drained and counted). Latencies are of every accepted job that started.",
        "CPU columns, per job that ran: server = workerd (ours) or redis-server + the Fastify process (the peer); agents = the peer's worker processes (ours run in this process, so their CPU is in the client column); client = this process (load generator, and for ours the agents); other procs = every other process on the machine over the scenario's wall time, in cores: well above 0 means competing load.",
        "For orientation, the issue's peer figures (≈ 7,400 jobs/s with single submits, ≈ 6,000 jobs/s with 10-job batches, p99 ≈ 2.4 ms at 200 jobs/s) were taken on another machine; every ratio here compares the two sides within this run, on this machine.",
        "Durability differs: the edge answers 202 after the job is committed to its actor's SQLite storage; Redis answers before its AOF is fsynced (everysec), so up to about 1 s of acknowledged jobs can be lost on a crash.",
        "The edge does more per submit than the peer's server: per-account authentication through an actor, rate limiting, job ids and records, SLO-tier queues, leases with epochs, and pushes to agents over WebSockets; the peer's workers pull from Redis lists.",
        ...outcomes.flatMap((o) => {
          const issues: string[] = [];
          if (o.duplicates > 0) issues.push(`${o.duplicates} jobs ran twice`);
          if (!o.drained) issues.push(`${o.accepted - o.runs.ended} accepted jobs had not ended by the deadline`);
          if (o.scenario === "rate200") issues.push(`largest send lag ${o.load.maxSendLagMs.toFixed(1)} ms`);
          issues.push(
            `runs that began before the submit's 202 reached the client: ${o.runs.startedBeforeAnswer} of ${o.accepted}`,
          );
          return [`${o.side}, ${o.agents} agents, ${o.scenario}: ${issues.join("; ")}.`];
        }),
        ...outcomes.flatMap((o) =>
          o.load.errorSamples.map((e) => `error sample (${o.side}, ${o.agents} agents, ${o.scenario}): ${e}`),
        ),
      ],
      extra,
    };
  },
};
