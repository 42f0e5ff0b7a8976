/**
 * CPU accounting for benchmarks: this process's CPU time, and another process's from /proc
 * (Linux), so a report can say how much CPU the load generator and workerd each spent per job.
 */
import { readFileSync } from "node:fs";

/** CPU time (ms, user + system) a process has used so far, from /proc; 0 when unknown. */
export function processCpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of proc(5), in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0;
  }
}

/** This Node process's CPU time so far (ms). */
export function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * CPU time (ms) all processes on the machine have used so far: the busy fields of /proc/stat's
 * `cpu` line (user, nice, system, irq, softirq, steal). Minus what the benchmark's own processes
 * used, it tells how much other work competed for the cores during a measurement.
 */
export function machineBusyMs(): number {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const busy = [0, 1, 2, 5, 6, 7].reduce((sum, i) => sum + (f[i] ?? 0), 0);
    return busy * 10; // clock ticks of 10 ms
  } catch {
    return 0;
  }
}

/**
 * A CPU meter over one measurement: this process, each named group of processes (CPU summed
 * over its pids), and everything else on the machine.
 */
export function groupCpuMeter<K extends string>(
  groups: Record<K, readonly (number | undefined)[]>,
): () => { selfMs: number; groups: Record<K, number>; othersMs: number } {
  const names = Object.keys(groups) as K[];
  const read = (name: K): number => groups[name].reduce<number>((sum, pid) => sum + processCpuMs(pid), 0);
  const self0 = selfCpuMs();
  const before = names.map(read);
  const all0 = machineBusyMs();
  return () => {
    const selfMs = selfCpuMs() - self0;
    const used = Object.fromEntries(names.map((name, i) => [name, read(name) - (before[i] as number)])) as Record<
      K,
      number
    >;
    const ours = names.reduce((sum, name) => sum + used[name], selfMs);
    return { selfMs, groups: used, othersMs: Math.max(0, machineBusyMs() - all0 - ours) };
  };
}

/** A CPU meter over one measurement: this process, workerd (if any), and everything else. */
export function cpuMeter(workerdPid?: number): () => { selfMs: number; workerdMs: number; othersMs: number } {
  const meter = groupCpuMeter({ workerd: [workerdPid] });
  return () => {
    const { selfMs, groups, othersMs } = meter();
    return { selfMs, workerdMs: groups.workerd, othersMs };
  };
}
