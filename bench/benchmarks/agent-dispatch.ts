/**
 * `agent-dispatch`: submit → agent latency at a fixed offered load. Many protocol-complete
 * agents (each the real {@link Agent} of gpu-agent/agent.ts with its own WebSocket and state,
 * all in this one process, the runner an in-process stand-in that holds a slot for a fixed
 * time) wait on the edge in workerd, on workerd's own port; single submits arrive on a timer
 * (open loop). The latency of a job is the time its runner's run() was called minus the time
 * its submit request was due to be sent, both on this process's clock, joined by job id.
 */
import type { Pool } from "undici";
import { cpuMeter } from "../lib/cpu.ts";
import { createAccount, MEASURED_PORT, schedulerStub, startEdge, type Edge, type SchedulerRpc } from "../lib/edge.ts";
import { modelFleet, waitFor, stateFilesystem, type Fleet } from "../lib/fleet.ts";
import { connect, openLoop, type LoadResult } from "../lib/load.ts";
import { joinRuns, jobShots, SubmitTracker, waitForRuns, type Runs } from "../lib/runs.ts";
import { loopDelayMeter, threadMeter, userSysMeter, type BusiestThread } from "../lib/threads.ts";
import type { Benchmark, Report } from "../lib/report.ts";
import { percentile, round, sleep } from "../lib/stats.ts";

const RATE = 200; // single submits per second, offered
const SERVICE_MS = 50;
const SLOTS = 2;
const PREFETCH = 1;

/** An open loop of `rate` single submits per second for `durationS`, tracking each job's due time. */
async function openLoopSubmits(
  pool: Pool,
  key: string,
  model: string,
  rate: number,
  durationS: number,
): Promise<{ load: LoadResult; tracker: SubmitTracker }> {
  const tracker = new SubmitTracker();
  const load = await openLoop({
    pool,
    rate,
    durationS,
    shot: jobShots(model, key).single,
    workerdPid: undefined,
    onAnswer: tracker.onAnswer,
  });
  return { load, tracker };
}

interface Variant {
  agents: number;
  rate: number;
  connected: number;
  connectS: number;
  durationS: number;
  submitted: LoadResult;
  accepted: number;
  /** Latencies, runs never started before the deadline, runs started before the 202, jobs/s. */
  runs: Runs;
  completedByEdge: number;
  duplicates: number;
  fatal: string[];
  workerdCpuMs: number;
  clientCpuMs: number;
  othersCores: number;
  /** Wall time of the CPU meter: first submit to the last run's end (s). */
  meterS: number;
  workerdThread: BusiestThread;
  /** workerd's system CPU over its user + system CPU during the measurement. */
  workerdSysShare: number;
  loop: { p50: number; p99: number; max: number };
  /** The same fleet with no jobs, before the rates: what heartbeats and parking cost. */
  idle: { workerdCores: number; othersCores: number };
}

/** One measurement at `rate` on a connected fleet: submit, wait for every run to end. */
async function measure(
  ctx: {
    edge: Edge;
    pool: Pool;
    key: string;
    model: string;
    fleet: Fleet;
    stub: SchedulerRpc;
    idle: Variant["idle"];
  },
  agents: number,
  rate: number,
  durationS: number,
): Promise<Variant> {
  const { edge, pool, key, model, fleet, stub } = ctx;
  const runLog = fleet.log;
  const c0 = (await stub.stats()).counters.completed;
  const ends0 = runLog.marks.length;
  const dup0 = runLog.duplicates;
  const cpu = cpuMeter(edge.workerdPid);
  const threads = threadMeter(edge.workerdPid);
  const userSys = userSysMeter(edge.workerdPid);
  const loop = loopDelayMeter();
  const t0 = performance.now();
  const { load: submitted, tracker } = await openLoopSubmits(pool, key, model, rate, durationS);
  // A backlog drains at the edge's pace: allow for as little as 40 jobs/s.
  await waitForRuns(tracker, runLog, ends0, Math.max(20_000, (tracker.accepted / 40) * 1000));
  const tEnd = performance.now();
  const used = cpu();
  const workerdThread = threads();
  const us = userSys();
  const loopDelay = loop();
  let completedByEdge = 0;
  for (let k = 0; k < 200; k++) {
    completedByEdge = (await stub.stats()).counters.completed - c0;
    if (completedByEdge >= tracker.accepted) break;
    await sleep(10);
  }
  // Push dispatch: a lease can reach an agent before the submit's 202 reaches the client
  // (runs.startedBeforeAnswer).
  const runs = joinRuns(tracker, runLog, ends0, t0);
  const wallS = (tEnd - t0) / 1000;
  return {
    agents,
    rate,
    connected: fleet.connected,
    connectS: fleet.connectMs / 1000,
    durationS,
    submitted,
    accepted: tracker.accepted,
    runs,
    completedByEdge,
    duplicates: runLog.duplicates - dup0,
    fatal: [...fleet.fatal],
    workerdCpuMs: used.workerdMs,
    clientCpuMs: used.selfMs,
    othersCores: used.othersMs / 1000 / wallS,
    meterS: wallS,
    workerdThread,
    workerdSysShare: us.sysMs / Math.max(1, us.userMs + us.sysMs),
    loop: loopDelay,
    idle: ctx.idle,
  };
}

/** Connects `agents` agents to a fresh model, then measures at each rate in turn. */
async function runFleet(
  edge: Edge,
  key: string,
  agents: number,
  rates: number[],
  durationS: number,
  warmS: number,
  idleS: number,
  log: (l: string) => void,
): Promise<Variant[]> {
  const model = `dispatch-${agents}`;
  let fleet: Fleet | undefined;
  const pool = connect(edge.url, 64);
  const out: Variant[] = [];
  try {
    const started = await modelFleet(edge, {
      model,
      count: agents,
      slots: SLOTS,
      prefetch: PREFETCH,
      serviceMs: SERVICE_MS,
      idPrefix: `d${agents}`,
      log,
    });
    fleet = started.fleet;
    const f = fleet;
    const stub = await schedulerStub(edge, { modelNumber: started.config.number, shard: 0 });
    if (warmS > 0) {
      log(`warm-up: ${RATE} submits/s for ${warmS} s (not reported)…`);
      const w = await openLoopSubmits(pool, key, model, RATE, warmS);
      await waitFor(() => [...w.tracker.dueById.keys()].every((id) => f.log.starts.has(id)), 20_000);
      await sleep(500);
    }
    log(`${agents} agents idle for ${idleS} s (heartbeats only)…`);
    const idleCpu = cpuMeter(edge.workerdPid);
    await sleep(idleS * 1000);
    const idleUsed = idleCpu();
    const idle = { workerdCores: idleUsed.workerdMs / 1000 / idleS, othersCores: idleUsed.othersMs / 1000 / idleS };
    for (const rate of rates) {
      log(`${agents} agents: ${rate} single submits/s for ${durationS} s…`);
      out.push(await measure({ edge, pool, key, model, fleet: f, stub, idle }, agents, rate, durationS));
      // Let the last runs finish and the agents re-park before the next rate.
      await sleep(1000);
    }
    return out;
  } finally {
    await pool.close();
    await fleet?.stop();
  }
}

export const agentDispatch: Benchmark = {
  name: "agent-dispatch",
  description: "submit → agent latency at 200 jobs/s with 50 (and 500) in-process agents, fake runner (workerd)",
  async run({ quick, log }): Promise<Report> {
    const durationS = quick ? 5 : 10;
    const plan: [number, number[]][] = quick
      ? [[50, [RATE]]]
      : [
          [50, [RATE, 100, 50]],
          [500, [RATE, 100, 50]],
        ];
    log("bundling the Worker and starting workerd…");
    const edge = await startEdge();
    const variants: Variant[] = [];
    try {
      const acct = await createAccount(edge);
      for (const [k, [n, rates]] of plan.entries()) {
        variants.push(...(await runFleet(edge, acct.key, n, rates, durationS, k === 0 ? 1 : 0, quick ? 2 : 5, log)));
      }
    } finally {
      await edge.stop();
    }
    const statuses = (v: Variant): string =>
      Object.entries(v.submitted.statuses)
        .map(([k, n]) => `${k}×${n}`)
        .join(", ");
    const main = variants[0]!;
    return {
      target: `${MEASURED_PORT} (${edge.url}): real Agent instances (gpu-agent/agent.ts), one WebSocket each, all in this process; the runner is a synthetic in-process stand-in for the GPU; agents, load generator and workerd share this machine's cores`,
      setup: {
        edge_state: `${stateFilesystem()}: the durable state of every actor (set TMPDIR to move it)`,
        load: `open loop: ${RATE} single submits/s (POST /v1/models/{model}/jobs) for ${durationS} s, undici Pool of 64 keep-alive connections`,
        agents_and_rates: plan.map(([n, rates]) => `${n} agents at ${rates.join(", ")} jobs/s`).join("; "),
        per_agent: `${SLOTS} slots, prefetch ${PREFETCH}, heartbeat every 5 s, GPU health stubbed to none`,
        runner: `synthetic, in-process: holds a slot ${SERVICE_MS} ms (setTimeout), no frames, no outputs (no upload)`,
        model: `one per variant, 1 shard, expected_runtime_s ${SERVICE_MS / 1000}`,
        latency: "runner run() called − submit due time (performance.now(), same process), joined by job id",
        warmup: `1 s at ${RATE}/s before the first variant, not reported`,
      },
      tables: [
        {
          title: `Submit → agent latency by offered load (synthetic in-process runner, ${SERVICE_MS} ms per job, standing in for the GPU)`,
          columns: [
            "agents",
            "offered jobs/s",
            "connected",
            "connect s",
            "submits",
            "answers",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "never started",
            "jobs/s completed",
            "completed (edge)",
            "submit 202 p50 ms",
            "workerd CPU ms/job",
            "workerd cores",
            "busiest workerd thread, cores",
            "workerd system CPU share",
            "workerd cores idle",
            "client CPU ms/job",
            "client loop delay p99 ms",
            "other procs, cores",
          ],
          rows: variants.map((v) => [
            v.agents,
            v.rate,
            v.connected,
            v.connectS,
            v.submitted.sent,
            statuses(v),
            percentile(v.runs.latencies, 50),
            percentile(v.runs.latencies, 90),
            percentile(v.runs.latencies, 99),
            Math.max(...v.runs.latencies),
            v.runs.neverStarted,
            v.runs.jobsPerS,
            v.completedByEdge,
            percentile(v.submitted.latencies, 50),
            v.workerdCpuMs / Math.max(1, v.accepted),
            v.workerdCpuMs / 1000 / v.meterS,
            `${v.workerdThread.cores.toFixed(2)} (${v.workerdThread.name})`,
            `${Math.round(v.workerdSysShare * 100)}%`,
            v.idle.workerdCores,
            v.clientCpuMs / Math.max(1, v.accepted),
            v.loop.p99,
            v.othersCores,
          ]),
        },
      ],
      metrics: {
        ...Object.fromEntries(
          variants.flatMap((v) => {
            const k = `a${v.agents}_r${v.rate}`;
            return [
              [`${k}_connected`, v.connected],
              [`${k}_p50_ms`, round(percentile(v.runs.latencies, 50))],
              [`${k}_p99_ms`, round(percentile(v.runs.latencies, 99))],
              [`${k}_max_ms`, round(Math.max(...v.runs.latencies))],
              [`${k}_jobs_per_s`, round(v.runs.jobsPerS, 1)],
              [`${k}_accepted`, v.accepted],
              [`${k}_errors`, v.submitted.sent - v.accepted + v.runs.neverStarted + v.duplicates + v.fatal.length],
              [`${k}_workerd_cpu_ms_per_job`, round(v.workerdCpuMs / Math.max(1, v.accepted))],
              [`${k}_workerd_cores`, round(v.workerdCpuMs / 1000 / v.meterS, 2)],
              [`${k}_other_cores`, round(v.othersCores, 2)],
              [`${k}_workerd_busiest_thread_cores`, round(v.workerdThread.cores, 2)],
              [`${k}_workerd_idle_cores`, round(v.idle.workerdCores, 3)],
              [`${k}_workerd_sys_share`, round(v.workerdSysShare, 2)],
            ];
          }),
        ),
        p50_ms: round(percentile(main.runs.latencies, 50)),
        p99_ms: round(percentile(main.runs.latencies, 99)),
      },
      notes: [
        "Latency counts from each submit's scheduled send time (open loop; no coordinated omission) to the runner's run() call, so it includes the submit's HTTP path, the enqueue commit, the push to a parked agent's actor, the WebSocket frame and the agent's own handling.",
        "workerd cores: workerd's CPU over the measurement (first submit to the last run's end) over its wall time; busiest workerd thread: the same for its busiest thread (the JavaScript thread, where the Worker and every actor run locally), near 1.0 = saturated; workerd system CPU share: workerd's kernel time over its user + kernel time (file writes and syncs of actor commits are kernel time); workerd cores idle: the same fleet connected with no jobs for a few seconds before the rates (heartbeats every 5 s per agent, each renewing and re-parking); client loop delay: this process's event-loop delay (perf_hooks) over the measurement.",
        "jobs/s completed: runner ends over the time from the first submit to the last end; completed (edge): completions the scheduler actor counted (stats().counters).",
        ...variants.map(
          (v) =>
            `${v.agents} agents at ${v.rate}/s: ${v.connected} connected in ${v.connectS.toFixed(1)} s; largest send lag ${v.submitted.maxSendLagMs.toFixed(1)} ms; runs that began before the submit's 202 reached the client: ${v.runs.startedBeforeAnswer} of ${v.accepted}; runs started twice: ${v.duplicates}; agent fatal errors: ${v.fatal.length}.`,
        ),
        ...variants.flatMap((v) => v.submitted.errorSamples.map((e) => `error sample (${v.agents} agents): ${e}`)),
        ...variants.flatMap((v) => v.fatal.slice(0, 3).map((e) => `agent fatal (${v.agents} agents): ${e}`)),
      ],
    };
  },
};
