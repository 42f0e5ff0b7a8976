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
import {
  mintAgentToken,
  registerFastModel,
  sleepFor,
  startFleet,
  waitFor,
  stateFilesystem,
  type Fleet,
} from "../lib/fleet.ts";
import { connect } from "../lib/load.ts";
import { loopDelayMeter, threadMeter, userSysMeter, type BusiestThread } from "../lib/threads.ts";
import type { Benchmark, Report } from "../lib/report.ts";
import { percentile, round, sleep } from "../lib/stats.ts";

const RATE = 200; // single submits per second, offered
const SERVICE_MS = 50;
const SLOTS = 2;
const PREFETCH = 1;

interface Submitted {
  /** Job id → when its submit was due (ms, performance.now()). */
  dueById: Map<string, number>;
  /** Job id → when its 202 arrived. */
  answeredById: Map<string, number>;
  sent: number;
  statuses: Record<string, number>;
  httpMs: number[];
  errorSamples: string[];
  maxSendLagMs: number;
}

/** Sends `rate` single submits per second for `durationS` on a timer; never waits on answers. */
async function openLoopSubmits(
  pool: Pool,
  key: string,
  model: string,
  rate: number,
  durationS: number,
): Promise<Submitted> {
  const out: Submitted = {
    dueById: new Map(),
    answeredById: new Map(),
    sent: 0,
    statuses: {},
    httpMs: [],
    errorSamples: [],
    maxSendLagMs: 0,
  };
  const total = Math.round(rate * durationS);
  const interval = 1000 / rate;
  const pending: Promise<void>[] = [];
  const headers = { authorization: `Bearer ${key}`, "content-type": "application/json" };
  const fire = async (i: number, due: number): Promise<void> => {
    out.sent++;
    try {
      const res = await pool.request({
        method: "POST",
        path: `/v1/models/${model}/jobs`,
        headers,
        body: JSON.stringify({ input: { prompt: `dispatch ${i}` } }),
      });
      const text = await res.body.text();
      out.statuses[res.statusCode] = (out.statuses[res.statusCode] ?? 0) + 1;
      if (res.statusCode !== 202) {
        if (out.errorSamples.length < 5) out.errorSamples.push(`${res.statusCode} ${text.slice(0, 200)}`);
        return;
      }
      const at = performance.now();
      const id = (JSON.parse(text) as { id: string }).id;
      out.httpMs.push(at - due);
      out.dueById.set(id, due);
      out.answeredById.set(id, at);
    } catch (err) {
      out.statuses.transport = (out.statuses.transport ?? 0) + 1;
      if (out.errorSamples.length < 5) out.errorSamples.push(`transport ${(err as Error).message}`);
    }
  };
  const start = performance.now();
  let i = 0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      while (i < total && start + i * interval <= now) {
        const due = start + i * interval;
        out.maxSendLagMs = Math.max(out.maxSendLagMs, now - due);
        pending.push(fire(i, due));
        i++;
      }
      if (i >= total) {
        resolve();
        return;
      }
      setTimeout(tick, Math.max(0, start + i * interval - performance.now()));
    };
    tick();
  });
  await Promise.all(pending);
  return out;
}

interface Variant {
  agents: number;
  rate: number;
  connected: number;
  connectS: number;
  durationS: number;
  submitted: Submitted;
  accepted: number;
  latencies: number[];
  /** Accepted jobs whose runner never started before the deadline. */
  neverStarted: number;
  runStartedBeforeAnswer: number;
  completedByEdge: number;
  e2eJobsPerS: number;
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
  const submitted = await openLoopSubmits(pool, key, model, rate, durationS);
  const ids = [...submitted.dueById.keys()];
  const endedIds = (): Set<string> => new Set(runLog.marks.slice(ends0).map((m) => m.jobId));
  // A backlog drains at the edge's pace: allow for as little as 40 jobs/s.
  await waitFor(
    () => {
      const ended = endedIds();
      return ids.every((id) => ended.has(id));
    },
    Math.max(20_000, (ids.length / 40) * 1000),
  );
  const tEnd = performance.now();
  const used = cpu();
  const workerdThread = threads();
  const us = userSys();
  const loopDelay = loop();
  let completedByEdge = 0;
  for (let k = 0; k < 200; k++) {
    completedByEdge = (await stub.stats()).counters.completed - c0;
    if (completedByEdge >= ids.length) break;
    await sleep(10);
  }
  const latencies: number[] = [];
  let neverStarted = 0;
  let beforeAnswer = 0;
  for (const [id, due] of submitted.dueById) {
    const start = runLog.starts.get(id);
    if (start === undefined) neverStarted++;
    else latencies.push(start - due);
  }
  // Push dispatch: a lease can reach an agent before the submit's 202 reaches the client.
  for (const [id, answered] of submitted.answeredById) {
    const start = runLog.starts.get(id);
    if (start !== undefined && start < answered) beforeAnswer++;
  }
  const ended = runLog.marks.slice(ends0);
  const lastEnd = Math.max(...ended.map((m) => m.end));
  const wallS = (tEnd - t0) / 1000;
  return {
    agents,
    rate,
    connected: fleet.connected,
    connectS: fleet.connectMs / 1000,
    durationS,
    submitted,
    accepted: ids.length,
    latencies,
    neverStarted,
    runStartedBeforeAnswer: beforeAnswer,
    completedByEdge,
    e2eJobsPerS: ended.length / ((lastEnd - t0) / 1000),
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
  const config = await registerFastModel(edge, model, SERVICE_MS / 1000);
  const token = await mintAgentToken(edge, [model]);
  const stub = await schedulerStub(edge, { modelNumber: config.number, shard: 0 });
  log(`${agents} agents (${SLOTS} slots, prefetch ${PREFETCH}) connecting…`);
  let fleet: Fleet | undefined;
  const pool = connect(edge.url, 64);
  const out: Variant[] = [];
  try {
    fleet = await startFleet({
      edge,
      token,
      models: [model],
      count: agents,
      slots: SLOTS,
      prefetch: PREFETCH,
      behave: sleepFor(SERVICE_MS),
      idPrefix: `d${agents}`,
      parallel: 25,
      deadlineMs: 90_000,
    });
    const f = fleet;
    log(`${f.connected}/${agents} connected in ${(f.connectMs / 1000).toFixed(1)} s`);
    // Every agent's first work.request parks it on the shard; give the last ones a moment.
    await sleep(1000);
    if (warmS > 0) {
      log(`warm-up: ${RATE} submits/s for ${warmS} s (not reported)…`);
      const w = await openLoopSubmits(pool, key, model, RATE, warmS);
      await waitFor(() => [...w.dueById.keys()].every((id) => f.log.starts.has(id)), 20_000);
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
            percentile(v.latencies, 50),
            percentile(v.latencies, 90),
            percentile(v.latencies, 99),
            Math.max(...v.latencies),
            v.neverStarted,
            v.e2eJobsPerS,
            v.completedByEdge,
            percentile(v.submitted.httpMs, 50),
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
              [`${k}_p50_ms`, round(percentile(v.latencies, 50))],
              [`${k}_p99_ms`, round(percentile(v.latencies, 99))],
              [`${k}_max_ms`, round(Math.max(...v.latencies))],
              [`${k}_jobs_per_s`, round(v.e2eJobsPerS, 1)],
              [`${k}_accepted`, v.accepted],
              [`${k}_errors`, v.submitted.sent - v.accepted + v.neverStarted + v.duplicates + v.fatal.length],
              [`${k}_workerd_cpu_ms_per_job`, round(v.workerdCpuMs / Math.max(1, v.accepted))],
              [`${k}_workerd_cores`, round(v.workerdCpuMs / 1000 / v.meterS, 2)],
              [`${k}_other_cores`, round(v.othersCores, 2)],
              [`${k}_workerd_busiest_thread_cores`, round(v.workerdThread.cores, 2)],
              [`${k}_workerd_idle_cores`, round(v.idle.workerdCores, 3)],
              [`${k}_workerd_sys_share`, round(v.workerdSysShare, 2)],
            ];
          }),
        ),
        p50_ms: round(percentile(main.latencies, 50)),
        p99_ms: round(percentile(main.latencies, 99)),
      },
      notes: [
        "Latency counts from each submit's scheduled send time (open loop; no coordinated omission) to the runner's run() call, so it includes the submit's HTTP path, the enqueue commit, the push to a parked agent's actor, the WebSocket frame and the agent's own handling.",
        "workerd cores: workerd's CPU over the measurement (first submit to the last run's end) over its wall time; busiest workerd thread: the same for its busiest thread (the JavaScript thread, where the Worker and every actor run locally), near 1.0 = saturated; workerd system CPU share: workerd's kernel time over its user + kernel time (file writes and syncs of actor commits are kernel time); workerd cores idle: the same fleet connected with no jobs for a few seconds before the rates (heartbeats every 5 s per agent, each renewing and re-parking); client loop delay: this process's event-loop delay (perf_hooks) over the measurement.",
        "jobs/s completed: runner ends over the time from the first submit to the last end; completed (edge): completions the scheduler actor counted (stats().counters).",
        ...variants.map(
          (v) =>
            `${v.agents} agents at ${v.rate}/s: ${v.connected} connected in ${v.connectS.toFixed(1)} s; largest send lag ${v.submitted.maxSendLagMs.toFixed(1)} ms; runs that began before the submit's 202 reached the client: ${v.runStartedBeforeAnswer} of ${v.accepted}; runs started twice: ${v.duplicates}; agent fatal errors: ${v.fatal.length}.`,
        ),
        ...variants.flatMap((v) => v.submitted.errorSamples.map((e) => `error sample (${v.agents} agents): ${e}`)),
        ...variants.flatMap((v) => v.fatal.slice(0, 3).map((e) => `agent fatal (${v.agents} agents): ${e}`)),
      ],
    };
  },
};
