import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  claimState,
  isRunning,
  OWNER_ENV,
  recordFile,
  startToken,
  STATE_ENV,
  StateBusyError,
  stopLeftovers,
  type InstanceRecord,
  type ProcessRef,
} from "./dev-instance.ts";

const started: ChildProcess[] = [];
/** Grandchildren these tests caused, stopped at the end whatever the outcome. */
const strays: ProcessRef[] = [];
const dirs: string[] = [];
afterAll(() => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const r of strays) if (isRunning(r)) process.kill(r.pid, "SIGKILL");
  for (const d of dirs) rmSync(d, { recursive: true, force: true, maxRetries: 5 });
});

function tempState(): string {
  const d = realpathSync(mkdtempSync(join(tmpdir(), "floodgate-instance-")));
  dirs.push(d);
  return d;
}

/** A real process that idles until signalled, with `env` added to its environment. */
function idler(env: Record<string, string> = {}): { child: ChildProcess; ref: ProcessRef } {
  const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], {
    stdio: "ignore",
    env: { ...process.env, ...env },
  });
  started.push(child);
  const start = startToken(child.pid!);
  if (start === undefined) throw new Error("the idler did not start");
  return { child, ref: { pid: child.pid!, start } };
}

async function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise((r) => child.once("exit", r));
}

/** A launcher that is gone: its ref names no running process. */
async function deadLauncher(): Promise<ProcessRef> {
  const { child, ref } = idler();
  child.kill("SIGKILL");
  await exited(child);
  return ref;
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function writeRecord(state: string, record: InstanceRecord): void {
  writeFileSync(recordFile(state), JSON.stringify(record));
}

describe("dev instance", () => {
  it("a process is named by its pid and start time: a running one has a start time, a gone one none", async () => {
    const { child, ref } = idler();
    expect(isRunning(ref)).toBe(true);
    expect(isRunning({ pid: ref.pid, start: `${ref.start}0` })).toBe(false);
    child.kill("SIGKILL");
    await exited(child);
    expect(startToken(ref.pid)).toBeUndefined();
    expect(isRunning(ref)).toBe(false);
  });

  it("a recorded pid whose start time is not the recorded one is never signalled", async () => {
    const state = tempState();
    const owner = await deadLauncher();
    const other = idler();
    writeRecord(state, {
      owner,
      state,
      children: [{ pid: other.ref.pid, start: `${other.ref.start}9`, role: "agent", group: false }],
    });
    expect(await stopLeftovers(state, owner)).toEqual({ found: 0, left: [] });
    expect(isRunning(other.ref)).toBe(true);
  });

  it("a dead launcher's recorded children are stopped, and no one else's", async () => {
    const state = tempState();
    const owner = await deadLauncher();
    const child = idler();
    const bystander = idler();
    writeRecord(state, { owner, state, children: [{ ...child.ref, role: "agent", group: false }] });
    expect(await stopLeftovers(state, owner)).toEqual({ found: 1, left: [] });
    expect(isRunning(child.ref)).toBe(false);
    expect(isRunning(bystander.ref)).toBe(true);
  });

  it.runIf(process.platform === "linux")(
    "processes marked with a dead launcher of the state are stopped even when no record names them",
    async () => {
      const state = tempState();
      const owner = await deadLauncher();
      const marked = idler({ [STATE_ENV]: state, [OWNER_ENV]: `${owner.pid}:${owner.start}` });
      const otherState = idler({ [STATE_ENV]: `${state}-other`, [OWNER_ENV]: `${owner.pid}:${owner.start}` });
      expect(await stopLeftovers(state, owner)).toEqual({ found: 1, left: [] });
      expect(isRunning(marked.ref)).toBe(false);
      expect(isRunning(otherState.ref)).toBe(true);
    },
  );

  it("a state a live launcher owns is refused with that launcher's pid, and its record is left as it was", async () => {
    const state = tempState();
    const live = idler();
    const child = idler();
    writeRecord(state, { owner: live.ref, state, children: [{ ...child.ref, role: "edge", group: false }] });
    const before = readFileSync(recordFile(state), "utf8");
    const err = await claimState(state, () => {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateBusyError);
    expect((err as StateBusyError).pid).toBe(live.ref.pid);
    expect((err as Error).message).toContain(`kill ${live.ref.pid}`);
    expect((err as Error).message).toContain("--state");
    expect(readFileSync(recordFile(state), "utf8")).toBe(before);
    expect(isRunning(live.ref)).toBe(true);
    expect(isRunning(child.ref)).toBe(true);
  });

  it("claiming a state a dead launcher left stops what it left, records the new owner, and a clean release forgets it", async () => {
    const state = tempState();
    const owner = await deadLauncher();
    const child = idler();
    writeRecord(state, { owner, state, children: [{ ...child.ref, role: "agent", group: false }] });
    const lines: string[] = [];
    const instance = await claimState(state, (l) => lines.push(l));
    expect(isRunning(child.ref)).toBe(false);
    expect(lines.join("\n")).toContain(`pid ${owner.pid}`);
    const record = JSON.parse(readFileSync(recordFile(state), "utf8")) as InstanceRecord;
    expect(record.owner.pid).toBe(process.pid);
    expect(record.children).toEqual([]);
    const mine = idler(instance.env);
    instance.add(mine.child, "agent", false);
    expect((JSON.parse(readFileSync(recordFile(state), "utf8")) as InstanceRecord).children).toEqual([
      { ...mine.ref, role: "agent", group: false },
    ]);
    mine.child.kill("SIGTERM");
    await exited(mine.child);
    instance.release();
    expect(existsSync(recordFile(state))).toBe(false);
  });

  it("when the launcher is killed with SIGKILL, its watchdog stops every process it started", async () => {
    const state = tempState();
    const module = resolve(import.meta.dirname, "dev-instance.ts");
    // A launcher in miniature: claims the state, starts a child in its own process group (as
    // wrangler is started) and one in the launcher's group (as agents are), records both, then idles.
    const launcher = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `
        import { spawn } from "node:child_process";
        import { claimState } from ${JSON.stringify(module)};
        const instance = await claimState(${JSON.stringify(state)}, () => {});
        const env = { ...process.env, ...instance.env };
        const idle = ["-e", "setInterval(() => {}, 1000)"];
        const edge = spawn(process.execPath, idle, { detached: true, stdio: "ignore", env });
        instance.add(edge, "edge", true);
        const agent = spawn(process.execPath, idle, { stdio: "ignore", env });
        instance.add(agent, "agent", false);
        process.stdout.write(JSON.stringify([edge.pid, agent.pid]) + "\\n");
        setInterval(() => {}, 1000);
        `,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    started.push(launcher);
    let out = "";
    launcher.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    await until(() => out.includes("\n"), 20_000, "the launcher to start its children");
    const pids = JSON.parse(out) as number[];
    const refs = pids.map((pid) => ({ pid, start: startToken(pid)! }));
    strays.push(...refs);
    expect(refs.every(isRunning)).toBe(true);
    launcher.kill("SIGKILL");
    await until(() => !refs.some(isRunning), 20_000, "the launcher's children to be stopped");
  }, 60_000);
});
