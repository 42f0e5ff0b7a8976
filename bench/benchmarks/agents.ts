/**
 * `agents`: a thousand agents connected to one local edge at once, all heartbeating, while jobs
 * still dispatch. The agents are bare protocol clients (bench/lib/swarm.ts) in two worker
 * threads of this process; the edge runs in workerd on its own port (bench/lib/edge.ts). Three
 * phases, measured apart:
 *
 * 1. `connect`: every agent opens its socket at once (64 handshakes in flight per thread): time
 *    to the last `agent.welcome`, and each agent's connect → welcome;
 * 2. `idle`: the fleet connected, no jobs: every agent heartbeats each `heartbeat_ms` (5 s) with
 *    room for one job, which parks a work request it renews; workerd's CPU over the heartbeats
 *    acknowledged is the cost of one heartbeat, everything it sets off included;
 * 3. `dispatch`: the same fleet with an open loop of single submits: submit (due time) → lease
 *    received by an agent, joined by job id, beside the heartbeats.
 *
 * The capacity figures in docs/capacity.md come from here and from `cost`.
 */
import { processCpuMs, machineBusyMs } from "../lib/cpu.ts";
import { createAccount, MEASURED_PORT, startEdge } from "../lib/edge.ts";
import { benchAgentId, mintAgentToken, registerFastModel } from "../lib/fleet.ts";
import { connect, openLoop } from "../lib/load.ts";
import type { Benchmark, Report } from "../lib/report.ts";
import { jobShots, SubmitTracker } from "../lib/runs.ts";
import { percentile, round, sleep } from "../lib/stats.ts";
import { startSwarmThread, type ConnectResult, type SwarmStats, type SwarmThread } from "../lib/swarm.ts";
import { threadMeter } from "../lib/threads.ts";

const MODEL = "swarm";
const THREADS = 2;
/** Handshakes in flight per thread while connecting. */
const CONCURRENCY = 64;
const SLOTS = 1;
/** How long a simulated agent holds a lease before its success (ms). */
const SERVICE_MS = 50;

interface Sizes {
  agents: number;
  idleS: number;
  dispatchS: number;
  rate: number;
}

const FULL: Sizes = { agents: 1000, idleS: 30, dispatchS: 20, rate: 20 };
const QUICK: Sizes = { agents: 200, idleS: 10, dispatchS: 5, rate: 10 };

/** Sums what every thread saw since the last call. */
async function gather(threads: readonly SwarmThread[]): Promise<SwarmStats> {
  const all = await Promise.all(threads.map((t) => t.stats()));
  return {
    heartbeats: all.reduce((s, x) => s + x.heartbeats, 0),
    acks: all.reduce((s, x) => s + x.acks, 0),
    leases: all.flatMap((x) => x.leases),
    results: all.reduce((s, x) => s + x.results, 0),
    closes: all.flatMap((x) => x.closes),
    cpuMs: all.reduce((s, x) => s + x.cpuMs, 0),
  };
}

/** workerd's and the rest of the machine's CPU over a phase. */
function meter(workerdPid: number | undefined): () => { workerdMs: number; machineMs: number; wallS: number } {
  const w0 = processCpuMs(workerdPid);
  const m0 = machineBusyMs();
  const t0 = performance.now();
  return () => ({
    workerdMs: processCpuMs(workerdPid) - w0,
    machineMs: machineBusyMs() - m0,
    wallS: (performance.now() - t0) / 1000,
  });
}

/** Cores the rest of the machine used over a phase: its busy time less workerd's and the swarm's. */
function othersCores(machineMs: number, ownMs: number, wallS: number): number {
  return Math.max(0, machineMs - ownMs) / 1000 / wallS;
}

export const agents: Benchmark = {
  name: "agents",
  description:
    "1,000 simulated agents connected at once, heartbeating, while jobs dispatch: connect, heartbeat cost, latency",
  async run({ quick, log }): Promise<Report> {
    const sizes = quick ? QUICK : FULL;
    const edge = await startEdge();
    const threads: SwarmThread[] = [];
    try {
      await registerFastModel(edge, MODEL, SERVICE_MS / 1000);
      const { key } = await createAccount(edge);
      const token = await mintAgentToken(edge, [MODEL]);
      for (let i = 0; i < THREADS; i++) threads.push(await startSwarmThread());
      const ids = Array.from({ length: sizes.agents }, (_, i) => benchAgentId("swarm", i));

      // 1. connect, all at once.
      log(`connecting ${sizes.agents} agents in ${THREADS} threads…`);
      const connectMeter = meter(edge.workerdPid);
      const t0 = performance.now();
      const connected: ConnectResult[] = (
        await Promise.all(
          threads.map((t, i) =>
            t.connect({
              url: edge.url,
              token,
              ids: ids.filter((_, k) => k % THREADS === i),
              concurrency: CONCURRENCY,
              slots: SLOTS,
              serviceMs: SERVICE_MS,
            }),
          ),
        )
      ).flat();
      const connectS = (performance.now() - t0) / 1000;
      const connectCpu = connectMeter();
      const ok = connected.filter((c) => c.error === undefined);
      const failures = connected.filter((c) => c.error !== undefined);
      const connectMs = ok.map((c) => c.ms);
      log(`connected ${ok.length}/${sizes.agents} in ${connectS.toFixed(1)} s`);
      await gather(threads); // reset the counters: the welcome's work requests are not heartbeats

      // 2. idle: heartbeats only.
      log(`idle for ${sizes.idleS} s: heartbeats only…`);
      const idleMeter = meter(edge.workerdPid);
      const idleThread = threadMeter(edge.workerdPid);
      await sleep(sizes.idleS * 1000);
      const idleCpu = idleMeter();
      const idleBusiest = idleThread();
      const idle = await gather(threads);

      // 3. dispatch beside the heartbeats.
      log(`dispatch: ${sizes.rate} submits/s for ${sizes.dispatchS} s…`);
      const pool = connect(edge.url, 16);
      const tracker = new SubmitTracker();
      const dispatchMeter = meter(edge.workerdPid);
      const load = await openLoop({
        pool,
        rate: sizes.rate,
        durationS: sizes.dispatchS,
        shot: jobShots(MODEL, key).single,
        workerdPid: undefined,
        onAnswer: tracker.onAnswer,
      });
      await pool.close();
      // Wait until every accepted job reached an agent (30 s at most).
      const leasedAt = new Map<string, number>();
      let dispatch: SwarmStats = { heartbeats: 0, acks: 0, leases: [], results: 0, closes: [], cpuMs: 0 };
      const until = performance.now() + 30_000;
      for (;;) {
        const s = await gather(threads);
        dispatch = {
          heartbeats: dispatch.heartbeats + s.heartbeats,
          acks: dispatch.acks + s.acks,
          leases: [...dispatch.leases, ...s.leases],
          results: dispatch.results + s.results,
          closes: [...dispatch.closes, ...s.closes],
          cpuMs: dispatch.cpuMs + s.cpuMs,
        };
        for (const l of s.leases) if (!leasedAt.has(l.job)) leasedAt.set(l.job, l.at);
        if ([...tracker.dueById.keys()].every((id) => leasedAt.has(id)) || performance.now() > until) break;
        await sleep(200);
      }
      const dispatchCpu = dispatchMeter();
      const latencies = [...tracker.dueById].flatMap(([id, due]) => {
        const at = leasedAt.get(id);
        return at === undefined ? [] : [at - (performance.timeOrigin + due)];
      });
      const neverLeased = tracker.accepted - latencies.length;
      const heartbeatCpuMs = idle.acks > 0 ? idleCpu.workerdMs / idle.acks : Number.NaN;
      const idleRate = idle.acks / idleCpu.wallS;

      return {
        target: `${MEASURED_PORT} (${edge.url}): ${sizes.agents} bare protocol clients (bench/lib/swarm.ts) in ${THREADS} worker threads of this process, one WebSocket each; agents, load generator and workerd share this machine's cores`,
        setup: {
          agents: sizes.agents,
          threads: THREADS,
          connect: `all at once, ${CONCURRENCY} handshakes in flight per thread`,
          per_agent: `${SLOTS} slot, prefetch 0, heartbeat every heartbeat_ms (from agent.welcome) at a random phase, a lease answered by a success after ${SERVICE_MS} ms (no outputs)`,
          idle: `${sizes.idleS} s with no jobs`,
          dispatch: `open loop of ${sizes.rate} single submits/s for ${sizes.dispatchS} s, then until every accepted job reached an agent (30 s at most)`,
          model: `${MODEL}, 1 shard, expected_runtime_s ${SERVICE_MS / 1000}`,
        },
        tables: [
          {
            title: "Connect: every agent at once",
            columns: [
              "agents",
              "connected",
              "failed",
              "all connected s",
              "connect→welcome p50 ms",
              "p99 ms",
              "max ms",
              "workerd CPU ms/agent",
            ],
            rows: [
              [
                sizes.agents,
                ok.length,
                failures.length,
                round(connectS, 2) ?? "",
                round(percentile(connectMs, 50), 1) ?? "",
                round(percentile(connectMs, 99), 1) ?? "",
                round(Math.max(...connectMs), 1) ?? "",
                round(connectCpu.workerdMs / Math.max(1, ok.length), 3) ?? "",
              ],
            ],
          },
          {
            title: "Idle: heartbeats only",
            columns: [
              "heartbeats sent",
              "acks",
              "heartbeats/s",
              "workerd CPU ms/heartbeat",
              "workerd cores",
              "busiest workerd thread, cores",
              "swarm CPU ms/heartbeat",
              "other procs, cores",
              "sockets closed",
            ],
            rows: [
              [
                idle.heartbeats,
                idle.acks,
                round(idleRate, 1) ?? "",
                round(heartbeatCpuMs, 3) ?? "",
                round(idleCpu.workerdMs / 1000 / idleCpu.wallS, 3) ?? "",
                `${idleBusiest.cores.toFixed(2)} (${idleBusiest.name})`,
                round(idle.cpuMs / Math.max(1, idle.acks), 3) ?? "",
                round(othersCores(idleCpu.machineMs, idleCpu.workerdMs + idle.cpuMs, idleCpu.wallS), 2) ?? "",
                idle.closes.length,
              ],
            ],
          },
          {
            title: "Dispatch beside the heartbeats: submit → lease received",
            columns: [
              "jobs/s offered",
              "submits",
              "accepted",
              "never leased",
              "p50 ms",
              "p90 ms",
              "p99 ms",
              "max ms",
              "heartbeats acked",
              "workerd CPU ms/job (less heartbeats)",
              "other procs, cores",
            ],
            rows: [
              [
                sizes.rate,
                load.sent,
                tracker.accepted,
                neverLeased,
                round(percentile(latencies, 50), 1) ?? "",
                round(percentile(latencies, 90), 1) ?? "",
                round(percentile(latencies, 99), 1) ?? "",
                round(Math.max(...latencies), 1) ?? "",
                dispatch.acks,
                round((dispatchCpu.workerdMs - dispatch.acks * heartbeatCpuMs) / Math.max(1, tracker.accepted), 3) ??
                  "",
                round(
                  othersCores(dispatchCpu.machineMs, dispatchCpu.workerdMs + dispatch.cpuMs, dispatchCpu.wallS),
                  2,
                ) ?? "",
              ],
            ],
          },
        ],
        metrics: {
          agents: sizes.agents,
          connected: ok.length,
          connect_all_s: round(connectS, 3),
          connect_p50_ms: round(percentile(connectMs, 50), 1),
          connect_p99_ms: round(percentile(connectMs, 99), 1),
          connect_workerd_cpu_ms_per_agent: round(connectCpu.workerdMs / Math.max(1, ok.length), 3),
          heartbeats_per_s: round(idleRate, 1),
          heartbeat_workerd_cpu_ms: round(heartbeatCpuMs, 3),
          idle_workerd_cores: round(idleCpu.workerdMs / 1000 / idleCpu.wallS, 3),
          dispatch_p50_ms: round(percentile(latencies, 50), 1),
          dispatch_p99_ms: round(percentile(latencies, 99), 1),
          never_leased: neverLeased,
          sockets_closed: idle.closes.length + dispatch.closes.length,
        },
        notes: [
          "workerd CPU ms/heartbeat: workerd's CPU (/proc) over the idle phase divided by the heartbeats acknowledged in it: the agent actor's WebSocket message, its renewal of the parked work request, and anything else a heartbeat sets off; nothing else runs then.",
          "connect→welcome: from opening the socket (this process's clock) to its agent.welcome, including the WebSocket handshake, the token check, the registry's binding of the agent id and the new agent actor's first message.",
          "Dispatch latency: the submit's due time (open loop) to the job.leases frame reaching an agent, both absolute times on this machine, joined by job id; workerd CPU per job subtracts the heartbeats' share measured in the idle phase.",
          ...(failures.length > 0
            ? [
                `connect failures (first 3): ${failures
                  .slice(0, 3)
                  .map((f) => f.error)
                  .join("; ")}`,
              ]
            : []),
          ...(idle.closes.length + dispatch.closes.length > 0
            ? [`sockets the edge closed (first 3): ${[...idle.closes, ...dispatch.closes].slice(0, 3).join("; ")}`]
            : []),
        ],
      };
    } finally {
      await Promise.all(threads.map((t) => t.close()));
      await edge.stop();
    }
  },
};
