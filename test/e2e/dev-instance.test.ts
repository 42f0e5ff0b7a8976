/**
 * `floodgate dev` killed hard: nothing it started may outlive it, and the next start on the same
 * state must work. Processes are read from /proc (Linux), independently of how the launcher
 * tracks them.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { api, BIN, freePort, ROOT, startStack, type Stack } from "./stack.ts";

interface Proc {
  pid: number;
  ppid: number;
  cmdline: string;
}

/** Every running process (zombies excluded: they are gone, only not yet reaped). */
function processes(): Proc[] {
  const out: Proc[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] === "Z" || fields[0] === "X") continue;
      const cmdline = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0").join(" ");
      out.push({ pid: Number(d), ppid: Number(fields[1]), cmdline });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** `root` and everything it started, and their children, and so on. */
function tree(root: number): Proc[] {
  const all = processes();
  const found = all.filter((p) => p.pid === root);
  for (let i = 0; i < found.length; i++) found.push(...all.filter((p) => p.ppid === found[i]!.pid));
  return found;
}

/** The processes of `state`: those whose command line names it, and those in `also` still running. */
function ofState(state: string, also: Proc[] = []): Proc[] {
  const all = processes();
  return all.filter((p) => p.cmdline.includes(state) || also.some((a) => a.pid === p.pid && a.cmdline === p.cmdline));
}

async function until<T>(probe: () => T | undefined, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = probe();
    if (got !== undefined) return got;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function healthy(url: string): Promise<boolean> {
  try {
    return (await fetch(`${url}/healthz`)).ok;
  } catch {
    return false;
  }
}

describe.runIf(process.platform === "linux")("floodgate dev, one per state", () => {
  const started: Stack[] = [];
  afterAll(async () => {
    for (const s of started) await s.stop("SIGTERM");
  });

  it("killed with SIGKILL it leaves no wrangler, workerd or agent of its state running, and the next start on that state answers with the same keys", async () => {
    const port = await freePort();
    const first = await startStack({ port, agents: 1 });
    started.push(first);
    const before = tree(first.child.pid!);
    // What must go: wrangler, the workerd it runs in its own process group, and the agent.
    expect(before.some((p) => p.cmdline.includes("wrangler") && p.cmdline.includes(first.state))).toBe(true);
    expect(before.some((p) => /\bworkerd\b/.test(p.cmdline))).toBe(true);
    expect(before.some((p) => p.cmdline.includes(" agent ") && p.cmdline.includes(first.state))).toBe(true);

    expect(await first.stop("SIGKILL")).toBeNull();
    const left = await until(
      () => (ofState(first.state, before).length === 0 ? [] : undefined),
      30_000,
      "the killed launcher's processes to stop",
    ).catch((err: Error) => {
      throw new Error(
        `${err.message}; still running:\n${ofState(first.state, before)
          .map((p) => p.cmdline)
          .join("\n")}`,
      );
    });
    expect(left).toEqual([]);
    expect(await healthy(first.config.url)).toBe(false);

    const second = await startStack({ port, state: first.state, agents: 1 });
    started.push(second);
    expect(await healthy(second.config.url)).toBe(true);
    expect(second.config).toEqual(first.config);
    const jobs = await api(second, "GET", "/v1/jobs?limit=1");
    expect(jobs.status).toBe(200);
    const admin = await api(second, "GET", "/v1/admin/models", undefined, first.config.admin_key);
    expect(admin.status).toBe(200);
    expect(await second.stop("SIGTERM")).toBe(0);
  });

  it("when the launcher and its watchdog are both killed, the next start on the state stops what they left and starts", async () => {
    const port = await freePort();
    const first = await startStack({ port, agents: 1 });
    started.push(first);
    const before = tree(first.child.pid!);
    const watchdog = processes().find((p) => p.cmdline.includes("dev-watchdog.ts") && p.cmdline.includes(first.state));
    expect(watchdog).toBeDefined();
    process.kill(watchdog!.pid, "SIGKILL");
    expect(await first.stop("SIGKILL")).toBeNull();
    // Orphans now: wrangler, workerd and the agent, with nothing left to stop them.
    const orphans = before.filter((p) => p.pid !== first.child.pid);
    expect(ofState(first.state, orphans).length).toBeGreaterThan(0);

    const second = await startStack({ port, state: first.state, agents: 1 });
    started.push(second);
    expect(second.output()).toContain(`Stopped what an earlier floodgate dev (pid ${first.child.pid}) left running`);
    const still = processes().filter((p) => orphans.some((o) => o.pid === p.pid && o.cmdline === p.cmdline));
    expect(still).toEqual([]);
    expect(await healthy(second.config.url)).toBe(true);
    expect(second.config).toEqual(first.config);
    expect((await api(second, "GET", "/v1/jobs?limit=1")).status).toBe(200);
    expect(await second.stop("SIGTERM")).toBe(0);
  });

  it("a second floodgate dev on a state a live one owns is refused with the owner's pid and leaves the first serving", async () => {
    const first = await startStack({ agents: 1 });
    started.push(first);
    const before = tree(first.child.pid!).map((p) => p.pid);
    const record = readFileSync(`${first.state}/dev.json`, "utf8");

    const t0 = Date.now();
    const r = spawnSync(
      process.execPath,
      [BIN, "dev", "--port", String(await freePort()), "--state", first.state, "--agents", "1"],
      { cwd: ROOT, encoding: "utf8", timeout: 60_000 },
    );
    expect(r.status).toBe(1);
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(r.stderr).toContain(`${first.state} is in use by a running floodgate dev (pid ${first.child.pid})`);
    expect(r.stderr).toContain(`kill ${first.child.pid}`);
    expect(r.stderr).toContain("--state");

    // Every process of the first is still there (one may have started a short-lived helper meanwhile).
    const after = tree(first.child.pid!).map((p) => p.pid);
    expect(before.filter((pid) => !after.includes(pid))).toEqual([]);
    expect(readFileSync(`${first.state}/dev.json`, "utf8")).toBe(record);
    expect(await healthy(first.config.url)).toBe(true);
    expect((await api(first, "GET", "/v1/jobs?limit=1")).status).toBe(200);
    expect(await first.stop("SIGINT")).toBe(0);
  });
});
