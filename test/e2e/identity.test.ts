/**
 * Agent identity on a real stack with real agent processes: several agents started from one
 * directory with default flags, a machine image cloned with an agent's identity, and a process
 * whose socket is cut reconnecting as itself.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { cpSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitExit } from "../../cli/dev.ts";
import { openLink } from "../chaos/proxy.ts";
import { api, BIN, startStack, type Stack } from "./stack.ts";

interface JobView {
  id: string;
  status: string;
  attempts: { agent: string; epoch: number; outcome: string }[];
}

const MODEL = "ident";
let stack: Stack;
const procs: ChildProcess[] = [];

/** `floodgate agent` with default flags (no --cache-dir, no --name) in `cwd`, its output collected. */
function agent(cwd: string, token: string, url = stack.config.url): { child: ChildProcess; out: () => string } {
  let out = "";
  const child = spawn(process.execPath, [BIN, "agent", "--url", url, "--token", token, "--runner", "synthetic"], {
    cwd,
    env: { ...process.env, FLOODGATE_SYNTHETIC_MODELS: MODEL },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  procs.push(child);
  return { child, out: () => out };
}

async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function mintToken(): Promise<string> {
  const r = await api<{ token: string }>(
    stack,
    "POST",
    "/v1/admin/agent-tokens",
    { pool: "e2e", models: [MODEL], ttl_s: 3600 },
    stack.config.admin_key,
  );
  return r.body.token;
}

async function submit(n: number, input: Record<string, unknown>): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await api<{ id: string }>(stack, "POST", `/v1/models/${MODEL}/jobs`, { input });
    expect(r.status).toBe(202);
    ids.push(r.body.id);
  }
  return ids;
}

/** A job as admins see it: its attempts name the agents that ran them. */
async function adminView(id: string): Promise<JobView> {
  return (await api<JobView>(stack, "GET", `/v1/admin/jobs/${id}`, undefined, stack.config.admin_key)).body;
}

async function terminal(ids: string[], ms: number): Promise<JobView[]> {
  return await until(`${ids.length} jobs to end`, ms, async () => {
    const views = await Promise.all(ids.map(adminView));
    return views.every((v) => ["succeeded", "failed", "cancelled", "expired"].includes(v.status)) ? views : undefined;
  });
}

/** The agent id an agent process logged at start. */
async function idOf(a: { out: () => string }): Promise<string> {
  return await until("the agent to say its id", 30_000, async () => /agent id (agt_[0-9a-z]{16})/.exec(a.out())?.[1]);
}

beforeAll(async () => {
  stack = await startStack({ agents: 0 });
  const put = await api(
    stack,
    "PUT",
    `/v1/admin/models/${MODEL}`,
    { input_schema: { type: "object" }, max_attempts: 3, expected_runtime_s: 1 },
    stack.config.admin_key,
  );
  if (put.status !== 201) throw new Error(`registering ${MODEL} failed: ${JSON.stringify(put.body)}`);
});

afterAll(async () => {
  for (const p of procs) p.kill("SIGKILL");
  await Promise.all(procs.map((p) => waitExit(p, 5000)));
  await stack?.stop("SIGTERM");
});

describe("agent identity end to end", () => {
  it("three agents from one directory with default flags get distinct ids; kill -9 of one while 30 jobs run: all 30 succeed, each exactly once", async () => {
    const cwd = mkdtempSync(join(tmpdir(), "floodgate-host-"));
    const t = await mintToken();
    const three = [agent(cwd, t), agent(cwd, t), agent(cwd, t)];
    const ids = await Promise.all(three.map(idOf));
    expect(new Set(ids).size).toBe(3);
    await until("all three to connect", 30_000, async () =>
      three.every((a) => a.out().includes("connected")) ? true : undefined,
    );
    const jobs = await submit(30, { service_ms: 600, steps: 6 });
    await until("the victim to hold work", 30_000, async () => {
      const views = await Promise.all(jobs.map(adminView));
      return views.some((v) => v.status === "running" && v.attempts.at(-1)?.agent === ids[0]) ? true : undefined;
    });
    three[0]?.child.kill("SIGKILL");
    const views = await terminal(jobs, 120_000);
    // Any job that did not succeed is shown whole, with its attempts and error.
    expect(views.filter((v) => v.status !== "succeeded")).toEqual([]);
    expect(views).toHaveLength(30);
    for (const v of views) expect(v.attempts.filter((a) => a.outcome === "succeeded")).toHaveLength(1);
    // The killed agent's restart takes its own identity back.
    const again = agent(cwd, t);
    expect(await idOf(again)).toBe(ids[0]);
    for (const a of [...three, again]) a.child.kill("SIGTERM");
    await Promise.all([...three, again].map((a) => waitExit(a.child, 15_000)));
  }, 240_000);

  it("a machine image cloned with an agent's identity: the second is refused as in use and takes a fresh id, both serve", async () => {
    const original = mkdtempSync(join(tmpdir(), "floodgate-image-"));
    const t = await mintToken();
    const first = agent(original, t);
    const firstId = await idOf(first);
    await until("the first to connect", 30_000, async () => (first.out().includes("connected") ? true : undefined));
    // The image: the first host's directory, identity included, copied to a second host.
    const clone = mkdtempSync(join(tmpdir(), "floodgate-clone-"));
    cpSync(join(original, ".floodgate"), join(clone, ".floodgate"), {
      recursive: true,
      filter: (p) => !p.endsWith("owner"),
    });
    const second = agent(clone, t);
    expect(await idOf(second)).toBe(firstId);
    const fresh = await until("the clone to take a fresh id", 30_000, async () => {
      const m = /in use by another live agent process.*reconnecting as (agt_[0-9a-z]{16})/.exec(second.out());
      return m?.[1];
    });
    expect(fresh).not.toBe(firstId);
    await until("the clone to connect", 30_000, async () => (second.out().includes("connected") ? true : undefined));
    const jobs = await submit(8, { service_ms: 300, steps: 3 });
    const views = await terminal(jobs, 60_000);
    expect(views.map((v) => v.status)).toEqual(jobs.map(() => "succeeded"));
    const served = new Set(views.map((v) => v.attempts.at(-1)?.agent));
    for (const id of served) expect([firstId, fresh]).toContain(id);
    for (const a of [first, second]) a.child.kill("SIGTERM");
    await Promise.all([first, second].map((a) => waitExit(a.child, 15_000)));
  }, 180_000);

  it("an agent whose connection is cut mid-job reconnects as itself and finishes the job in the same attempt", async () => {
    const cwd = mkdtempSync(join(tmpdir(), "floodgate-host-"));
    const link = await openLink(Number(new URL(stack.config.url).port));
    try {
      const t = await mintToken();
      const a = agent(cwd, t, link.url);
      await until("the agent to connect", 30_000, async () => (a.out().includes("connected") ? true : undefined));
      const [job] = await submit(1, { service_ms: 4000, steps: 20 });
      await until("the job to run", 30_000, async () =>
        (await api<JobView>(stack, "GET", `/v1/jobs/${job}`)).body.status === "running" ? true : undefined,
      );
      expect(link.cut()).toBeGreaterThan(0);
      const [view] = await terminal([job as string], 60_000);
      expect(view?.status).toBe("succeeded");
      expect(view?.attempts).toHaveLength(1);
      expect(a.out()).toMatch(/connection lost/);
      a.child.kill("SIGTERM");
      await waitExit(a.child, 15_000);
    } finally {
      await link.close();
    }
  }, 120_000);
});
