/**
 * workerd's native CPU by component, from Linux `perf`: where the C++ runtime, SQLite, V8 and
 * the kernel spend a process's CPU, including the work V8's own profiler cannot see (HTTP and
 * WebSocket I/O, RPC plumbing, storage commits, creating actor instances). `perf record` samples
 * the process's threads on the CPU clock at a fixed rate, so a sample is CPU time; stacks are
 * walked by frame pointers, and workerd's binary carries its symbols.
 *
 * Optional: a machine without `perf`, or whose kernel refuses it, gets no native breakdown
 * ({@link perfAvailable} says why). Used by the `cost` benchmark.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

/** One frame of a native stack: its symbol and the binary (dso) it is in. */
export interface NativeFrame {
  sym: string;
  dso: string;
}

/** One sample: the thread's name and its stack, leaf first. */
export interface NativeSample {
  thread: string;
  frames: NativeFrame[];
}

/** Whether `perf` can profile this machine's processes; the reason when not. */
export function perfAvailable(): { ok: true; version: string } | { ok: false; reason: string } {
  const v = spawnSync("perf", ["--version"], { encoding: "utf8", timeout: 10_000 });
  if (v.error || v.status !== 0) return { ok: false, reason: "`perf` is not installed (linux-perf)" };
  return { ok: true, version: v.stdout.trim() };
}

/** A running `perf record` of one process. */
export interface PerfRecording {
  /** perf's own pid, so its CPU can be told apart from the competing load. */
  pid: number | undefined;
  /** Stops recording and answers the samples; rejects when perf failed. */
  stop(): Promise<NativeSample[]>;
}

/** Starts `perf record -g` of `pid` at `hz` samples per second of CPU. */
export async function recordPerf(pid: number, hz: number): Promise<PerfRecording> {
  const dir = mkdtempSync(join(tmpdir(), "floodgate-perf-"));
  const data = join(dir, "perf.data");
  const child: ChildProcess = spawn("perf", ["record", "-F", String(hz), "-g", "-p", String(pid), "-o", data, "-q"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)));
  // perf attaches within a few ms; give it a moment so the window is covered from its start.
  await new Promise((r) => setTimeout(r, 200));
  if (child.exitCode !== null) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`perf record exited at once (${child.exitCode}): ${stderr.trim().slice(0, 300)}`);
  }
  return {
    pid: child.pid,
    async stop(): Promise<NativeSample[]> {
      try {
        child.kill("SIGINT");
        const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
        const code = await exited;
        clearTimeout(killer);
        if (code !== 0 && code !== null)
          throw new Error(`perf record failed (${code}): ${stderr.trim().slice(0, 300)}`);
        return await readPerf(data);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Reads a perf.data file through `perf script`: one sample per blank-line-separated block. */
async function readPerf(data: string): Promise<NativeSample[]> {
  const child = spawn("perf", ["script", "-i", data, "-F", "comm,tid,ip,sym,dso"], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
  const out: NativeSample[] = [];
  let cur: NativeSample | undefined;
  for await (const line of createInterface({ input: child.stdout! })) {
    const sample = parsePerfLine(line, cur);
    if (sample !== cur) {
      if (cur) out.push(cur);
      cur = sample;
    }
  }
  if (cur) out.push(cur);
  clearTimeout(timer);
  return out.filter((s) => s.frames.length > 0);
}

const FRAME = /^\s*[0-9a-f]+ (.*) \(([^()]*)\)$/;
const HEADER = /^\s*(.+?)\s+\d+\s*$/;

/**
 * One line of `perf script -F comm,tid,ip,sym,dso`: a header (`comm tid`) starts a sample, an
 * indented `ip sym (dso)` adds a frame to it, a blank line ends it. Answers the sample the line
 * belongs to (a new object for a header), `undefined` after a blank line.
 */
export function parsePerfLine(line: string, cur: NativeSample | undefined): NativeSample | undefined {
  if (line.trim() === "") return undefined;
  const frame = FRAME.exec(line);
  if (frame && /^\s/.test(line)) {
    cur?.frames.push({ sym: frame[1] as string, dso: frame[2] as string });
    return cur;
  }
  const header = HEADER.exec(line);
  return header ? { thread: header[1] as string, frames: [] } : cur;
}

/** Frames charged to their caller: the kernel, libc, the allocator, unknown addresses. */
function transparent(f: NativeFrame): boolean {
  if (f.dso.startsWith("[kernel") || f.dso === "[unknown]" || /\/(libc|libm|ld-linux[^/]*)\.so/.test(f.dso))
    return true;
  return /^(tcmalloc::|TCMallocInternal|operator new|operator delete|malloc|free|calloc|realloc|mem(cpy|move|set|cmp)|__mem|__str|str[a-z]*$)/.test(
    f.sym,
  );
}

const JIT = (f: NativeFrame): boolean =>
  /perf-\d+\.map$/.test(f.dso) || (f.sym === "[unknown]" && f.dso.endsWith(".map"));

/** Components of workerd by symbol; the first that matches a frame names it. */
export const NATIVE_KINDS: readonly { kind: string; sym: RegExp }[] = [
  {
    kind: "zlib (WebSocket per-message deflate)",
    sym: /^(Cr_z_|deflate|inflate|longest_match|build_tree|compress_block|adler32|crc32)/,
  },
  {
    kind: "SQLite",
    sym: /^(sqlite3|btree|pcache1|pager|vdbe|yy_|unix[A-Z]|wal[A-Z]|setupLookaside|openDatabase)|SqliteDatabase/,
  },
  {
    kind: "V8 garbage collector",
    sym: /v8::internal::(Scavenger|MarkCompact|MinorMarkSweep|Sweeper|ConcurrentMarking|IncrementalMarking|Marking|Evacuat|GCTracer|ScavengerCollector)|v8::internal::Heap::(CollectGarbage|Scavenge|PerformGarbageCollection|\w*GC)|cppgc::/,
  },
  {
    kind: "V8 compiler and parser",
    sym: /v8::internal::(compiler|maglev|baseline|Compiler|Parser|Scanner|interpreter::Bytecode|OptimizingCompile|PreParser)/,
  },
  {
    kind: "structured clone (RPC arguments and results)",
    sym: /ValueSerializer|ValueDeserializer|jsg::(Serializer|Deserializer)/,
  },
  {
    kind: "V8 CPU profiler",
    sym: /v8::sampler|CpuProfiler|ProfilerListener|SamplingEventsProcessor|ProfileGenerator|ProfileTree|ProfileNode|CodeEntry/,
  },
  { kind: "JS (V8 builtins and interpreter)", sym: /^Builtins_/ },
  { kind: "V8 runtime (objects, calls between JS and C++)", sym: /^v8::|v8::internal::|^_ZN2v8/ },
  { kind: "Cap'n Proto (RPC plumbing)", sym: /capnp::/ },
  {
    kind: "HTTP and WebSocket protocol (KJ)",
    sym: /kj::.*(Http|WebSocket)|\bHttp(Server|Client|Headers|Input|Output)/,
  },
  { kind: "workerd JS bindings (jsg)", sym: /workerd::jsg::|^_ZN7workerd3jsg/ },
  { kind: "workerd APIs (C++)", sym: /workerd::api::/ },
  { kind: "workerd runtime (C++)", sym: /workerd::/ },
  { kind: "KJ event loop, promises, I/O", sym: /kj::/ },
  { kind: "Rust host (tokio, channels)", sym: /tokio|kj_rs|workerd_server|cxxbridge|^<|^core::|^std::|^alloc::/ },
];

/**
 * Paths through the runtime, counted inclusively: a sample counts for every path one of its
 * frames matches, so these overlap and add up to more than the total.
 */
export const NATIVE_PATHS: readonly { path: string; sym: RegExp }[] = [
  {
    path: "creating actor instances (Worker::Actor, opening its SQLite database)",
    sym: /workerd::Worker::Actor::Actor\b|worker_new_actor|Worker::Actor::Impl::Impl/,
  },
  { path: "SQLite: opening databases", sym: /^openDatabase$|SqliteDatabase::init\b/ },
  { path: "SQLite: preparing statements", sym: /^sqlite3_prepare|^sqlite3LockAndPrepare$/ },
  { path: "SQLite: running statements (sqlite3_step)", sym: /^sqlite3_step$/ },
  { path: "SQLite: committing (pager commit)", sym: /^sqlite3PagerCommitPhase|^sqlite3BtreeCommitPhase/ },
  {
    path: "running JS (V8 Execution::Call, microtasks)",
    sym: /v8::internal::Execution::(Call|TryCall|TryRunMicrotasks)/,
  },
  { path: "WebSocket messages into actors (webSocketMessage)", sym: /HibernatableWebSocketCustomEvent::run/ },
  { path: "JS RPC calls into actors (callee side)", sym: /JsRpcTargetBase::callImpl/ },
  { path: "HTTP requests into Workers", sym: /WorkerEntrypoint::request/ },
  { path: "structured clone (RPC arguments and results)", sym: /ValueSerializer|ValueDeserializer/ },
];

/** Native CPU by component, thread and path, in samples. */
export interface NativeAttribution {
  samples: number;
  byKind: Map<string, number>;
  /** Of each kind's samples, those whose leaf frame is in the kernel. */
  kernelByKind: Map<string, number>;
  byThread: Map<string, number>;
  byPath: Map<string, number>;
}

/** The component a sample's CPU went to: its innermost frame that is not charged to a caller. */
export function nativeKind(s: NativeSample): string {
  for (const f of s.frames) {
    if (JIT(f)) return "JS (JIT-compiled code)";
    if (transparent(f)) continue;
    return NATIVE_KINDS.find((k) => k.sym.test(f.sym))?.kind ?? "other native code";
  }
  return s.frames.some((f) => f.dso.startsWith("[kernel")) ? "kernel (no user frame)" : "unknown";
}

function add(m: Map<string, number>, k: string): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

/** Attributes every sample (see {@link nativeKind} and {@link NATIVE_PATHS}). */
export function attributeNative(samples: readonly NativeSample[]): NativeAttribution {
  const out: NativeAttribution = {
    samples: samples.length,
    byKind: new Map(),
    kernelByKind: new Map(),
    byThread: new Map(),
    byPath: new Map(),
  };
  for (const s of samples) {
    const kind = nativeKind(s);
    add(out.byKind, kind);
    if (s.frames[0]?.dso.startsWith("[kernel")) add(out.kernelByKind, kind);
    add(out.byThread, s.thread);
    for (const p of NATIVE_PATHS) if (s.frames.some((f) => p.sym.test(f.sym))) add(out.byPath, p.path);
  }
  return out;
}
