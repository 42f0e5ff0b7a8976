/**
 * `agent-gap`: the idle time an agent leaves between two consecutive jobs, with prefetch 1
 * (the next lease is already staged when a job ends) and prefetch 0 (the agent asks for its
 * next job only when one ends). One real {@link Agent} (gpu-agent/agent.ts) with 1 slot, over a
 * real WebSocket to the edge in workerd on workerd's own port; its runner is an in-process
 * stand-in that holds the slot for a fixed time and returns nothing, so nothing is uploaded.
 * All jobs are queued (batch submits) before the agent connects; the gap of a pair is the
 * runner's end of job k to its start of job k+1, both stamped in the runner.
 */
import { createAccount, MEASURED_PORT, schedulerStub, startEdge, type Edge } from "../lib/edge.ts";
import { cpuMeter } from "../lib/cpu.ts";
import {
  benchAgentId,
  mintAgentToken,
  registerFastModel,
  RunLog,
  sleepFor,
  startFleet,
  submitBatches,
  waitFor,
  stateFilesystem,
} from "../lib/fleet.ts";
import { openProbe } from "../lib/probe.ts";
import type { Benchmark, Report } from "../lib/report.ts";
import { AGENT_PROTOCOL_VERSION, type FromAgent, type LeaseGrant } from "../../shared/wire.ts";
import { mean, percentile, round, sleep } from "../lib/stats.ts";

const SERVICE_MS = 20;

interface Phase {
  prefetch: number;
  jobs: number;
  gaps: number[];
  /** Runner end → the agent's `job-ended` (its result about to go, with its request for more). */
  agentPart: number[];
  /** `job-ended` → next runner start. */
  restPart: number[];
  runMs: number[];
  wallS: number;
  /** Wall time of the CPU meter: the agent's start to its last job (s). */
  meterS: number;
  completedByEdge: number;
  duplicates: number;
  fatal: string[];
  workerdCpuMs: number;
  clientCpuMs: number;
  othersCpuMs: number;
  longGaps: number;
}

async function runPhase(
  edge: Edge,
  userKey: string,
  prefetch: number,
  jobs: number,
  tag: string,
  log: (l: string) => void,
): Promise<Phase> {
  const model = `gap-${tag}`;
  const config = await registerFastModel(edge, model, SERVICE_MS / 1000);
  const token = await mintAgentToken(edge, [model]);
  const stub = await schedulerStub(edge, { modelNumber: config.number, shard: 0 });
  await submitBatches(edge, userKey, model, jobs);
  const before = (await stub.stats()).counters.completed;
  const runLog = new RunLog();
  const ended = new Map<string, number>();
  const cpu = cpuMeter(edge.workerdPid);
  const t0 = performance.now();
  const fleet = await startFleet({
    edge,
    token,
    models: [model],
    count: 1,
    slots: 1,
    prefetch,
    behave: sleepFor(SERVICE_MS),
    idPrefix: `g${tag}`,
    log: runLog,
  });
  try {
    if (fleet.connected !== 1) throw new Error(`the agent did not connect: ${fleet.fatal.join("; ")}`);
    for (const a of fleet.agents) a.on("job-ended", (id: string) => ended.set(id, performance.now()));
    // 20 ms each plus gaps: bounded at 4× the ideal time plus 30 s.
    const ok = await waitFor(() => fleet.completed() >= jobs, jobs * SERVICE_MS * 4 + 30_000);
    if (!ok) log(`prefetch ${prefetch}: only ${fleet.completed()} of ${jobs} jobs done before the deadline`);
    const meterS = (performance.now() - t0) / 1000;
    const used = cpu();
    // The edge's own count of completions (the last job.results may still be in flight).
    let completedByEdge = 0;
    for (let i = 0; i < 200; i++) {
      completedByEdge = (await stub.stats()).counters.completed - before;
      if (completedByEdge >= jobs) break;
      await sleep(10);
    }
    const marks = [...runLog.marks].sort((a, b) => a.start - b.start);
    const gaps: number[] = [];
    const agentPart: number[] = [];
    const restPart: number[] = [];
    for (let k = 1; k < marks.length; k++) {
      const prev = marks[k - 1]!;
      const next = marks[k]!;
      gaps.push(next.start - prev.end);
      const e = ended.get(prev.jobId);
      if (e !== undefined) {
        agentPart.push(e - prev.end);
        restPart.push(next.start - e);
      }
    }
    const span = marks.length > 1 ? (marks.at(-1)!.end - marks[0]!.start) / 1000 : Number.NaN;
    return {
      prefetch,
      jobs: marks.length,
      gaps,
      agentPart,
      restPart,
      runMs: marks.map((m) => m.end - m.start),
      wallS: span,
      meterS,
      completedByEdge,
      duplicates: runLog.duplicates,
      fatal: fleet.fatal,
      workerdCpuMs: used.workerdMs,
      clientCpuMs: used.selfMs,
      othersCpuMs: used.othersMs,
      longGaps: gaps.filter((g) => g > 100).length,
    };
  } finally {
    await fleet.stop();
  }
}

interface ProbeRow {
  name: string;
  sends: string;
  rtt: number[];
  workerdCpuMs: number;
  othersCores: number;
}

/**
 * The prefetch-0 gap taken apart with a bare protocol client: the round trip from sending a
 * message sequence to receiving the next `job.leases`, for (a) `work.request` alone (the
 * probe keeps its leases, so every request is granted at once), (b) `job.results` carrying the
 * request for more, (c) the same 20 ms after a `job.progress`, (d) `job.progress` (uploading)
 * then `job.results`: what the Agent sends when a job ends.
 */
async function probeRows(edge: Edge, userKey: string, n: number): Promise<ProbeRow[]> {
  const model = "gap-probe";
  await registerFastModel(edge, model, SERVICE_MS / 1000);
  const token = await mintAgentToken(edge, [model]);
  await submitBatches(edge, userKey, model, 4 * n + 10);
  const msg = { v: AGENT_PROTOCOL_VERSION, trace: "probe" } as const;
  const request = (): FromAgent => ({ ...msg, type: "work.request", credits: 1 });
  const rows: ProbeRow[] = [];
  const variants = [
    { name: "(a) lease only", sends: "work.request (holding 1 of 2)", early: false, progress: false, complete: false },
    {
      name: "(b) + result, the request for work folded in",
      sends: "job.results (credits 1)",
      early: false,
      progress: false,
      complete: true,
    },
    {
      name: "(c) + result, after a progress",
      sends: "job.results (credits 1; a job.progress went 20 ms before)",
      early: true,
      progress: false,
      complete: true,
    },
    {
      name: "(d) as the Agent with a silent runner",
      sends: "job.progress (uploading), job.results (credits 1)",
      early: false,
      progress: true,
      complete: true,
    },
  ];
  const done = (leases: LeaseGrant[], credits: number): FromAgent => ({
    ...msg,
    type: "job.results",
    results: leases.map((l) => ({ job_id: l.job_id, epoch: l.epoch, status: "succeeded" as const, outputs: [] })),
    credits,
  });
  for (const [i, v] of variants.entries()) {
    const probe = await openProbe({
      url: edge.url,
      token,
      agentId: benchAgentId("probe", i),
      slots: 1,
      prefetch: v.complete ? 0 : 1,
    });
    const rtt: number[] = [];
    const held: LeaseGrant[] = [];
    const cpu = cpuMeter(edge.workerdPid);
    const t0 = performance.now();
    try {
      probe.send(request());
      held.push(...(await probe.nextLeases()));
      for (let k = 0; k < n; k++) {
        const last = held.at(-1)!;
        const ref = { job_id: last.job_id, epoch: last.epoch };
        const progress = (phase: "sampling" | "uploading"): FromAgent => ({
          ...msg,
          type: "job.progress",
          ...ref,
          phase,
          step: phase === "sampling" ? 1 : 0,
          total: 1,
        });
        // (a) keeps one lease and asks for one more: the older ones complete off the clock.
        if (!v.complete) {
          const older = held.splice(0, held.length - 1);
          if (older.length > 0) probe.send(done(older, 0));
        }
        // The "run": a pause like a job's, so each round trip starts from an idle edge.
        if (v.early) probe.send(progress("sampling"));
        await sleep(SERVICE_MS);
        const start = performance.now();
        if (v.progress) probe.send(progress("uploading"));
        if (v.complete) {
          // The result carries the request for the next job.
          probe.send(done([last], 1));
          held.pop();
        } else probe.send(request());
        held.push(...(await probe.nextLeases()));
        rtt.push(performance.now() - start);
      }
      const used = cpu();
      const wallS = (performance.now() - t0) / 1000;
      rows.push({
        name: v.name,
        sends: v.sends,
        rtt,
        workerdCpuMs: used.workerdMs,
        othersCores: used.othersMs / 1000 / wallS,
      });
      if (held.length > 0) probe.send(done(held, 0));
      await sleep(100);
    } finally {
      await probe.close();
    }
  }
  return rows;
}

export const agentGap: Benchmark = {
  name: "agent-gap",
  description:
    "idle gap an agent leaves between consecutive jobs, prefetch 1 vs 0 (one real agent, fake runner, workerd)",
  async run({ quick, log }): Promise<Report> {
    const jobs = quick ? 100 : 300;
    const warmJobs = quick ? 30 : 60;
    log("bundling the Worker and starting workerd…");
    const edge = await startEdge();
    const phases: Phase[] = [];
    const probeN = quick ? 30 : 100;
    let probes: ProbeRow[] = [];
    try {
      const acct = await createAccount(edge);
      log(`warm-up: ${warmJobs} jobs, prefetch 1 (not reported)…`);
      await runPhase(edge, acct.key, 1, warmJobs, "warm", log);
      for (const [prefetch, tag] of [
        [1, "p1"],
        [0, "p0"],
      ] as const) {
        log(`prefetch ${prefetch}: ${jobs} jobs queued, then one agent with 1 slot…`);
        phases.push(await runPhase(edge, acct.key, prefetch, jobs, tag, log));
      }
      log(`probe: the prefetch-0 round trip taken apart, ${probeN} rounds per variant…`);
      probes = await probeRows(edge, acct.key, probeN);
    } finally {
      await edge.stop();
    }
    const [p1, p0] = phases as [Phase, Phase];
    const row = (p: Phase): (string | number)[] => [
      p.prefetch,
      p.jobs,
      percentile(p.gaps, 50),
      percentile(p.gaps, 90),
      percentile(p.gaps, 99),
      Math.max(...p.gaps),
      p.longGaps,
      mean(p.runMs),
      p.jobs / p.wallS,
      p.workerdCpuMs / p.jobs,
      p.clientCpuMs / p.jobs,
      p.othersCpuMs / 1000 / p.meterS,
    ];
    const split = (p: Phase): (string | number)[] => [
      p.prefetch,
      percentile(p.agentPart, 50),
      percentile(p.agentPart, 99),
      percentile(p.restPart, 50),
      percentile(p.restPart, 99),
    ];
    return {
      target: `${MEASURED_PORT} (${edge.url}): one real Agent (gpu-agent/agent.ts) over a real WebSocket; the runner is a synthetic in-process stand-in for the GPU; agent and workerd share this machine's cores`,
      setup: {
        edge_state: `${stateFilesystem()}: the durable state of every actor (set TMPDIR to move it)`,
        runner: `synthetic, in-process: holds the slot ${SERVICE_MS} ms (setTimeout), returns no frames and no outputs (no upload)`,
        agent: "1 agent, 1 slot, heartbeat every 5 s (the edge's), GPU health stubbed to none",
        jobs_per_phase: jobs,
        submit: "all jobs of a phase queued first with batch submits of 100, then the agent connects",
        model: `one model per phase, 1 shard, expected_runtime_s ${SERVICE_MS / 1000}`,
        warmup: `${warmJobs} jobs with prefetch 1 on a separate model, before the measured phases`,
        gap: "runner end of job k → runner start of job k+1 (both performance.now() in the runner)",
      },
      tables: [
        {
          title: `Gap between consecutive jobs, one agent with 1 slot (synthetic in-process runner, ${SERVICE_MS} ms per job, standing in for the GPU)`,
          columns: [
            "prefetch",
            "jobs",
            "gap p50 ms",
            "gap p90 ms",
            "gap p99 ms",
            "gap max ms",
            "gaps > 100 ms",
            "run ms (mean)",
            "jobs/s",
            "workerd CPU ms/job",
            "client CPU ms/job",
            "other procs, cores",
          ],
          rows: [row(p1), row(p0)],
        },
        {
          title:
            "Where the gap goes: runner end → the agent has sent job.results (`job-ended`), then → next runner start (synthetic in-process runner)",
          columns: [
            "prefetch",
            "end → job-ended p50 ms",
            "end → job-ended p99 ms",
            "job-ended → next start p50 ms",
            "job-ended → next start p99 ms",
          ],
          rows: [split(p1), split(p0)],
        },
        {
          title:
            "The prefetch-0 round trip taken apart: a bare protocol client sends, then waits for the next job.leases (no runner; a 20 ms pause before each round stands in for the run)",
          columns: [
            "variant",
            "sends",
            "rounds",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "workerd CPU ms/round",
            "other procs, cores",
          ],
          rows: probes.map((r) => [
            r.name,
            r.sends,
            r.rtt.length,
            percentile(r.rtt, 50),
            percentile(r.rtt, 90),
            percentile(r.rtt, 99),
            r.workerdCpuMs / Math.max(1, r.rtt.length),
            r.othersCores,
          ]),
        },
      ],
      metrics: {
        p1_gap_p50_ms: round(percentile(p1.gaps, 50)),
        p1_gap_p90_ms: round(percentile(p1.gaps, 90)),
        p1_gap_p99_ms: round(percentile(p1.gaps, 99)),
        p1_gap_max_ms: round(Math.max(...p1.gaps)),
        p1_jobs_per_s: round(p1.jobs / p1.wallS, 1),
        p0_gap_p50_ms: round(percentile(p0.gaps, 50)),
        p0_gap_p90_ms: round(percentile(p0.gaps, 90)),
        p0_gap_p99_ms: round(percentile(p0.gaps, 99)),
        p0_gap_max_ms: round(Math.max(...p0.gaps)),
        p0_jobs_per_s: round(p0.jobs / p0.wallS, 1),
        goal_p1_median_2ms_met: percentile(p1.gaps, 50) <= 2,
        p1_completed_by_edge: p1.completedByEdge,
        p0_completed_by_edge: p0.completedByEdge,
        duplicates: p1.duplicates + p0.duplicates,
        ...Object.fromEntries(
          probes.flatMap((r, i) => [
            [`probe_${"abcd"[i]}_p50_ms`, round(percentile(r.rtt, 50))],
            [`probe_${"abcd"[i]}_workerd_cpu_ms`, round(r.workerdCpuMs / Math.max(1, r.rtt.length))],
          ]),
        ),
        max_other_procs_cores: round(Math.max(...phases.map((p) => p.othersCpuMs / 1000 / p.meterS)), 2),
      },
      notes: [
        `jobs/s = jobs over the runner's first start to last end. The ideal with ${SERVICE_MS} ms jobs and no gap is ${(1000 / SERVICE_MS).toFixed(0)} jobs/s.`,
        `Completions counted by the scheduler actor (stats().counters): prefetch 1 ${p1.completedByEdge}/${jobs}, prefetch 0 ${p0.completedByEdge}/${jobs}; runs started twice: ${p1.duplicates + p0.duplicates}.`,
        "CPU columns: over the phase, from the agent's start to its last job; 'other procs, cores' is the CPU every other process used during it over its wall time.",
        ...[...p1.fatal, ...p0.fatal].map((f) => `agent fatal: ${f}`),
      ],
    };
  },
};
