/**
 * One `floodgate dev` per state directory, and nothing it started outliving it. The launcher
 * claims the state in `<state>/dev.json` (itself and each process it starts), hands the state to
 * a watchdog (cli/dev-watchdog.ts) that stops those processes once the launcher is gone however
 * it went (SIGKILL, a closed terminal), and on start stops what a dead launcher left behind or
 * refuses while a live one owns the state. Called by cli/dev.ts and the watchdog.
 *
 * wrangler runs workerd in its own process group, so a launcher's death reaches neither; hence
 * the record and the watchdog. A recorded pid is signalled only while it is still the process
 * that was recorded (same start time), so a reused pid is never touched. On Linux every process
 * the launcher starts also carries its owner in the environment (inherited by workerd and any
 * grandchild), which finds leftovers that no record names.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";

/** The environment variables that mark a process as started by a launcher for a state. */
export const STATE_ENV = "FLOODGATE_DEV_STATE";
export const OWNER_ENV = "FLOODGATE_DEV_OWNER";

/** SIGTERM first; what still runs after this is killed (ms). */
const TERM_GRACE_MS = 5_000;
/** How long SIGKILLed processes may take to be gone (ms). */
const KILL_WAIT_MS = 3_000;

/** A process as recorded: its pid and its start time, which together name it uniquely. */
export const ProcessRef = z.object({ pid: z.number().int().positive(), start: z.string().min(1) });
export type ProcessRef = z.infer<typeof ProcessRef>;

const Child = ProcessRef.extend({
  role: z.enum(["edge", "agent", "provisioner"]),
  /** It leads its own process group, which is stopped as a whole. */
  group: z.boolean(),
});
type Child = z.infer<typeof Child>;

/** `<state>/dev.json`: the launcher that owns the state and what it started. */
export const InstanceRecord = z.object({
  owner: ProcessRef,
  state: z.string(),
  children: z.array(Child),
});
export type InstanceRecord = z.infer<typeof InstanceRecord>;

/** The state is owned by a live launcher. */
export class StateBusyError extends Error {
  readonly pid: number;
  constructor(pid: number, state: string) {
    super(
      `${state} is in use by a running floodgate dev (pid ${pid}).\n` +
        `Stop that one first (Ctrl-C in its terminal, or \`kill ${pid}\`), or start this one with another --state.`,
    );
    this.name = "StateBusyError";
    this.pid = pid;
  }
}

export function recordFile(state: string): string {
  return join(state, "dev.json");
}

/**
 * A process's start time as an opaque token, or undefined when no such process runs (a zombie
 * counts as gone). Linux: the start field of /proc/<pid>/stat (clock ticks since boot);
 * elsewhere `ps -o lstart=`.
 */
export function startToken(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which may itself hold spaces and parentheses: state is
    // field 3 of proc(5), starttime field 22.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z" || fields[0] === "X") return undefined;
    return fields[19];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && process.platform === "linux") return undefined;
  }
  try {
    const out = execFileSync("ps", ["-o", "lstart=", "-p", String(pid)], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
    return out || undefined;
  } catch {
    return undefined;
  }
}

/** This process, as a record names it. */
export function selfRef(): ProcessRef {
  const start = startToken(process.pid);
  if (start === undefined) throw new Error("cannot read this process's start time (no /proc and no ps)");
  return { pid: process.pid, start };
}

/** Whether `ref` still names a running process: the same pid with the same start time. */
export function isRunning(ref: ProcessRef): boolean {
  return startToken(ref.pid) === ref.start;
}

function ownerToken(ref: ProcessRef): string {
  return `${ref.pid}:${ref.start}`;
}

function parseOwner(token: string): ProcessRef | undefined {
  const colon = token.indexOf(":");
  const parsed = ProcessRef.safeParse({ pid: Number(token.slice(0, colon)), start: token.slice(colon + 1) });
  return colon > 0 && parsed.success ? parsed.data : undefined;
}

/**
 * Processes whose environment marks them as started for `state` (Linux only: elsewhere none
 * are found and the record alone is used), each with the launcher that started it.
 */
export function markedProcesses(state: string): { ref: ProcessRef; owner: ProcessRef | undefined }[] {
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((d) => /^\d+$/.test(d));
  } catch {
    return [];
  }
  const found: { ref: ProcessRef; owner: ProcessRef | undefined }[] = [];
  for (const p of pids) {
    const pid = Number(p);
    if (pid === process.pid) continue;
    let environ: string[];
    try {
      environ = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
    } catch {
      continue; // gone, or another user's
    }
    if (!environ.includes(`${STATE_ENV}=${state}`)) continue;
    const start = startToken(pid);
    if (start === undefined) continue;
    const owner = environ.find((e) => e.startsWith(`${OWNER_ENV}=`));
    found.push({ ref: { pid, start }, owner: owner ? parseOwner(owner.slice(OWNER_ENV.length + 1)) : undefined });
  }
  return found;
}

function readRecord(state: string): { text: string; record: InstanceRecord | undefined } | undefined {
  let text: string;
  try {
    text = readFileSync(recordFile(state), "utf8");
  } catch {
    return undefined;
  }
  try {
    const parsed = InstanceRecord.safeParse(JSON.parse(text));
    return { text, record: parsed.success ? parsed.data : undefined };
  } catch {
    return { text, record: undefined };
  }
}

function signal(target: ProcessRef & { group?: boolean }, sig: NodeJS.Signals): void {
  // The pid is checked right before: a pid is not reused while its process or group lives.
  if (!isRunning(target)) return;
  try {
    process.kill(target.group ? -target.pid : target.pid, sig);
  } catch {
    // gone meanwhile
  }
}

async function waitGone(targets: ProcessRef[], ms: number): Promise<ProcessRef[]> {
  const until = Date.now() + ms;
  let left = targets.filter(isRunning);
  while (left.length > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    left = left.filter(isRunning);
  }
  return left;
}

/**
 * Stops what the launcher `owner` started for `state` and left running: the children in the
 * record (when `owner` still owns it) and, on Linux, every process marked with that owner.
 * SIGTERM, then SIGKILL after a grace. Answers how many were running and the pids that still
 * run after that.
 */
export async function stopLeftovers(state: string, owner: ProcessRef): Promise<{ found: number; left: number[] }> {
  const held = readRecord(state)?.record;
  const targets: (ProcessRef & { group?: boolean })[] = [];
  if (held && held.owner.pid === owner.pid && held.owner.start === owner.start) targets.push(...held.children);
  const mine = ownerToken(owner);
  for (const m of markedProcesses(state)) {
    if (m.owner && ownerToken(m.owner) === mine && !targets.some((t) => t.pid === m.ref.pid)) targets.push(m.ref);
  }
  const running = targets.filter(isRunning);
  if (running.length === 0) return { found: 0, left: [] };
  for (const t of running) signal(t, "SIGTERM");
  const stubborn = await waitGone(running, TERM_GRACE_MS);
  for (const t of running) if (stubborn.includes(t)) signal(t, "SIGKILL");
  const left = (await waitGone(stubborn, KILL_WAIT_MS)).map((t) => t.pid);
  return { found: running.length, left };
}

/** A claimed state: record what is started, and give the state back on a clean stop. */
export interface Instance {
  /** The variables every process started for the state gets. */
  env: Record<string, string>;
  /** Records a started child (before anything waits on it, so a death right after is covered). */
  add(child: ChildProcess, role: Child["role"], group: boolean): void;
  /** Forgets the state's record and lets the watchdog go: call once everything has stopped. */
  release(): void;
}

function writeRecord(state: string, record: InstanceRecord): void {
  const tmp = `${recordFile(state)}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(record, null, 2) + "\n");
  renameSync(tmp, recordFile(state));
}

/**
 * Claims `state` (an absolute, real path) for this launcher: refuses with StateBusyError while a
 * live launcher owns it, stops what a dead one left running, records this one and starts its
 * watchdog. `log` reports leftovers that were stopped.
 */
export async function claimState(state: string, log: (line: string) => void): Promise<Instance> {
  const self = selfRef();
  const file = recordFile(state);
  for (let attempt = 0; ; attempt++) {
    const held = readRecord(state);
    if (held?.record && isRunning(held.record.owner) && held.record.owner.pid !== self.pid)
      throw new StateBusyError(held.record.owner.pid, state);
    // A live launcher whose record is gone still marks its processes.
    const marked = markedProcesses(state);
    const live = marked.find((m) => m.owner && m.owner.pid !== self.pid && isRunning(m.owner));
    if (live?.owner) throw new StateBusyError(live.owner.pid, state);
    const dead = new Map<string, ProcessRef>();
    if (held?.record) dead.set(ownerToken(held.record.owner), held.record.owner);
    for (const m of marked) if (m.owner) dead.set(ownerToken(m.owner), m.owner);
    for (const owner of dead.values()) {
      const { found, left } = await stopLeftovers(state, owner);
      if (left.length > 0)
        throw new Error(`processes left by an earlier floodgate dev on ${state} did not stop: pid ${left.join(", ")}`);
      if (found > 0) log(`Stopped what an earlier floodgate dev (pid ${owner.pid}) left running on ${state}.`);
    }
    // Marked processes without an owner token cannot be told apart from someone else's: left alone.
    if (held) {
      // Removed only if it is still the record just read: another launcher may have claimed since.
      if (readRecord(state)?.text === held.text) unlinkSync(file);
    }
    const record: InstanceRecord = { owner: self, state, children: [] };
    try {
      writeFileSync(file, JSON.stringify(record, null, 2) + "\n", { flag: "wx" });
    } catch (err) {
      // Another launcher claimed it between our read and our write: look again.
      if ((err as NodeJS.ErrnoException).code === "EEXIST" && attempt < 3) continue;
      throw err;
    }
    return own(state, record, self);
  }
}

const WATCHDOG = join(dirname(fileURLToPath(import.meta.url)), "dev-watchdog.ts");

function own(state: string, record: InstanceRecord, self: ProcessRef): Instance {
  // Its own session: a terminal's hangup or a Ctrl-C to the launcher's group does not reach it.
  // The pipe's write end stays with the launcher alone (Node opens it close-on-exec), so it
  // closes exactly when the launcher exits.
  const watchdog = spawn(process.execPath, [WATCHDOG, state, ownerToken(self)], {
    detached: true,
    stdio: ["pipe", "ignore", "ignore"],
  });
  watchdog.unref();
  let released = false;
  return {
    env: { [STATE_ENV]: state, [OWNER_ENV]: ownerToken(self) },
    add(child, role, group) {
      if (child.pid === undefined) return;
      const start = startToken(child.pid);
      if (start === undefined) return;
      record.children.push({ pid: child.pid, start, role, group });
      writeRecord(state, record);
    },
    release() {
      if (released) return;
      released = true;
      const held = readRecord(state)?.record;
      if (held && held.owner.pid === self.pid && held.owner.start === self.start) unlinkSync(recordFile(state));
      watchdog.stdin?.end();
    },
  };
}
