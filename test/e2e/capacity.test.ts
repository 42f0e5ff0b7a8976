import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgent, waitExit } from "../../cli/dev.ts";
import { LOCAL_POOL_COMMAND } from "../../shared/pools.ts";
import { api, BIN, ROOT, startStack, type Stack } from "./stack.ts";

interface JobView {
  id: string;
  status: string;
  attempts: { agent: string; outcome: string; reason: string | null; started_at: string; ended_at: string | null }[];
  timings: { queued_s: number | null };
}

interface PoolsStatus {
  pools: {
    name: string;
    desired: number;
    connected: number;
    busy: number;
    calls: { desired: number; remove: string[]; ok: boolean | null; created_at: string }[];
  }[];
}

/** The model the pool's agents serve (the synthetic runner, one slot each). */
const MODEL = "burst";
const POOL = "burst";
/** A tier whose SLO the burst is measured against (s). */
const SLO_S = 60;
const SYNTH_ENV = { FLOODGATE_SYNTHETIC_MODELS: MODEL, FLOODGATE_SLOTS: "1" };

let stack: Stack;
let userKey: string;
let provisioner: ChildProcess | undefined;
let provisionerLog = "";
const others: ChildProcess[] = [];

async function admin<T = Record<string, unknown>>(method: string, path: string, body?: unknown) {
  return await api<T>(stack, method, path, body, stack.config.admin_key);
}

async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${provisionerLog.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function poolNow() {
  const s = await admin<PoolsStatus>("GET", "/v1/admin/pools");
  const p = s.body.pools.find((x) => x.name === POOL);
  if (!p) throw new Error("the pool is gone");
  return p;
}

async function submit(serviceMs: number): Promise<string> {
  const r = await api<{ id: string }>(
    stack,
    "POST",
    `/v1/models/${MODEL}/jobs`,
    { input: { service_ms: serviceMs } },
    userKey,
  );
  expect(r.status).toBe(202);
  return r.body.id;
}

/** A job as admins see it: its attempts name their agents. */
async function job(id: string): Promise<JobView> {
  return (await admin<JobView>("GET", `/v1/admin/jobs/${id}`)).body;
}

async function ended(ids: string[], ms: number): Promise<JobView[]> {
  return await until(`${ids.length} jobs to end`, ms, async () => {
    const views = await Promise.all(ids.map(job));
    return views.every((v) => ["succeeded", "failed", "cancelled", "expired"].includes(v.status)) ? views : undefined;
  });
}

/** What the pool's agents wrote about these jobs (from each agent's `agent.log`), to read when a test fails. */
function agentLines(jobs: readonly JobView[]): string[] {
  const root = join(stack.state, "provisioner", "pool");
  if (jobs.length === 0 || !existsSync(root)) return [];
  return readdirSync(root).flatMap((n) => {
    const file = join(root, n, "agent.log");
    if (!existsSync(file)) return [];
    return readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => jobs.some((j) => l.includes(j.id)))
      .map((l) => `pool-${n}: ${l}`);
  });
}

async function agentToken(pool: string): Promise<string> {
  const r = await admin<{ token: string }>("POST", "/v1/admin/agent-tokens", { pool, models: [MODEL], ttl_s: 3600 });
  if (r.status !== 201) throw new Error(`minting an agent token failed: ${JSON.stringify(r.body)}`);
  return r.body.token;
}

beforeAll(async () => {
  stack = await startStack({ agents: 0 });
  const put = await admin("PUT", `/v1/admin/models/${MODEL}`, {
    input_schema: { type: "object" },
    max_attempts: 2,
    expected_runtime_s: 3,
  });
  if (put.status !== 201) throw new Error(`registering ${MODEL} failed: ${JSON.stringify(put.body)}`);
  const tiers = await admin<{ tiers: Record<string, unknown>[] }>("GET", "/v1/admin/tiers");
  const rush = { name: "rush", slo_s: SLO_S, admission_k: 1000, rate_limit_per_min: 60_000 };
  const tiered = await admin("PUT", "/v1/admin/tiers", { tiers: [...tiers.body.tiers, rush] });
  if (tiered.status !== 200) throw new Error(`adding the rush tier failed: ${JSON.stringify(tiered.body)}`);
  const acct = await admin<{ api_key: string }>("POST", "/v1/admin/accounts", { name: "launch", tier: "rush" });
  userKey = acct.body.api_key;

  const applied = await admin("PUT", "/v1/admin/pools", {
    file: {
      pools: {
        [POOL]: {
          models: [MODEL],
          min: 0,
          max: 3,
          command: LOCAL_POOL_COMMAND,
          step_up: 3,
          step_down: 1,
          burst_window_s: 2,
          window_s: 16,
          cooldown_s: 8,
          startup_s: 10,
        },
      },
    },
  });
  if (applied.status !== 200) throw new Error(`applying the pool failed: ${JSON.stringify(applied.body)}`);
  const prov = await admin<{ token: string }>("POST", "/v1/admin/provisioner-tokens", { pools: [POOL] });
  provisioner = spawn(
    process.execPath,
    [
      BIN,
      "provisioner",
      "--url",
      stack.config.url,
      "--token",
      prov.body.token,
      "--agent-token",
      await agentToken(POOL),
      "--agent-runner",
      "synthetic",
      "--dir",
      join(stack.state, "provisioner"),
    ],
    { cwd: ROOT, env: { ...process.env, ...SYNTH_ENV }, stdio: ["ignore", "pipe", "pipe"] },
  );
  provisioner.stdout?.on("data", (d: Buffer) => (provisionerLog += d.toString()));
  provisioner.stderr?.on("data", (d: Buffer) => (provisionerLog += d.toString()));
});

afterAll(async () => {
  // The provisioner stops the local pool's agents it started.
  if (provisioner) {
    provisioner.kill("SIGTERM");
    await waitExit(provisioner, 20_000);
  }
  for (const a of others) a.kill("SIGKILL");
  await Promise.all(others.map((a) => waitExit(a, 5000)));
  await stack?.stop("SIGTERM");
});

describe("capacity end to end, with the local provisioner", () => {
  it("a burst grows the pool and every job starts within its SLO; idleness shrinks it to zero without stopping a busy agent", async () => {
    expect((await poolNow()).desired).toBe(0);
    // A long job, picked first: it still runs when the pool shrinks after the burst.
    const long = await submit(60_000);
    const burst = await Promise.all(Array.from({ length: 24 }, () => submit(1000)));
    await until("the pool to grow past one agent", 60_000, async () =>
      (await poolNow()).connected >= 2 ? true : undefined,
    );
    const views = await ended(burst, 120_000);
    const failed = views.filter((v) => v.status !== "succeeded");
    expect({ failed, said: agentLines(failed) }, "every burst job succeeds").toEqual({ failed: [], said: [] });
    for (const v of views) expect(v.timings.queued_s).toBeLessThanOrEqual(SLO_S);
    // The pool shrank while the long job ran, and the agent running it was not stopped: the job
    // ran once, to the end.
    const [longView] = await ended([long], 150_000);
    expect({ long: longView, said: agentLines(longView?.status === "succeeded" ? [] : [longView!]) }).toMatchObject({
      long: { status: "succeeded" },
      said: [],
    });
    expect(longView?.attempts).toHaveLength(1);
    const ran = longView?.attempts[0];
    const during = await until("a shrink while the long job ran", 60_000, async () => {
      const p = await poolNow();
      const from = Date.parse(ran?.started_at ?? "");
      const to = Date.parse(ran?.ended_at ?? "");
      return p.calls.some(
        (c) => c.remove.length > 0 && Date.parse(c.created_at) >= from && Date.parse(c.created_at) <= to,
      )
        ? true
        : undefined;
    });
    expect(during).toBe(true);
    const idle = await until("the pool to shrink to zero", 90_000, async () => {
      const p = await poolNow();
      return p.desired === 0 && p.connected === 0 ? p : undefined;
    });
    expect(idle.calls.every((c) => c.ok !== false)).toBe(true);
  }, 300_000);

  it("a reclaimed preemptible agent's job goes back without spending an attempt and finishes on another agent", async () => {
    // The pool starts empty, so the lent agent is the only one when the job comes.
    await until("the pool to be empty", 120_000, async () => ((await poolNow()).connected === 0 ? true : undefined));
    const lent = startAgent({
      url: stack.config.url,
      token: await agentToken("lent"),
      state: stack.state,
      index: 90,
      runner: "synthetic",
      extraArgs: ["--preemptible"],
      env: { ...process.env, ...SYNTH_ENV },
      stdio: "pipe",
    });
    others.push(lent);
    const lentId = await until("the lent agent to connect", 30_000, async () => {
      const r = await admin<{ agents: { agent_id: string; preemptible?: boolean }[] }>("GET", "/v1/admin/agents");
      return r.body.agents.find((a) => a.preemptible === true)?.agent_id;
    });
    const id = await submit(6000);
    await until("the job to run on the lent agent", 30_000, async () => {
      const v = await job(id);
      return v.status === "running" && v.attempts[0]?.agent === lentId ? true : undefined;
    });
    const r = await admin<{ released: number }>("POST", `/v1/admin/agents/${lentId}/reclaim`);
    expect(r.status).toBe(200);
    expect(r.body.released).toBe(1);
    const [done] = await ended([id], 90_000);
    expect(done?.status).toBe("succeeded");
    expect(done?.attempts).toMatchObject([
      { agent: lentId, outcome: "requeued", reason: "preempted" },
      { outcome: "succeeded" },
    ]);
    expect(done?.attempts[1]?.agent).not.toBe(lentId);
    // The reclaimed agent stops by itself.
    await until("the reclaimed agent to exit", 20_000, async () => (lent.exitCode !== null ? true : undefined));
    expect(lent.exitCode).toBe(0);
  }, 240_000);
});
