/**
 * `streams`: how fast job events reach their subscribers, through the edge in workerd on
 * workerd's own port. (a) progress: runners emit a progress event every 50 ms while many jobs
 * run at once; one SSE subscriber per job; latency from the runner's emit to the subscriber
 * reading the event. (b) previews: one job whose runner emits ~100 KB preview frames as fast as
 * the pipeline takes them, read by one WebSocket subscriber (raw bytes in frames); frames/s and
 * bytes/s, and a burst to see what arrives when the runner outpaces the stream. Agents are the
 * real {@link Agent} of gpu-agent/agent.ts in this process; runners are in-process stand-ins.
 */
import type { Frame } from "../../gpu-agent/runner/like.ts";
import { AGENT_PROTOCOL_VERSION, decodeFrame, encodeFrame, FromAgent } from "../../shared/wire.ts";
import { cpuMeter } from "../lib/cpu.ts";
import { createAccount, MEASURED_PORT, startEdge, type Edge } from "../lib/edge.ts";
import {
  fixedEncoder,
  mintAgentToken,
  registerFastModel,
  startFleet,
  submitBatches,
  waitFor,
  within,
  type RunHooks,
  type RunJob,
  stateFilesystem,
} from "../lib/fleet.ts";
import type { Benchmark, Report } from "../lib/report.ts";
import { percentile, round, sleep } from "../lib/stats.ts";
import { connect } from "../lib/load.ts";
import { loopDelayMeter, threadMeter, type BusiestThread } from "../lib/threads.ts";
import { sseDispatcher, subscribeSse, subscribeWs, type Subscription } from "../lib/subscribe.ts";

const STEP_MS = 50;
const PREVIEW_BYTES = 100 * 1024;
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

interface ProgressRun {
  label: string;
  jobs: number;
  agents: number;
  slots: number;
  steps: number;
  emitted: number;
  received: number;
  latencies: number[];
  /** Latencies of step 1 only: the job actor checks an unseen epoch with the scheduler. */
  firstStep: number[];
  wallS: number;
  workerdCpuMs: number;
  clientCpuMs: number;
  othersCores: number;
  subscriberErrors: string[];
  succeeded: number;
  subscribed: boolean;
  /** CPU over the steady part of the run (steps 11 to steps − 10 of the first job). */
  steady:
    | {
        s: number;
        workerdCores: number;
        /** The busiest workerd thread (its JavaScript thread) over the window. */
        workerdThread: BusiestThread;
        clientCores: number;
        othersCores: number;
        /** This process's event-loop delay over the window (agents and subscribers live here). */
        loop: { p50: number; p99: number; max: number };
        /** GET /healthz every 20 ms over the window, on its own connection: workerd's responsiveness. */
        canary: number[];
      }
    | undefined;
}

/**
 * `jobs` jobs queued, one SSE subscriber each (registered before any job starts), then
 * `agents` agents with `slots` slots take them all at once; each run emits `steps` progress
 * events, one every 50 ms.
 */
async function progressRun(
  edge: Edge,
  userKey: string,
  label: string,
  jobs: number,
  agents: number,
  slots: number,
  steps: number,
  subscribed: boolean,
  lockstep: boolean,
  tag: string,
  log: (l: string) => void,
): Promise<ProgressRun> {
  const model = `streams-progress-${tag}`;
  await registerFastModel(edge, model, (steps * STEP_MS) / 1000);
  const token = await mintAgentToken(edge, [model]);
  const ids = await submitBatches(edge, userKey, model, jobs);
  const emitAt = new Map<string, number>();
  const recvAt = new Map<string, number>();
  let succeeded = 0;
  const dispatcher = sseDispatcher();
  const subs: Subscription[] = [];
  for (const jobId of subscribed ? ids : []) {
    subs.push(
      subscribeSse({
        url: edge.url,
        key: userKey,
        jobId,
        dispatcher,
        onEvent: (e, at) => {
          if (e.event === "progress" && e.data.phase === "sampling") recvAt.set(`${jobId}:${String(e.data.step)}`, at);
          else if (e.event === "succeeded") succeeded++;
        },
      }),
    );
  }
  try {
    await within(Promise.all(subs.map((s) => s.ready)), 30_000, []);
    log(`${label}: ${subs.length} subscribers registered; starting ${agents} agents × ${slots} slots…`);
    let steadyMeter: ReturnType<typeof cpuMeter> | undefined;
    let steadyThreads: ReturnType<typeof threadMeter> | undefined;
    let steadyLoop: ReturnType<typeof loopDelayMeter> | undefined;
    let steadyT0 = 0;
    let canary: ReturnType<typeof startCanary> | undefined;
    let steady: ProgressRun["steady"];
    const behave = async (job: RunJob, on: RunHooks): Promise<void> => {
      // Each run starts its 50 ms cadence at a random phase, as independent GPUs would: the
      // jobs all start together here, and in lockstep they would emit in bursts of 100.
      const start = performance.now() + (lockstep ? 0 : Math.random() * STEP_MS) - STEP_MS;
      for (let step = 1; step <= steps; step++) {
        const due = start + step * STEP_MS;
        await sleep(Math.max(0, due - performance.now()));
        const now = performance.now();
        if (step === 11 && !steadyMeter) {
          steadyMeter = cpuMeter(edge.workerdPid);
          steadyThreads = threadMeter(edge.workerdPid);
          steadyLoop = loopDelayMeter();
          steadyT0 = now;
          canary = startCanary(edge.url);
        } else if (step === steps - 10 && steadyMeter && steadyThreads && steadyLoop && !steady) {
          const used = steadyMeter();
          const sS = (now - steadyT0) / 1000;
          steady = {
            s: sS,
            workerdCores: used.workerdMs / 1000 / sS,
            workerdThread: steadyThreads(),
            loop: steadyLoop(),
            canary: await canary!.stop(),
            clientCores: used.selfMs / 1000 / sS,
            othersCores: used.othersMs / 1000 / sS,
          };
        }
        emitAt.set(`${job.job_id}:${step}`, now);
        on.progress({ phase: "sampling", step, total: steps });
      }
    };
    const cpu = cpuMeter(edge.workerdPid);
    const t0 = performance.now();
    const fleet = await startFleet({
      edge,
      token,
      models: [model],
      count: agents,
      slots,
      prefetch: 0,
      behave,
      idPrefix: `s${jobs}`,
    });
    let results: { events: number; error?: string }[] = [];
    try {
      const bound = steps * STEP_MS + 30_000;
      results = await within(Promise.all(subs.map((s) => s.done)), bound, []);
      await waitFor(() => fleet.completed() >= jobs, subscribed ? 5_000 : bound);
    } finally {
      await fleet.stop();
    }
    const wallS = (performance.now() - t0) / 1000;
    const used = cpu();
    const latencies: number[] = [];
    const firstStep: number[] = [];
    for (const [k, sent] of emitAt) {
      const got = recvAt.get(k);
      if (got === undefined) continue;
      latencies.push(got - sent);
      if (k.endsWith(":1")) firstStep.push(got - sent);
    }
    return {
      label,
      jobs,
      agents,
      slots,
      steps,
      emitted: emitAt.size,
      received: latencies.length,
      latencies,
      firstStep,
      wallS,
      workerdCpuMs: used.workerdMs,
      clientCpuMs: used.selfMs,
      othersCores: used.othersMs / 1000 / wallS,
      subscriberErrors: results.flatMap((r) => (r.error ? [r.error] : [])).slice(0, 3),
      succeeded,
      subscribed,
      steady,
    };
  } finally {
    for (const s of subs) s.close();
    await dispatcher.close();
  }
}

/** Sends GET /healthz every 20 ms on its own connection until stopped; answers the latencies. */
function startCanary(url: string): { stop: () => Promise<number[]> } {
  const pool = connect(url, 1);
  const out: number[] = [];
  const state = { running: true };
  const loop = (async (): Promise<void> => {
    while (state.running) {
      const t = performance.now();
      try {
        const res = await pool.request({ method: "GET", path: "/healthz" });
        await res.body.text();
        out.push(performance.now() - t);
      } catch {
        // counted by its absence
      }
      await sleep(Math.max(0, 20 - (performance.now() - t)));
    }
  })();
  return {
    stop: async () => {
      state.running = false;
      await loop;
      await pool.close();
      return out;
    },
  };
}

interface PreviewRun {
  label: string;
  emitted: number;
  received: number;
  bytes: number;
  durationS: number;
  latencies: number[];
  /** Frames emitted whose preview event never arrived. */
  missing: number;
  workerdCpuMs: number;
  clientCpuMs: number;
  othersCores: number;
  otherEvents: number;
  error?: string;
}

/** A ~100 KB "PNG": the signature, the frame index in bytes 8–11, the rest constant. */
function previewImage(frame: Frame): Uint8Array {
  const b = new Uint8Array(PREVIEW_BYTES);
  b.set(PNG_SIGNATURE, 0);
  new DataView(b.buffer).setUint32(8, frame.index);
  for (let i = 12; i < b.length; i += 4096) b[i] = i & 0xff;
  return b;
}

/**
 * One job, one WebSocket subscriber, one agent with 1 slot. `window`: the runner keeps at most
 * this many frames emitted and not yet received (flow control by the subscriber's receipts)
 * for `durationS`; `burst`: it emits that many frames back to back, then waits for them.
 */
async function previewRun(
  edge: Edge,
  userKey: string,
  label: string,
  mode: { window: number; durationS: number } | { burst: number },
  log: (l: string) => void,
): Promise<PreviewRun> {
  const model = `streams-preview-${"burst" in mode ? "burst" : "window"}`;
  await registerFastModel(edge, model, 5);
  const token = await mintAgentToken(edge, [model]);
  const [jobId] = await submitBatches(edge, userKey, model, 1);
  const emitAt = new Map<number, number>();
  const recvAt = new Map<number, number>();
  let bytes = 0;
  let otherEvents = 0;
  let wake: (() => void) | undefined;
  const sub = subscribeWs({
    url: edge.url,
    key: userKey,
    jobId: jobId!,
    onEvent: (e, at) => {
      if (e.event !== "preview") {
        otherEvents++;
        return;
      }
      const data = e.data.bytes;
      if (!(data instanceof Uint8Array) || data.length < 12) return;
      const index = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(8);
      if (!recvAt.has(index)) recvAt.set(index, at);
      bytes += data.length;
      wake?.();
    },
  });
  let windowStart = 0;
  let windowEnd = 0;
  try {
    await within(sub.ready, 10_000, undefined);
    log(`${label}: subscriber registered; starting the agent…`);
    const emit = (on: RunHooks, index: number): void => {
      emitAt.set(index, performance.now());
      on.preview({ index, width: 1, height: 1, data: new Uint8Array(4) });
    };
    const behave = async (_job: RunJob, on: RunHooks): Promise<void> => {
      windowStart = performance.now();
      let index = 0;
      if ("burst" in mode) {
        for (; index < mode.burst; index++) emit(on, index);
        await waitFor(() => recvAt.size >= mode.burst, 15_000);
        windowEnd = performance.now();
        return;
      }
      const end = windowStart + mode.durationS * 1000;
      while (performance.now() < end) {
        // Frames older than 2 s without a receipt count as lost, so a drop cannot stall the loop.
        const outstanding = [...emitAt].filter(([i, t]) => !recvAt.has(i) && performance.now() - t < 2000).length;
        if (outstanding < mode.window) {
          emit(on, index++);
          continue;
        }
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((res) => {
          wake = res;
          timer = setTimeout(res, 100);
        });
        clearTimeout(timer);
        wake = undefined;
      }
      windowEnd = performance.now();
      // Let the last frames arrive before the job ends (the stream closes at its end).
      await waitFor(() => recvAt.size >= emitAt.size, 2_000);
    };
    const cpu = cpuMeter(edge.workerdPid);
    const fleet = await startFleet({
      edge,
      token,
      models: [model],
      count: 1,
      slots: 1,
      prefetch: 0,
      behave,
      encoder: fixedEncoder(previewImage),
      idPrefix: "pv",
    });
    try {
      await waitFor(() => fleet.completed() >= 1, ("burst" in mode ? 40 : mode.durationS + 10) * 1000);
    } finally {
      await fleet.stop();
    }
    const used = cpu();
    const result = await within(sub.done, 5_000, { events: 0, error: "stream open" });
    const wallS = (windowEnd - windowStart) / 1000;
    const latencies: number[] = [];
    for (const [i, t] of emitAt) {
      const got = recvAt.get(i);
      if (got !== undefined) latencies.push(got - t);
    }
    return {
      label,
      emitted: emitAt.size,
      received: recvAt.size,
      bytes,
      durationS: wallS,
      latencies,
      missing: emitAt.size - latencies.length,
      workerdCpuMs: used.workerdMs,
      clientCpuMs: used.selfMs,
      othersCores: used.othersMs / 1000 / wallS,
      otherEvents,
      ...(result.error && result.error !== "stream open" ? { error: result.error } : {}),
    };
  } finally {
    sub.close();
  }
}

/**
 * What checking one progress frame costs on its own (msgpack decode, plain-data walk, zod): the
 * agent actor does this for every job.progress. Measured in this Node process (same V8 as
 * workerd, not workerd itself), as an upper bound on the protocol parse's share of the ingest.
 */
function decodeCostUs(): number {
  const frame = encodeFrame({
    v: AGENT_PROTOCOL_VERSION,
    type: "job.progress",
    trace: "0123456789abcdef",
    job_id: `job_${"0".repeat(30)}`,
    epoch: 1,
    phase: "sampling",
    step: 10,
    total: 80,
  });
  const n = 20_000;
  for (let i = 0; i < 2000; i++) decodeFrame(frame, FromAgent);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) decodeFrame(frame, FromAgent);
  return ((performance.now() - t0) * 1000) / n;
}

export const streams: Benchmark = {
  name: "streams",
  description: "job event streams: progress latency with 100 jobs running, preview frames/s of one job (workerd)",
  async run({ quick, log }): Promise<Report> {
    const steps = quick ? 40 : 80;
    const previewS = quick ? 3 : 5;
    const burst = quick ? 60 : 150;
    log("bundling the Worker and starting workerd…");
    const edge = await startEdge();
    const progress: ProgressRun[] = [];
    const previews: PreviewRun[] = [];
    try {
      const acct = await createAccount(edge);
      const plan: {
        label: string;
        jobs: number;
        agents: number;
        slots: number;
        subscribed: boolean;
        lockstep?: boolean;
      }[] = [
        { label: "(a0) 1 job running", jobs: 1, agents: 1, slots: 1, subscribed: true },
        ...(quick
          ? []
          : [
              { label: "(a1) 25 jobs running", jobs: 25, agents: 5, slots: 5, subscribed: true },
              { label: "(a2) 50 jobs running", jobs: 50, agents: 10, slots: 5, subscribed: true },
            ]),
        { label: "(a) 100 jobs running", jobs: 100, agents: 10, slots: 10, subscribed: true },
        ...(quick
          ? []
          : [
              { label: "(a*) 100 jobs running, no subscribers", jobs: 100, agents: 10, slots: 10, subscribed: false },
              {
                label: "(a=) 100 jobs running in lockstep",
                jobs: 100,
                agents: 10,
                slots: 10,
                subscribed: true,
                lockstep: true,
              },
            ]),
      ];
      for (const [k, r] of plan.entries()) {
        log(`${r.label}: ${steps} progress events per job…`);
        progress.push(
          await progressRun(
            edge,
            acct.key,
            r.label,
            r.jobs,
            r.agents,
            r.slots,
            steps,
            r.subscribed,
            r.lockstep ?? false,
            String(k),
            log,
          ),
        );
      }
      log(`(b) preview frames, window of 4 in flight, ${previewS} s…`);
      previews.push(
        await previewRun(edge, acct.key, "(b) window: ≤ 4 frames in flight", { window: 4, durationS: previewS }, log),
      );
      log(`(b') preview burst of ${burst} frames…`);
      previews.push(await previewRun(edge, acct.key, `(b') burst: ${burst} frames back to back`, { burst }, log));
    } finally {
      await edge.stop();
    }
    const a = progress.find((p) => p.label.startsWith("(a) "))!;
    const parseUs = decodeCostUs();
    const b = previews[0]!;
    const fps = (p: PreviewRun): number => p.received / p.durationS;
    return {
      target: `${MEASURED_PORT} (${edge.url}): real Agent instances (gpu-agent/agent.ts) over real WebSockets; subscribers on the same port (SSE with undici fetch; WebSocket with ws); runners are synthetic in-process stand-ins for the GPU; everything shares this machine's cores`,
      setup: {
        edge_state: `${stateFilesystem()}: the durable state of every actor (set TMPDIR to move it)`,
        progress: `each run emits ${steps} progress events (phase sampling), one every ${STEP_MS} ms from a random phase in its first ${STEP_MS} ms (the (a=) row: all in the same phase); stamped in the runner just before the agent sends job.progress`,
        progress_agents:
          "(a0) 1 agent × 1 slot; (a) 10 agents × 10 slots, prefetch 0, all 100 jobs queued and subscribed before the agents connect",
        progress_subscribers:
          "one SSE subscriber per job (GET /v1/jobs/{id}/events, undici fetch); receive time = when the chunk was read, before parsing",
        preview_image: `${PREVIEW_BYTES} bytes, a PNG signature and the frame index (the encoder's preview(), no pixels encoded)`,
        preview_subscriber: "one WebSocket subscriber (Upgrade: websocket, msgpack frames with raw bytes)",
        preview_window: `(b) at most 4 frames emitted and not yet received, for ${previewS} s`,
        preview_burst: `(b') ${burst} frames emitted in one go`,
      },
      tables: [
        {
          title: `Progress event latency, runner emit → SSE subscriber read (synthetic in-process runners standing in for the GPU, one event per ${STEP_MS} ms per job)`,
          columns: [
            "run",
            "jobs",
            "events/s offered",
            "events emitted",
            "received",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "step-1 p50 ms",
            "workerd CPU ms/event",
            "workerd cores (steady)",
            "busiest workerd thread, cores",
            "client cores (steady)",
            "client loop delay p99 / max ms",
            "/healthz p50 / max ms",
            "other procs, cores (steady)",
          ],
          rows: progress.map((p) => {
            const lat = (v: number): number | string => (p.subscribed ? v : "—");
            return [
              p.label,
              p.jobs,
              p.jobs * (1000 / STEP_MS),
              p.emitted,
              p.subscribed ? p.received : "—",
              lat(percentile(p.latencies, 50)),
              lat(percentile(p.latencies, 90)),
              lat(percentile(p.latencies, 99)),
              lat(Math.max(...p.latencies)),
              lat(percentile(p.firstStep, 50)),
              p.workerdCpuMs / Math.max(1, p.emitted),
              p.steady?.workerdCores ?? "—",
              p.steady ? `${p.steady.workerdThread.cores.toFixed(2)} (${p.steady.workerdThread.name})` : "—",
              p.steady?.clientCores ?? "—",
              p.steady ? `${p.steady.loop.p99.toFixed(1)} / ${p.steady.loop.max.toFixed(1)}` : "—",
              p.steady
                ? `${percentile(p.steady.canary, 50).toFixed(1)} / ${Math.max(...p.steady.canary).toFixed(1)}`
                : "—",
              p.steady?.othersCores ?? "—",
            ];
          }),
        },
        {
          title: `Preview frames of one job to one WebSocket subscriber, ${PREVIEW_BYTES / 1024} KB each (synthetic in-process runner standing in for the GPU)`,
          columns: [
            "run",
            "frames emitted",
            "received",
            "seconds",
            "frames/s",
            "MB/s",
            "emit → receive p50 ms",
            "p99 ms",
            "workerd CPU ms/frame",
            "client CPU ms/frame",
            "other procs, cores",
          ],
          rows: previews.map((p) => [
            p.label,
            p.emitted,
            p.received,
            p.durationS,
            fps(p),
            p.bytes / 1e6 / p.durationS,
            percentile(p.latencies, 50),
            percentile(p.latencies, 99),
            p.workerdCpuMs / Math.max(1, p.received),
            p.clientCpuMs / Math.max(1, p.received),
            p.othersCores,
          ]),
        },
      ],
      metrics: {
        a0_p50_ms: round(percentile(progress[0]!.latencies, 50)),
        a0_p99_ms: round(percentile(progress[0]!.latencies, 99)),
        progress_p50_ms: round(percentile(a.latencies, 50)),
        progress_p99_ms: round(percentile(a.latencies, 99)),
        progress_max_ms: round(Math.max(...a.latencies)),
        progress_emitted: a.emitted,
        progress_received: a.received,
        progress_goal_p99_10ms_met: percentile(a.latencies, 99) <= 10,
        progress_workerd_cores_steady: round(a.steady?.workerdCores ?? Number.NaN, 2),
        progress_workerd_busiest_thread_cores: round(a.steady?.workerdThread.cores ?? Number.NaN, 2),
        progress_client_loop_delay_p99_ms: round(a.steady?.loop.p99 ?? Number.NaN, 2),
        progress_client_loop_delay_max_ms: round(a.steady?.loop.max ?? Number.NaN, 2),
        progress_healthz_p50_ms: round(percentile(a.steady?.canary ?? [], 50)),
        progress_healthz_max_ms: round(Math.max(...(a.steady?.canary ?? [Number.NaN]))),
        ...Object.fromEntries(
          progress.flatMap((p) => {
            const k = `jobs${p.jobs}${p.subscribed ? "" : "_nosub"}${p.label.includes("lockstep") ? "_lockstep" : ""}`;
            return [
              [`${k}_p50_ms`, p.subscribed ? round(percentile(p.latencies, 50)) : null],
              [`${k}_p99_ms`, p.subscribed ? round(percentile(p.latencies, 99)) : null],
              [`${k}_workerd_cpu_ms_per_event`, round(p.workerdCpuMs / Math.max(1, p.emitted))],
            ];
          }),
        ),
        progress_frame_decode_us_node: round(parseUs, 2),
        preview_frames_per_s: round(fps(b), 1),
        preview_mb_per_s: round(b.bytes / 1e6 / b.durationS, 2),
        preview_goal_30fps_met: fps(b) >= 30,
        burst_emitted: previews[1]!.emitted,
        burst_received: previews[1]!.received,
        burst_frames_per_s: round(fps(previews[1]!), 1),
        max_other_procs_cores: round(
          Math.max(...progress.map((p) => p.othersCores), ...previews.map((p) => p.othersCores)),
          2,
        ),
      },
      notes: [
        "busiest workerd thread: the workerd thread that used the most CPU over the steady window (its JavaScript thread: every actor and the Worker run there locally); near 1.0 means that thread was saturated. client loop delay: this process's event-loop delay (perf_hooks) over the same window; the agents and the subscribers all live on that loop. /healthz: a canary request every 20 ms on its own connection over the same window; it runs on workerd's JavaScript thread too, so its worst answer shows how long that thread stalled.",
        "workerd CPU ms/event: workerd's CPU over the whole run (agents connecting, jobs starting and ending included) over the progress events emitted. The (steady) columns: CPU over the middle of the run (the first job's steps 11 to N−10) over its wall time, cores of 2. (a*) runs (a) with no subscriber, so its CPU is the ingest path alone (agent socket → agent actor → job actor).",
        `Parsing one job.progress frame (decodeFrame: msgpack, plain-data walk, zod) takes ${parseUs.toFixed(1)} µs in this Node process: a small part of workerd's CPU per event.`,
        "Latency pairs are joined by (job, step) for progress and by the frame index written into the image for previews; both clocks are this process's performance.now().",
        `Progress: (a) ${a.succeeded}/${a.jobs} subscribers saw succeeded; ${a.emitted - a.received} emitted events never arrived. Step 1 of each job is slower: the job actor checks the new epoch with the scheduler (an RPC) before it publishes.`,
        "SSE carries previews above 48 KiB only as a signed URL, so the preview figures use the WebSocket variant, whose frames carry the bytes.",
        ...previews.map(
          (p) =>
            `${p.label}: ${p.received}/${p.emitted} frames arrived (${p.missing} missing); other events on the stream: ${p.otherEvents}${p.error ? `; stream error: ${p.error}` : ""}.`,
        ),
        ...progress.flatMap((p) => p.subscriberErrors.map((e) => `${p.label} subscriber error: ${e}`)),
      ],
    };
  },
};
