/**
 * `cost`: where a job's CPU goes. The dispatch benchmark's `batch` scenario (a saturating
 * closed loop of 10-job batch submits, in-process agents with the synthetic stand-in runner)
 * runs in four phases on one edge, each measured on its own so no instrument skews another's
 * figures:
 *
 * 1. `plain`: CPU per job from /proc only: workerd (by thread), the agents (this process less
 *    the load generator's thread, bench/lib/load-thread.ts) and the load generator;
 * 2. `native`: the same under `perf record` (bench/lib/native.ts), when the machine has perf:
 *    workerd's CPU by native component (SQLite, V8, KJ, kernel…) and runtime path (creating
 *    actor instances, RPC, WebSocket events), including what V8 cannot see;
 * 3. `profiled`: the same under V8's CPU profiler in every isolate that works for a job (the
 *    Worker with its actors, and Miniflare's entry worker and rate-limit simulator), attributed
 *    by bench/lib/profile.ts to hops, kinds of work and source lines;
 * 4. `counted`: the same with counts per job: HTTP requests, the scheduler's durable commits,
 *    WebSocket frames each way by type (counted in this process), and calls of each actor entry
 *    method, actor constructions and SQL statements (conditional breakpoints that count and
 *    never pause, through the inspector).
 *
 * Every phase waits until every accepted job ran, so each job's whole life (submit, lease,
 * delivery, run, completion) falls inside the phase it was submitted in.
 */
import { readdirSync, readFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { SourceMap } from "node:module";
import { dirname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { WebSocket } from "ws";
import { ROOT } from "../../cli/dev.ts";
import { decode } from "../../shared/codec.ts";
import { inspectorTargets, openSession, type CdpSession, type InspectorTarget } from "../lib/cdp.ts";
import { groupCpuMeter } from "../lib/cpu.ts";
import { createAccount, MEASURED_PORT, schedulerStub, startEdge, type Edge, type SchedulerRpc } from "../lib/edge.ts";
import { modelFleet, stateFilesystem, type Fleet } from "../lib/fleet.ts";
import { startLoadThread, type LoadThread } from "../lib/load-thread.ts";
import { statusCell, type LoadResult } from "../lib/load.ts";
import {
  attributeNative,
  NATIVE_PATHS,
  perfAvailable,
  recordPerf,
  type NativeAttribution,
  type PerfRecording,
} from "../lib/native.ts";
import { attribute, indexBundle, type Attribution, type BundleIndex, type CpuProfile } from "../lib/profile.ts";
import type { Benchmark, Report, Table } from "../lib/report.ts";
import { SubmitTracker, waitForRuns } from "../lib/runs.ts";
import { round } from "../lib/stats.ts";
import { threadNameMeter } from "../lib/threads.ts";

const MODEL = "cost";
const AGENTS = 50;
const SLOTS = 1;
const PREFETCH = 1;
/** How long the stand-in runner holds a slot per job. */
const SERVICE_MS = 5;
const BATCH = 10;
const CLIENTS = 8;
/**
 * Closed-loop clients pause while this many accepted jobs wait unstarted: enough to keep every
 * agent busy, few enough that a phase drains in a second or two.
 */
const BACKLOG = 150;
const CONNECTIONS = 64;
/** V8's sampling period (µs). */
const SAMPLING_US = 500;
/** perf's sampling rate (per second of CPU). */
const PERF_HZ = 999;
/** Source modules whose outermost frame is the Worker's fetch handler. */
const WORKER_MODULES = /^(edge\/|node_modules\/hono\/)/;
/** Source modules of the actor classes whose entry methods are counted. */
const ACTOR_MODULES = /^mesh\/[\w-]+-actor\.ts$/;
/** Functions counted as one SQL statement each: the Durable Object adapter's `all` and `run`. */
const SQL_MODULE = "mesh/sql/durable.ts";
const SQL_FUNCTION = /^(all|run)\s*(<[^>]*>)?\s*\(/;
/** The isolates a job passes through, by inspector target id; ours first. */
const ISOLATES: readonly { id: string; hop?: string }[] = [
  { id: "core:user:floodgate" },
  { id: "core:entry", hop: "Miniflare's entry worker (local only)" },
  { id: "ratelimit:ns", hop: "Miniflare's rate-limit simulator (local only)" },
  { id: "ratelimit:ns:entry", hop: "Miniflare's rate-limit simulator entry (local only)" },
];
/** The call the benchmark itself makes (reading the scheduler's counters), left out of counts. */
const BENCH_OWN_CALL = "SchedulerActor.stats";
/** The key conditional breakpoints count under, in the isolate's global scope. */
const CALLS_GLOBAL = "__floodgateBenchCalls";

type PhaseName = "plain" | "native" | "profiled" | "counted";

interface Phase {
  name: PhaseName;
  instrument: string;
  load: LoadResult;
  jobs: number;
  drained: boolean;
  wallS: number;
  workerdMs: number;
  workerdThreads: Map<string, number>;
  /** This process's CPU by thread name (the agents, the load generator's thread among them). */
  ownThreads: Map<string, number>;
  agentsMs: number;
  loadGenMs: number;
  othersMs: number;
  /** perf's own CPU (native phase). */
  perfMs: number;
  commits: { commits: number; enqueued: number; leased: number; completed: number };
  /** Actor SQLite databases created, by actor class. */
  databases: Map<string, number>;
}

/** Actor SQLite databases on disk by class (workerd keeps `do/<worker>-<class>/<id>.sqlite`). */
function actorDatabases(persistDir: string): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const dir of readdirSync(`${persistDir}/do`)) {
      const n = readdirSync(`${persistDir}/do/${dir}`).filter((f) => f.endsWith(".sqlite")).length;
      out.set(dir.replace(/^floodgate-/, ""), n);
    }
  } catch {
    // nothing persisted yet
  }
  return out;
}

/** Everything a phase needs. */
interface Rig {
  edge: Edge;
  fleet: Fleet;
  key: string;
  stub: SchedulerRpc;
  /** The load generator, in its own thread. */
  load: LoadThread;
}

/** Runs the load for `durationS`, waits for every accepted job to run, and meters it. */
async function runPhase(
  rig: Rig,
  name: PhaseName,
  instrument: string,
  durationS: number,
  drainMs: number,
  extraPids: (number | undefined)[] = [],
): Promise<Phase> {
  const c0 = (await rig.stub.stats()).counters;
  const db0 = actorDatabases(rig.edge.persistDir);
  const from = rig.fleet.log.marks.length;
  const meter = groupCpuMeter({ workerd: [rig.edge.workerdPid], extra: extraPids });
  const threads = threadNameMeter(rig.edge.workerdPid);
  const ownThreads = threadNameMeter(process.pid);
  const t0 = performance.now();
  const { load, jobIds, threadCpuMs } = await rig.load.run({
    url: rig.edge.url,
    connections: CONNECTIONS,
    clients: CLIENTS,
    durationS,
    model: MODEL,
    key: rig.key,
    batch: BATCH,
    backlog: BACKLOG,
  });
  const tracker = new SubmitTracker();
  for (const id of jobIds) tracker.dueById.set(id, 0);
  const drained = await waitForRuns(tracker, rig.fleet.log, from, drainMs);
  const used = meter();
  const workerdThreads = threads();
  const ownThreadsUsed = ownThreads();
  const wallS = (performance.now() - t0) / 1000;
  const c1 = (await rig.stub.stats()).counters;
  const databases = new Map(
    [...actorDatabases(rig.edge.persistDir)].map(([k, n]) => [k, n - (db0.get(k) ?? 0)] as [string, number]),
  );
  return {
    databases,
    name,
    instrument,
    load,
    jobs: jobIds.length,
    drained,
    wallS,
    workerdMs: used.groups.workerd,
    workerdThreads,
    ownThreads: ownThreadsUsed,
    agentsMs: Math.max(0, used.selfMs - threadCpuMs),
    loadGenMs: threadCpuMs,
    othersMs: used.othersMs,
    perfMs: used.groups.extra,
    commits: {
      commits: c1.commits - c0.commits,
      enqueued: c1.enqueued - c0.enqueued,
      leased: c1.leased - c0.leased,
      completed: c1.completed - c0.completed,
    },
  };
}

/** The profile's URL for the bundle: workerd names scripts relative to Miniflare's root. */
function bundleUrlOf(profile: CpuProfile, bundle: string): string | undefined {
  const urls = new Set(profile.nodes.map((n) => n.callFrame.url));
  const fileUrl = pathToFileURL(bundle).href;
  return [...urls].find((u) => u !== "" && (u === bundle || u === fileUrl || resolve(process.cwd(), u) === bundle));
}

/** Profiles every isolate of {@link ISOLATES} present over one phase. */
async function profiledPhase(
  rig: Rig,
  targets: InspectorTarget[],
  index: BundleIndex,
  durationS: number,
  drainMs: number,
  log: (l: string) => void,
): Promise<{ phase: Phase; attributions: { id: string; hop?: string; a: Attribution }[]; agents: Attribution }> {
  const sessions: { session: CdpSession; id: string; hop?: string }[] = [];
  // The agents: this process's main thread (the load generator's thread is another isolate).
  const own = new Session();
  own.connect();
  try {
    for (const iso of ISOLATES) {
      const t = targets.find((x) => x.id === iso.id);
      if (!t) continue;
      const session = await openSession(t);
      sessions.push({ session, id: iso.id, hop: iso.hop });
      await session.send("Profiler.enable");
      await session.send("Profiler.setSamplingInterval", { interval: SAMPLING_US });
    }
    await own.post("Profiler.enable");
    await own.post("Profiler.setSamplingInterval", { interval: SAMPLING_US });
    for (const s of sessions) await s.session.send("Profiler.start");
    await own.post("Profiler.start");
    const phase = await runPhase(rig, "profiled", `V8 CPU profiler, every ${SAMPLING_US} µs`, durationS, drainMs);
    const { profile: agentsProfile } = await own.post("Profiler.stop");
    const agents = attribute(agentsProfile as CpuProfile, {
      root: ROOT,
      isolateHop: "agents",
      intervalUs: SAMPLING_US,
    });
    const attributions: { id: string; hop?: string; a: Attribution }[] = [];
    for (const s of sessions) {
      const { profile } = await s.session.send<{ profile: CpuProfile }>("Profiler.stop", {}, 120_000);
      await s.session.send("Profiler.disable").catch(() => undefined);
      const url = bundleUrlOf(profile, rig.edge.bundle);
      const a = attribute(profile, {
        bundle: url === undefined ? undefined : { url, index },
        workerModules: WORKER_MODULES,
        isolateHop: s.hop,
        intervalUs: SAMPLING_US,
      });
      log(`  ${s.id}: ${profile.samples?.length ?? 0} samples, ${a.totalMs.toFixed(0)} ms in the isolate`);
      attributions.push({ id: s.id, hop: s.hop, a });
    }
    return { phase, attributions, agents };
  } finally {
    for (const s of sessions) await s.session.close();
    own.disconnect();
  }
}

/** Adds one to `m`'s count of `k`. */
function bump(m: Map<string, number>, k: string): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

/** Frames each way by message type, counted on the agents' sockets in this process. */
interface FrameCounts {
  sent: Map<string, number>;
  received: Map<string, number>;
}

function frameType(data: unknown): string {
  try {
    const bytes =
      data instanceof Uint8Array
        ? data
        : Array.isArray(data)
          ? new Uint8Array(Buffer.concat(data as Buffer[]))
          : new Uint8Array(data as ArrayBuffer);
    const msg = decode(bytes.subarray(1)) as { type?: unknown } | null;
    return typeof msg?.type === "string" ? msg.type : "(no type)";
  } catch {
    return "(undecodable)";
  }
}

/**
 * Runs `fn` while counting every frame the agents send and receive: those of the `ws` sockets
 * of this process whose URL starts with `base` (the inspector's sockets are not the agents').
 */
async function countingFrames<T>(base: string, fn: () => Promise<T>): Promise<{ value: T; frames: FrameCounts }> {
  const frames: FrameCounts = { sent: new Map(), received: new Map() };
  const proto = WebSocket.prototype as unknown as {
    send: (data: unknown, ...rest: unknown[]) => void;
    emit: (event: string | symbol, ...args: unknown[]) => boolean;
  };
  const ownSend = Object.getOwnPropertyDescriptor(proto, "send");
  const ownEmit = Object.getOwnPropertyDescriptor(proto, "emit");
  const origSend = proto.send;
  const origEmit = proto.emit;
  const agents = (ws: unknown): boolean => String((ws as { url?: unknown }).url).startsWith(base);
  proto.send = function (this: unknown, data: unknown, ...rest: unknown[]) {
    if (agents(this)) bump(frames.sent, frameType(data));
    return origSend.call(this, data, ...rest);
  };
  proto.emit = function (this: unknown, event: string | symbol, ...args: unknown[]) {
    if (event === "message" && agents(this)) bump(frames.received, frameType(args[0]));
    return origEmit.call(this, event, ...args);
  };
  try {
    return { value: await fn(), frames };
  } finally {
    if (ownSend) Object.defineProperty(proto, "send", ownSend);
    if (ownEmit) Object.defineProperty(proto, "emit", ownEmit);
    else delete (proto as { emit?: unknown }).emit;
  }
}

/** Entry methods of the actor classes, the SQL adapter's functions: what the breakpoints count. */
function countedFunctions(index: BundleIndex): { line: number; key: string }[] {
  const out: { line: number; key: string }[] = [];
  for (const c of index.classes) {
    if (c.constructLine !== undefined && ACTOR_MODULES.test(index.moduleAt(c.line))) {
      out.push({ line: c.constructLine, key: `new ${c.className}` });
    }
  }
  for (const m of index.methods) {
    if (!m.entry || m.method === "constructor" || !ACTOR_MODULES.test(index.moduleAt(m.line))) continue;
    out.push({ line: m.line, key: `${m.className}.${m.method}` });
  }
  for (let line = 0; line < index.lineCount; line++) {
    if (index.moduleAt(line) !== SQL_MODULE) continue;
    const m = SQL_FUNCTION.exec(index.lineText(line));
    if (m) out.push({ line, key: `SQL statements through ${m[1]}()` });
  }
  return out;
}

/**
 * The `counted` phase: conditional breakpoints that bump a counter in the isolate and never
 * pause, on every function of {@link countedFunctions}; frames counted in this process. Calls
 * are undefined when the inspector could not set the breakpoints.
 */
async function countedPhase(
  rig: Rig,
  target: InspectorTarget | undefined,
  index: BundleIndex,
  durationS: number,
  drainMs: number,
  log: (l: string) => void,
): Promise<{ phase: Phase; calls: Map<string, number> | undefined; frames: FrameCounts }> {
  let session: CdpSession | undefined;
  try {
    let contextId: number | undefined;
    if (target) {
      session = await openSession(target);
      let scriptId: string | undefined;
      const fileUrl = pathToFileURL(rig.edge.bundle).href;
      session.onEvent((method, params) => {
        if (method === "Runtime.executionContextCreated") {
          contextId = (params.context as { id: number }).id;
        } else if (method === "Debugger.scriptParsed") {
          const url = String(params.url);
          if (url === fileUrl || url === rig.edge.bundle || resolve(process.cwd(), url) === rig.edge.bundle) {
            scriptId = String(params.scriptId);
          }
        }
      });
      // Both answer after announcing what exists: the contexts, then the scripts.
      await session.send("Runtime.enable");
      await session.send("Debugger.enable");
      if (contextId !== undefined && scriptId !== undefined) {
        const fns = countedFunctions(index);
        for (const f of fns) {
          const key = JSON.stringify(f.key);
          const condition = `((c) => { c[${key}] = (c[${key}] ?? 0) + 1; return false; })(globalThis.${CALLS_GLOBAL} ??= {})`;
          await session.send("Debugger.setBreakpoint", {
            location: { scriptId, lineNumber: f.line, columnNumber: 0 },
            condition,
          });
        }
        await session.send("Runtime.evaluate", { expression: `globalThis.${CALLS_GLOBAL} = {}`, contextId });
        log(`  counting calls of ${fns.length} functions`);
      } else {
        log("  the inspector named no execution context or no script for the bundle: calls are not counted");
        contextId = undefined;
      }
    }
    const instrument =
      contextId !== undefined ? "call counting (inspector breakpoints), frame counting" : "frame counting";
    const { value: phase, frames } = await countingFrames(rig.edge.url.replace(/^http/, "ws"), () =>
      runPhase(rig, "counted", instrument, durationS, drainMs),
    );
    if (!session || contextId === undefined) return { phase, calls: undefined, frames };
    const got = await session.send<{ result: { value?: string } }>("Runtime.evaluate", {
      expression: `JSON.stringify(globalThis.${CALLS_GLOBAL} ?? {})`,
      returnByValue: true,
      contextId,
    });
    const calls = new Map(Object.entries(JSON.parse(got.result.value ?? "{}") as Record<string, number>));
    return { phase, calls, frames };
  } finally {
    if (session) {
      await session.send("Debugger.disable").catch(() => undefined);
      await session.send("Runtime.disable").catch(() => undefined);
      await session.close();
    }
  }
}

/** `m`'s entries by value, largest first. */
function sorted(m: Map<string, number>): [string, number][] {
  return [...m].sort((a, b) => b[1] - a[1]);
}

/** Adds `b` into `a`. */
function merge(a: Map<string, number>, b: Map<string, number>): void {
  for (const [k, v] of b) a.set(k, (a.get(k) ?? 0) + v);
}

/** ms for a cell: 2 decimals, `<0.01` below. */
function ms2(v: number): string {
  return v < 0.005 ? "<0.01" : v.toFixed(2);
}

/** The largest few entries of `m` as one cell: `SQLite 0.41; msgpack 0.12`. */
function topCell(m: Map<string, number>, perJob: (ms: number) => number, n = 3): string {
  return sorted(m)
    .slice(0, n)
    .map(([k, v]) => `${k} ${ms2(perJob(v))}`)
    .join("; ");
}

/** Rows of `m` largest first; those under `floor` folded into one `other (n)` row. */
function folded(m: Map<string, number>, floor: number, perJob: (ms: number) => number): [string, number][] {
  const rows = sorted(m);
  const big = rows.filter(([, v]) => v >= floor);
  const small = rows.filter(([, v]) => v < floor);
  if (small.length <= 1) return rows;
  const rest = small.reduce((sum, [, v]) => sum + v, 0);
  return [...big, [`other (${small.length}, each under ${ms2(perJob(floor))} ms/job)`, rest]];
}

/** µs per event of `ms` per job spread over `n` events per job; blank when unknown. */
function microsEach(ms: number | undefined, n: number): number | string {
  return ms === undefined || n <= 0 ? "" : (1000 * ms) / n;
}

/** Thread names, as /proc/<pid>/task gives them. */
const WORKERD_THREADS = { main: "workerd", helpers: "V8 DefaultWorke", profiler: "v8:ProfEvntProc" } as const;
const OWN_THREADS = { main: "MainThread", pool: "libuv-worker", helpers: "V8Worker" } as const;

/** CPU by the named threads, and the rest as `other`. */
function threadSplit<K extends string>(
  used: Map<string, number>,
  names: Record<K, string>,
): Record<K | "other", number> {
  const out = {} as Record<K | "other", number>;
  let named = 0;
  for (const [k, name] of Object.entries(names) as [K, string][]) {
    out[k] = used.get(name) ?? 0;
    named += out[k];
  }
  out.other = Math.max(0, [...used.values()].reduce((sum, v) => sum + v, 0) - named);
  return out;
}

export const cost: Benchmark = {
  name: "cost",
  description:
    "where a job's CPU goes: workerd by hop, kind of work and line (V8 profile) and by native component (perf), with counts per job",
  async run({ quick, log }): Promise<Report> {
    const durationS = quick ? 2 : 10;
    const warmS = quick ? 1 : 2;
    const drainMs = 30_000;
    const perf = perfAvailable();
    if (!perf.ok) log(`no native breakdown: ${perf.reason}`);

    log("bundling the Worker and starting workerd with its inspector…");
    const edge = await startEdge({ inspector: true });
    let fleet: Fleet | undefined;
    let load: LoadThread | undefined;
    const phases: Phase[] = [];
    let native: NativeAttribution | undefined;
    let nativeError: string | undefined;
    let attributions: { id: string; hop?: string; a: Attribution }[] = [];
    let agentsProfile: Attribution | undefined;
    let calls: Map<string, number> | undefined;
    let frames: FrameCounts = { sent: new Map(), received: new Map() };
    let isolates: string[] = [];
    try {
      const acct = await createAccount(edge);
      const made = await modelFleet(edge, {
        model: MODEL,
        count: AGENTS,
        slots: SLOTS,
        prefetch: PREFETCH,
        serviceMs: SERVICE_MS,
        idPrefix: "cost",
        log,
      });
      fleet = made.fleet;
      if (fleet.connected < AGENTS) throw new Error(`only ${fleet.connected} of ${AGENTS} agents connected`);
      const starts = new Int32Array(new SharedArrayBuffer(4));
      fleet.log.onStart = () => {
        Atomics.add(starts, 0, 1);
      };
      const stub = await schedulerStub(edge, { modelNumber: made.config.number, shard: 0 });
      load = await startLoadThread(starts);
      const rig: Rig = { edge, fleet, key: acct.key, stub, load };

      const source = readFileSync(edge.bundle, "utf8");
      let map: SourceMap | undefined;
      try {
        map = new SourceMap(JSON.parse(readFileSync(`${edge.bundle}.map`, "utf8")));
      } catch {
        log("no source map beside the bundle: lines are named by bundle line");
      }
      const index = indexBundle(source, map && { lines: map, base: dirname(edge.bundle), root: ROOT });
      const targets = await inspectorTargets(edge.inspectorUrl as string);
      isolates = ISOLATES.filter((i) => targets.some((t) => t.id === i.id)).map((i) => i.id);

      log(`warm-up: ${warmS} s of load (not reported)…`);
      await runPhase(rig, "plain", "none", warmS, drainMs);

      log(`plain: ${durationS} s, CPU from /proc only…`);
      phases.push(await runPhase(rig, "plain", "none (CPU from /proc)", durationS, drainMs));

      if (perf.ok) {
        log(`native: ${durationS} s under perf record at ${PERF_HZ} Hz…`);
        let rec: PerfRecording | undefined;
        try {
          rec = await recordPerf(edge.workerdPid as number, PERF_HZ);
          phases.push(await runPhase(rig, "native", `perf record -g, ${PERF_HZ} Hz`, durationS, drainMs, [rec.pid]));
          const samples = await rec.stop();
          native = attributeNative(samples);
          log(`  ${samples.length} native samples`);
        } catch (err) {
          nativeError = (err as Error).message;
          log(`  no native breakdown: ${nativeError}`);
          await rec?.stop().catch(() => undefined);
        }
      }

      log(`profiled: ${durationS} s under V8's CPU profiler (${isolates.join(", ")})…`);
      const profiled = await profiledPhase(rig, targets, index, durationS, drainMs, log);
      phases.push(profiled.phase);
      attributions = profiled.attributions;
      agentsProfile = profiled.agents;

      log(`counted: ${durationS} s counting calls, commits and frames…`);
      const counted = await countedPhase(
        rig,
        targets.find((t) => t.id === ISOLATES[0]?.id),
        index,
        durationS,
        drainMs,
        log,
      );
      phases.push(counted.phase);
      calls = counted.calls;
      frames = counted.frames;
    } finally {
      await load?.close();
      await fleet?.stop();
      await edge.stop();
    }
    return buildReport({
      phases,
      native,
      nativeError,
      perf,
      attributions,
      agentsProfile,
      calls,
      frames,
      isolates,
      durationS,
      warmS,
    });
  },
};

function buildReport(r: {
  phases: Phase[];
  native: NativeAttribution | undefined;
  nativeError: string | undefined;
  perf: ReturnType<typeof perfAvailable>;
  attributions: { id: string; hop?: string; a: Attribution }[];
  agentsProfile: Attribution | undefined;
  calls: Map<string, number> | undefined;
  frames: FrameCounts;
  isolates: string[];
  durationS: number;
  warmS: number;
}): Report {
  const phase = (name: PhaseName): Phase | undefined => r.phases.find((p) => p.name === name);
  const per = (p: Phase, v: number): number => v / Math.max(1, p.jobs);
  const plain = phase("plain") as Phase;
  const profiled = phase("profiled");
  const counted = phase("counted");
  const nativeP = phase("native");

  // 1. CPU per job by phase, by process and by thread.
  const cpuTable: Table = {
    title: "CPU per job by process, in each phase (ms of CPU per job that ran; from /proc)",
    columns: [
      "phase",
      "instrument",
      "jobs",
      "answers",
      "jobs/s",
      "workerd",
      "agents",
      "workerd + agents",
      "load generator",
      "not run by deadline",
      "other procs, cores",
    ],
    rows: r.phases.map((p) => [
      p.name,
      p.instrument,
      p.jobs,
      statusCell(p.load),
      p.jobs / p.wallS,
      per(p, p.workerdMs),
      per(p, p.agentsMs),
      per(p, p.workerdMs + p.agentsMs),
      per(p, p.loadGenMs),
      p.drained ? 0 : "some",
      p.othersMs / 1000 / p.wallS,
    ]),
  };
  const threadTable: Table = {
    title: "CPU per job by thread, in each phase (ms of CPU per job; from /proc/<pid>/task)",
    columns: [
      "phase",
      "workerd: main",
      "workerd: V8 helpers",
      "workerd: V8 profiler",
      "workerd: other",
      "agents: main thread",
      "agents: libuv pool",
      "agents: V8 helpers",
      "agents: other threads, and threads that ended",
    ],
    rows: r.phases.map((p) => {
      const w = threadSplit(p.workerdThreads, WORKERD_THREADS);
      const o = threadSplit(p.ownThreads, OWN_THREADS);
      return [
        p.name,
        per(p, w.main),
        per(p, w.helpers),
        per(p, w.profiler),
        per(p, w.other),
        per(p, o.main),
        per(p, o.pool),
        per(p, o.helpers),
        per(p, Math.max(0, p.agentsMs - o.main - o.pool - o.helpers)),
      ];
    }),
  };

  // 2. Counts per job.
  const countRows: (string | number)[][] = [];
  const countJson: Record<string, number | null> = {};
  if (counted) {
    const row = (what: string, n: number): void => {
      countRows.push([what, per(counted, n), n]);
      countJson[what] = round(per(counted, n));
    };
    row(`HTTP requests (batch submits of ${BATCH})`, counted.load.sent);
    row("scheduler durable commits (stats().counters.commits)", counted.commits.commits);
    row("scheduler: jobs enqueued", counted.commits.enqueued);
    row("scheduler: jobs leased", counted.commits.leased);
    row("scheduler: jobs completed", counted.commits.completed);
    const frameRows = (dir: string, m: Map<string, number>): void => {
      row(
        `WebSocket frames ${dir}, all`,
        [...m.values()].reduce((s, v) => s + v, 0),
      );
      for (const [type, n] of sorted(m)) row(`WebSocket frames ${dir}: ${type}`, n);
    };
    frameRows("agent → edge", r.frames.sent);
    frameRows("edge → agent", r.frames.received);
    for (const [cls, n] of [...counted.databases].sort((x, y) => x[0].localeCompare(y[0]))) {
      if (n > 0) row(`actor SQLite databases created: ${cls}`, n);
    }
    if (r.calls) {
      // The benchmark's own reads of the scheduler's counters are not the job's.
      const entries = [...r.calls].filter(([k]) => k !== BENCH_OWN_CALL).sort((x, y) => x[0].localeCompare(y[0]));
      for (const [k, n] of entries) if (k.startsWith("new ")) row(`actor instances constructed: ${k}`, n);
      for (const [k, n] of entries) if (!k.startsWith("new ") && !k.startsWith("SQL")) row(`calls: ${k}`, n);
      for (const [k, n] of entries) if (k.startsWith("SQL")) row(k, n);
    }
  }
  const countTable: Table = {
    title: `Counts per job (phase counted: ${counted?.jobs ?? 0} jobs)`,
    columns: ["what", "per job", "in the phase"],
    rows: countRows,
  };

  // 3–6. The V8 profile.
  const tables: Table[] = [cpuTable, threadTable, countTable];
  const byHop = new Map<string, number>();
  const byKind = new Map<string, number>();
  const byHopKind = new Map<string, number>();
  const kindsOfHop = new Map<string, Map<string, number>>();
  const hopsOfKind = new Map<string, Map<string, number>>();
  const lines: { fn: string; where: string; text: string; ms: number }[] = [];
  let inIsolatesMs = 0;
  let idleMs = 0;
  for (const { a } of r.attributions) {
    merge(byHop, a.byHop);
    merge(byKind, a.byKind);
    merge(byHopKind, a.byHopKind);
    inIsolatesMs += a.totalMs - a.idleMs;
    idleMs += a.idleMs;
    lines.push(...a.lines.values());
  }
  byHop.delete("(idle)");
  byKind.delete("(idle)");
  for (const [k, v] of byHopKind) {
    const [hop, kind] = k.split("\t") as [string, string];
    if (kind === "(idle)") continue;
    if (!kindsOfHop.has(hop)) kindsOfHop.set(hop, new Map());
    if (!hopsOfKind.has(kind)) hopsOfKind.set(kind, new Map());
    (kindsOfHop.get(hop) as Map<string, number>).set(kind, v);
    (hopsOfKind.get(kind) as Map<string, number>).set(hop, v);
  }
  const profileJson: Record<string, unknown> = {};
  if (profiled && r.attributions.length > 0) {
    const pj = (ms: number): number => per(profiled, ms);
    const share = (ms: number): string => `${((100 * ms) / Math.max(1, profiled.workerdMs)).toFixed(1)}%`;
    const outside = profiled.workerdMs - inIsolatesMs;
    tables.push({
      title: `workerd CPU per job by hop (V8 CPU profile of ${r.isolates.join(", ")}; phase profiled: ${profiled.jobs} jobs)`,
      columns: ["hop", "ms/job", "of workerd CPU", "largest kinds inside (ms/job)"],
      rows: [
        ...folded(byHop, inIsolatesMs / 200, pj).map(([hop, ms]) => [
          hop,
          pj(ms),
          share(ms),
          topCell(kindsOfHop.get(hop) ?? new Map(), pj),
        ]),
        ["= in the isolates (sum of the above)", pj(inIsolatesMs), share(inIsolatesMs), ""],
        ["+ outside every isolate's lock (/proc − the above)", pj(outside), share(outside), ""],
        ["= workerd CPU (/proc, same phase)", pj(profiled.workerdMs), "100.0%", ""],
      ],
    });
    tables.push({
      title: "workerd CPU per job by kind of work (same profile; the innermost frame that names a kind)",
      columns: ["kind", "ms/job", "of workerd CPU", "largest hops (ms/job)"],
      rows: folded(byKind, inIsolatesMs / 200, pj).map(([kind, ms]) => [
        kind,
        pj(ms),
        share(ms),
        topCell(hopsOfKind.get(kind) ?? new Map(), pj),
      ]),
    });
    tables.push({
      title: "workerd CPU per job by hop and kind (same profile; the 30 largest)",
      columns: ["hop", "kind", "ms/job"],
      rows: sorted(byHopKind)
        .filter(([k]) => !k.endsWith("\t(idle)"))
        .slice(0, 30)
        .map(([k, ms]) => [...(k.split("\t") as [string, string]), pj(ms)]),
    });
    const hot = lines.sort((a, b) => b.ms - a.ms).slice(0, 15);
    tables.push({
      title:
        "Our code's self time by line (same profile; the 15 largest): V8 charges a runtime call it shows no frame for to the line that makes it",
      columns: ["function", "source", "line", "ms/job"],
      rows: hot.map((l) => [l.fn, l.where, l.text.length > 90 ? `${l.text.slice(0, 87)}...` : l.text, pj(l.ms)]),
    });
    Object.assign(profileJson, {
      profile_hops_ms_per_job: Object.fromEntries(sorted(byHop).map(([k, v]) => [k, round(pj(v))])),
      profile_kinds_ms_per_job: Object.fromEntries(sorted(byKind).map(([k, v]) => [k, round(pj(v))])),
      profile_hop_kinds_ms_per_job: sorted(byHopKind)
        .filter(([k]) => !k.endsWith("\t(idle)"))
        .map(([k, v]) => {
          const [hop, kind] = k.split("\t");
          return { hop, kind, ms_per_job: round(pj(v)) };
        }),
      profile_lines_ms_per_job: hot.map((l) => ({
        fn: l.fn,
        source: l.where,
        line: l.text,
        ms_per_job: round(pj(l.ms)),
      })),
      profile_in_isolates_ms_per_job: round(pj(inIsolatesMs)),
      profile_idle_ms_per_job: round(pj(idleMs)),
      profile_outside_isolates_ms_per_job: round(pj(outside)),
    });
  }

  // The agents' own profile.
  if (profiled && r.agentsProfile) {
    const ag = r.agentsProfile;
    const pj = (ms: number): number => per(profiled, ms);
    const kinds = new Map(ag.byKind);
    kinds.delete("(idle)");
    const program = kinds.get("(program): V8 in the lock, no JS") ?? 0;
    kinds.delete("(program): V8 in the lock, no JS");
    const js = [...kinds.values()].reduce((sum, v) => sum + v, 0);
    const share = (ms: number): string => `${((100 * ms) / Math.max(1, profiled.agentsMs)).toFixed(1)}%`;
    tables.push({
      title: `Agents' CPU per job by kind of work (V8 CPU profile of this process's main thread, every ${SAMPLING_US} µs; phase profiled)`,
      columns: ["kind", "ms/job", "of the agents' CPU"],
      rows: [
        ...folded(kinds, js / 100, pj).map(([k, v]) => [k, pj(v), share(v)]),
        ["= JS and GC (sum of the above)", pj(js), share(js)],
        ["(program): Node outside JS (I/O, timers, the event loop), by time, not CPU", pj(program), share(program)],
        ["agents' CPU (/proc: this process less the load generator's thread)", pj(profiled.agentsMs), "100.0%"],
      ],
    });
    profileJson.agents_kinds_ms_per_job = Object.fromEntries(sorted(kinds).map(([k, v]) => [k, round(pj(v))]));
  }

  // 7–8. perf.
  const nativeJson: Record<string, unknown> = {};
  if (r.native && nativeP) {
    const n = r.native;
    // Shares of the samples, applied to workerd's CPU from /proc over the same phase (perf's
    // window opens a moment before the phase and closes a moment after it).
    const nj = (samples: number): number => (per(nativeP, nativeP.workerdMs) * samples) / Math.max(1, n.samples);
    const share = (samples: number): string => `${((100 * samples) / Math.max(1, n.samples)).toFixed(1)}%`;
    tables.push({
      title: `workerd CPU per job by native component (perf, every thread; the innermost frame not charged to its caller: the kernel, libc and the allocator are; phase native: ${nativeP.jobs} jobs)`,
      columns: ["component", "ms/job", "of which in the kernel", "share"],
      rows: [
        ...sorted(n.byKind).map(([k, v]) => [k, nj(v), nj(n.kernelByKind.get(k) ?? 0), share(v)]),
        [
          `= workerd CPU (/proc, same phase; ${n.samples} samples)`,
          nj(n.samples),
          nj([...n.kernelByKind.values()].reduce((sum, v) => sum + v, 0)),
          "100.0%",
        ],
      ],
    });
    tables.push({
      title: "workerd CPU per job on paths through the runtime (same perf samples; inclusive, so rows overlap)",
      columns: ["path", "ms/job", "share"],
      rows: NATIVE_PATHS.map((p) => [p.path, nj(n.byPath.get(p.path) ?? 0), share(n.byPath.get(p.path) ?? 0)]),
    });
    Object.assign(nativeJson, {
      native_components_ms_per_job: Object.fromEntries(sorted(n.byKind).map(([k, v]) => [k, round(nj(v))])),
      native_kernel_ms_per_job: Object.fromEntries(sorted(n.kernelByKind).map(([k, v]) => [k, round(nj(v))])),
      native_paths_ms_per_job: Object.fromEntries(
        NATIVE_PATHS.map((p) => [p.path, round(nj(n.byPath.get(p.path) ?? 0))]),
      ),
      native_threads_ms_per_job: Object.fromEntries(sorted(n.byThread).map(([k, v]) => [k, round(nj(v))])),
      native_samples: n.samples,
    });
  }

  // Unit costs: a path's CPU per job over the events of that path per job.
  const unitJson: Record<string, unknown>[] = [];
  if (counted) {
    const perJobCount = (n: number): number => per(counted, n);
    const calls = [...(r.calls ?? new Map<string, number>())].filter(([k]) => k !== BENCH_OWN_CALL);
    const count = (pred: (k: string) => boolean): number =>
      calls.filter(([k]) => pred(k)).reduce((sum, [, n]) => sum + n, 0);
    const framesIn = [...r.frames.sent.values()].reduce((sum, v) => sum + v, 0);
    const events = {
      request: perJobCount(counted.load.sent),
      frame: perJobCount(framesIn),
      rpc: perJobCount(count((k) => !k.startsWith("new ") && !k.startsWith("SQL") && !k.endsWith(".webSocketMessage"))),
      actor: perJobCount(count((k) => k.startsWith("new "))),
      sql: perJobCount(count((k) => k.startsWith("SQL"))),
      commit: perJobCount(counted.commits.commits),
    };
    const pathMs = (path: string): number | undefined =>
      r.native && nativeP
        ? (per(nativeP, nativeP.workerdMs) * (r.native.byPath.get(path) ?? 0)) / Math.max(1, r.native.samples)
        : undefined;
    const hopMs = (hop: string): number | undefined =>
      profiled && r.attributions.length > 0 ? per(profiled, byHop.get(hop) ?? 0) : undefined;
    const rows: [string, string, number, number | undefined, number | undefined][] = [
      [
        "an actor instance constructed (with its SQLite database)",
        "new <actor> (counted)",
        events.actor,
        pathMs(NATIVE_PATHS[0]?.path ?? ""),
        undefined,
      ],
      [
        "an HTTP request into the Worker",
        "HTTP requests",
        events.request,
        pathMs("HTTP requests into Workers"),
        hopMs("Worker fetch (HTTP API)"),
      ],
      [
        "a WebSocket message into an agent's actor",
        "frames agent → edge",
        events.frame,
        pathMs("WebSocket messages into actors (webSocketMessage)"),
        hopMs("AgentActor.webSocketMessage"),
      ],
      [
        "an RPC call into an actor (callee side)",
        "actor entry calls other than webSocketMessage",
        events.rpc,
        pathMs("JS RPC calls into actors (callee side)"),
        undefined,
      ],
      [
        "a SQL statement (sqlite3_step)",
        "SQL statements (all, run)",
        events.sql,
        pathMs("SQLite: running statements (sqlite3_step)"),
        undefined,
      ],
      [
        "a scheduler durable commit (pager commits of every actor, so at most)",
        "scheduler commits",
        events.commit,
        pathMs("SQLite: committing (pager commit)"),
        undefined,
      ],
    ];
    tables.push({
      title:
        "Unit costs: µs of workerd CPU per event (a path's ms per job over its events per job; perf from phase native, V8 lock time from phase profiled, counts from phase counted)",
      columns: ["event", "counted as", "per job", "perf path µs/event", "V8 hop µs/event (lock time)"],
      rows: rows.map(([event, as, n, perfMs, v8Ms]) => [event, as, n, microsEach(perfMs, n), microsEach(v8Ms, n)]),
    });
    for (const [event, as, n, perfMs, v8Ms] of rows) {
      const u = (ms: number | undefined): number | null =>
        ms === undefined || n <= 0 ? null : round((1000 * ms) / n, 1);
      unitJson.push({ event, counted_as: as, per_job: round(n), perf_us: u(perfMs), v8_lock_us: u(v8Ms) });
    }
  }

  const metrics: Report["metrics"] = {
    jobs_per_s: round(plain.jobs / plain.wallS, 1),
    workerd_cpu_ms_per_job: round(per(plain, plain.workerdMs)),
    agents_cpu_ms_per_job: round(per(plain, plain.agentsMs)),
    workerd_and_agents_cpu_ms_per_job: round(per(plain, plain.workerdMs + plain.agentsMs)),
    load_generator_cpu_ms_per_job: round(per(plain, plain.loadGenMs)),
    other_procs_cores: round(plain.othersMs / 1000 / plain.wallS),
  };
  for (const p of r.phases) {
    metrics[`${p.name}_workerd_cpu_ms_per_job`] = round(per(p, p.workerdMs));
    metrics[`${p.name}_agents_cpu_ms_per_job`] = round(per(p, p.agentsMs));
    metrics[`${p.name}_other_procs_cores`] = round(p.othersMs / 1000 / p.wallS);
  }
  if (profiled && r.attributions.length > 0) {
    metrics.profiled_in_isolates_ms_per_job = round(per(profiled, inIsolatesMs));
  }
  if (counted) {
    metrics.commits_per_job = round(per(counted, counted.commits.commits));
    metrics.http_requests_per_job = round(per(counted, counted.load.sent));
  }

  const runner = `synthetic stand-in for the GPU: holds a slot ${SERVICE_MS} ms (a timer), no frames, no outputs`;
  return {
    target: `${MEASURED_PORT}, with workerd's V8 inspector open on 127.0.0.1; ${AGENTS} real Agent instances (gpu-agent/agent.ts) in this process, one WebSocket each; the load generator in a worker thread of this process; everything shares this machine's cores`,
    setup: {
      runner,
      agents: `${AGENTS}, ${SLOTS} slot and prefetch ${PREFETCH} each; model ${MODEL}: 1 shard, expected_runtime_s ${SERVICE_MS / 1000}`,
      load: `closed loop, ${CLIENTS} clients × ${BATCH}-job batches (POST /v1/models/${MODEL}/jobs/batch), undici Pool of ${CONNECTIONS} connections; clients pause while ${BACKLOG} accepted jobs wait unstarted (dispatch's batch scenario)`,
      phases: `${r.warmS} s warm-up (not reported), then plain, ${r.native || r.nativeError ? "native, " : ""}profiled and counted, ${r.durationS} s of load each, each until every accepted job ran (at most 30 s)`,
      v8_profile: `Profiler.setSamplingInterval ${SAMPLING_US} µs in each isolate (${r.isolates.join(", ")}), started before and stopped after the phase`,
      native_profile: r.perf.ok
        ? r.native
          ? `${r.perf.version}: perf record -g -F ${PERF_HZ} -p <workerd> over the phase, stacks by frame pointers`
          : `perf failed: ${r.nativeError ?? "unknown"}`
        : `none: ${r.perf.reason}`,
      state: `${stateFilesystem()}: workerd's actor state`,
    },
    tables,
    metrics,
    notes: [
      "Per job = over the jobs accepted in the phase, every one of which ran before the phase ended: a job's submit, lease, delivery, run and completion, and the agents' heartbeats over the phase, are all in it.",
      "agents = this process's CPU less the load generator's thread (process.threadCpuUsage() there); it also holds what little the benchmark does meanwhile (waiting for the runs, reading /proc) and Miniflare's Node side (its loopback server). V8's helper threads serve every isolate of the process, the load generator's too. The goal of ≤ 1 ms of CPU per job is for workerd + agents.",
      "Each instrument costs CPU: compare a phase's figures with plain's. perf adds its sampling to workerd; V8's profiler adds its own thread and a signal per sample, in workerd and in this process; counting calls stops V8 at every counted function (a breakpoint whose condition counts and never pauses), so only the counted phase's counts are for reading.",
      "V8's profiler samples an isolate only while a thread holds its lock, so a profile sees the isolate's JS, the runtime calls JS makes (SQLite, WebSocket send, RPC stubs) and GC, and nothing of workerd outside the lock (HTTP and WebSocket I/O, RPC transport, storage commits). A sample stands for the gap to the next one, or for the sampling period after a longer gap. Time in the lock is time, not CPU: a call that blocks inside it (creating a file) counts as if it ran, so the isolates' sum can exceed workerd's CPU and the remainder outside the locks is then negative; perf's figures are CPU.",
      "Hop: the outermost frame of the Worker's bundle on the stack: edge/ and Hono are the Worker's fetch handler; an actor's method encloses the frame otherwise, so a resumed await and an inner closure count for their method. GC, (program) (V8 in the lock with no JS on the stack) and runtime callbacks with no JS caller are hops of their own. Miniflare's entry worker (every HTTP request and WebSocket upgrade passes it) and its rate-limit simulator (a SQLite-backed Durable Object behind RL_*.limit()) exist only locally.",
      "Kind: the innermost frame that names one (SQLite: sql.exec and cursors; msgpack: msgpackr and shared/codec.ts; zod; WebSocket send and attachments; actor stubs; RPC result promises; a library by package), looking no further out than the innermost frame of our own code, which otherwise names it as `JS: <source module>`; `runtime API x()` and `built-in JS` are a runtime function or built-in module our code calls with no kind of its own.",
      "V8 shows no frame for a call on an RPC stub: what the call costs in the lock, and what the runtime does synchronously for it (serialising the arguments; constructing the actor it addresses when none is in memory, which opens, and the first time creates, the actor's SQLite database), is the self time of the line that makes the call, or of the function's first line when it resumes: the table of lines shows where.",
      "perf: a sample's component is its innermost frame not charged to its caller (kernel, libc and allocator frames are charged to the frame that called them; `of which in the kernel` keeps them visible); components' shares of the samples are applied to workerd's CPU from /proc over the same phase. Paths count a sample for every runtime path on its stack.",
      "Unit costs divide a path's CPU per job by the events of that path per job, each from its own phase of the same workload. Paths overlap: what runs synchronously under an event counts for it (a new actor's own SQL statements and first commit are in the new-actor row and in the SQL and commit rows; the V8 hop of a WebSocket message holds the lock time of the RPC calls it makes, the actor it constructs included), so a row is at most the event's own cost.",
      "Counts: WebSocket frames are counted on the agents' sockets in this process (the message type decoded from each frame); calls by inspector breakpoints at the first statement of each entry method of the mesh/*-actor.ts classes (a method not called as this.<name>() in its class: an RPC method or a runtime handler), of each such class's construction (its constructor, or its first field initialiser) and of the SQL adapter's all/run (mesh/sql/durable.ts: one SQL statement each, any actor); actor databases are the .sqlite files workerd created; commits are the scheduler actor's own count of events that wrote storage (other actors' writes are not counted).",
      ...r.phases.flatMap((p) =>
        p.load.errorSamples.length > 0 ? [`error samples (${p.name}): ${p.load.errorSamples.join(" | ")}`] : [],
      ),
    ],
    extra: {
      phases: r.phases.map((p) => ({
        phase: p.name,
        instrument: p.instrument,
        jobs: p.jobs,
        requests: p.load.sent,
        statuses: p.load.statuses,
        wall_s: round(p.wallS),
        jobs_per_s: round(p.jobs / p.wallS, 1),
        workerd_cpu_ms_per_job: round(per(p, p.workerdMs)),
        workerd_threads_ms_per_job: Object.fromEntries([...p.workerdThreads].map(([k, v]) => [k, round(per(p, v))])),
        agents_cpu_ms_per_job: round(per(p, p.agentsMs)),
        load_generator_cpu_ms_per_job: round(per(p, p.loadGenMs)),
        perf_cpu_ms_per_job: round(per(p, p.perfMs)),
        other_procs_cores: round(p.othersMs / 1000 / p.wallS),
        drained: p.drained,
        scheduler: p.commits,
      })),
      counts_per_job: countJson,
      unit_costs: unitJson,
      ...profileJson,
      ...nativeJson,
    },
  };
}
