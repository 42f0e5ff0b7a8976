/**
 * Per-thread CPU of a process, from /proc/<pid>/task (Linux): a process that uses 0.8 cores in
 * all may still have one thread at 100 %, and a saturated JavaScript thread is what queues
 * work. Also this process's event-loop delay, to tell a slow server from a slow client.
 */
import { readdirSync, readFileSync } from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";

/** CPU time (ms) of each thread of `pid` so far, by thread id, with its name. */
function threadCpu(pid: number | undefined): Map<string, { name: string; ms: number }> {
  const out = new Map<string, { name: string; ms: number }>();
  if (pid === undefined) return out;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
        const close = stat.lastIndexOf(")");
        const name = stat.slice(stat.indexOf("(") + 1, close);
        const f = stat.slice(close + 2).split(" ");
        out.set(tid, { name, ms: (Number(f[11]) + Number(f[12])) * 10 });
      } catch {
        // the thread ended
      }
    }
  } catch {
    // no /proc or the process ended
  }
  return out;
}

/** The busiest thread of a process over a measurement: its name and the cores it used. */
export interface BusiestThread {
  name: string;
  cores: number;
}

/** Starts a per-thread meter of `pid`; calling the result answers its busiest thread since. */
export function threadMeter(pid: number | undefined): () => BusiestThread {
  const before = threadCpu(pid);
  const t0 = performance.now();
  return () => {
    const s = (performance.now() - t0) / 1000;
    let best: BusiestThread = { name: "unknown", cores: 0 };
    for (const [tid, now] of threadCpu(pid)) {
      const cores = (now.ms - (before.get(tid)?.ms ?? 0)) / 1000 / s;
      if (cores > best.cores) best = { name: now.name, cores };
    }
    return best;
  };
}

/**
 * Starts a meter of a process's CPU by thread name (threads of one name summed: V8's helper
 * threads share one); calling the result answers the ms each name used since.
 */
export function threadNameMeter(pid: number | undefined): () => Map<string, number> {
  const before = threadCpu(pid);
  return () => {
    const out = new Map<string, number>();
    for (const [tid, now] of threadCpu(pid)) {
      const used = now.ms - (before.get(tid)?.ms ?? 0);
      out.set(now.name, (out.get(now.name) ?? 0) + used);
    }
    return out;
  };
}

/** This process's event-loop delay over a measurement (ms): p50, p99, max. */
export function loopDelayMeter(): () => { p50: number; p99: number; max: number } {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  return () => {
    h.disable();
    return { p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6 };
  };
}

/** Starts a meter of a process's user and system CPU (ms); system time includes its file syncs. */
export function userSysMeter(pid: number | undefined): () => { userMs: number; sysMs: number } {
  const read = (): { u: number; s: number } => {
    if (pid === undefined) return { u: 0, s: 0 };
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return { u: Number(f[11]) * 10, s: Number(f[12]) * 10 };
    } catch {
      return { u: 0, s: 0 };
    }
  };
  const before = read();
  return () => {
    const now = read();
    return { userMs: now.u - before.u, sysMs: now.s - before.s };
  };
}
