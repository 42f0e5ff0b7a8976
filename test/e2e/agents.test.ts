import type { ChildProcess } from "node:child_process";
import { decode as decodePng } from "fast-png";
import { GifReader } from "omggif";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgent, waitExit } from "../../cli/dev.ts";
import { api, startStack, type Stack } from "./stack.ts";

interface JobView {
  id: string;
  status: string;
  phase: string;
  attempts: { agent: string; epoch: number; outcome: string; reason: string | null; ended_at: string | null }[];
  outputs: { name: string; url: string; size: number; content_type: string }[] | null;
  error: { code: string } | null;
}

const SYNTH = "synth";
let stack: Stack;
const agents: ChildProcess[] = [];
let index = 0;

function agent(
  agentToken: string,
  opts: {
    runner?: string;
    env?: NodeJS.ProcessEnv;
    output?: (s: string) => void;
    index?: number;
    extraArgs?: string[];
  } = {},
): ChildProcess {
  if (opts.index === undefined) index += 1;
  const child = startAgent({
    url: stack.config.url,
    token: agentToken,
    state: stack.state,
    index: opts.index ?? index,
    runner: opts.runner ?? "synthetic",
    extraArgs: opts.extraArgs,
    env: { ...process.env, FLOODGATE_SYNTHETIC_MODELS: SYNTH, ...opts.env },
    stdio: "pipe",
  });
  child.stdout?.on("data", (d: Buffer) => opts.output?.(d.toString()));
  child.stderr?.on("data", (d: Buffer) => opts.output?.(d.toString()));
  agents.push(child);
  return child;
}

async function token(models: string[]): Promise<{ id: string; token: string }> {
  const r = await api<{ id: string; token: string }>(
    stack,
    "POST",
    "/v1/admin/agent-tokens",
    { pool: "e2e", models, ttl_s: 3600 },
    stack.config.admin_key,
  );
  return r.body;
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

async function terminal(ids: string[], ms: number): Promise<JobView[]> {
  return await until(`${ids.length} jobs to end`, ms, async () => {
    const views = await Promise.all(ids.map(async (id) => (await api<JobView>(stack, "GET", `/v1/jobs/${id}`)).body));
    return views.every((v) => ["succeeded", "failed", "cancelled", "expired"].includes(v.status)) ? views : undefined;
  });
}

beforeAll(async () => {
  stack = await startStack({ agents: 0 });
  const put = await api(
    stack,
    "PUT",
    `/v1/admin/models/${SYNTH}`,
    { input_schema: { type: "object" }, max_attempts: 2, expected_runtime_s: 1 },
    stack.config.admin_key,
  );
  if (put.status !== 201) throw new Error(`registering ${SYNTH} failed: ${JSON.stringify(put.body)}`);
});

afterAll(async () => {
  for (const a of agents) a.kill("SIGKILL");
  await Promise.all(agents.map((a) => waitExit(a, 5000)));
  await stack?.stop("SIGTERM");
});

describe("agents end to end", () => {
  it("a demo job runs on a real agent; its outputs download through signed URLs and decode as images", async () => {
    agent(stack.config.agent_token, { runner: "demo" });
    const sub = await api<{ id: string }>(stack, "POST", "/v1/models/demo/jobs", {
      input: { prompt: "a red fox", seed: 3, frames: 8, size: 64 },
    });
    expect(sub.status).toBe(202);
    const [job] = await terminal([sub.body.id], 60_000);
    expect(job?.status).toBe("succeeded");
    const gif = job?.outputs?.find((o) => o.name === "animation.gif");
    const png = job?.outputs?.find((o) => o.name === "last.png");
    if (!gif || !png) throw new Error("missing outputs");
    const gifBytes = new Uint8Array(await (await fetch(gif.url)).arrayBuffer());
    const reader = new GifReader(gifBytes);
    expect([reader.width, reader.height, reader.numFrames()]).toEqual([64, 64, 8]);
    const image = decodePng(new Uint8Array(await (await fetch(png.url)).arrayBuffer()));
    expect([image.width, image.height]).toEqual([64, 64]);
    expect((await fetch(`${gif.url}0`)).status).toBe(403);
  });

  it("an agent restarted with the same id after kill -9 gets its old leases requeued at its hello, not at their deadline", async () => {
    const t = await token([SYNTH]);
    let out = "";
    const first = agent(t.token, { output: (s) => (out += s) });
    const same = index;
    await until("the agent to connect", 20_000, async () => (out.includes("connected") ? true : undefined));
    const job = await api<{ id: string }>(stack, "POST", `/v1/models/${SYNTH}/jobs`, {
      input: { steps: 50, service_ms: 60_000 },
    });
    await until("the job to run", 20_000, async () =>
      (await api<JobView>(stack, "GET", `/v1/jobs/${job.body.id}`)).body.phase === "sampling" ? true : undefined,
    );
    first.kill("SIGKILL");
    await waitExit(first, 5_000);
    const killedAt = Date.now();
    let again = "";
    const second = agent(t.token, { index: same, output: (s) => (again += s) });
    const helloAt = await until("the agent to connect again", 20_000, async () =>
      again.includes("connected") ? Date.now() : undefined,
    );
    const view = await until("the lost lease to go back", 20_000, async () => {
      const v = (await api<JobView>(stack, "GET", `/v1/jobs/${job.body.id}`)).body;
      return v.attempts[0]?.ended_at ? v : undefined;
    });
    expect(view.attempts[0]).toMatchObject({ outcome: "lease_expired", reason: "worker_lost" });
    // The hello gave it back at once, not the lease's deadline (30 s); an agent back within the
    // reconnect grace (10 s) has it back before the grace runs out.
    const ended = Date.parse(view.attempts[0]!.ended_at!);
    expect(ended - helloAt).toBeLessThan(3_000);
    expect(ended - killedAt).toBeLessThan(Math.max(10_000, helloAt - killedAt + 1_000));
    expect((await api(stack, "POST", `/v1/jobs/${job.body.id}/cancel`)).status).toBe(200);
    second.kill("SIGTERM");
    await waitExit(second, 15_000);
  }, 60_000);

  it("a runner crash sends the job back with runner_crashed, the agent starts a new runner, and other jobs go on", async () => {
    const t = await token([SYNTH]);
    const p = agent(t.token);
    const poison = await api<{ id: string }>(stack, "POST", `/v1/models/${SYNTH}/jobs`, {
      input: { fault: "crash", steps: 2, service_ms: 50 },
    });
    const fine = await api<{ id: string }>(stack, "POST", `/v1/models/${SYNTH}/jobs`, {
      input: { steps: 2, service_ms: 50 },
    });
    const [bad, good] = await terminal([poison.body.id, fine.body.id], 60_000);
    p.kill("SIGTERM");
    expect(bad?.status).toBe("failed");
    expect(bad?.error?.code).toBe("runner_crashed");
    expect(bad?.attempts).toHaveLength(2);
    expect(good?.status).toBe("succeeded");
    await waitExit(p, 15_000);
  }, 90_000);

  it("cancel reaches the runner, which stops at its next step; the job ends cancelled and the agent takes new work", async () => {
    const t = await token([SYNTH]);
    const p = agent(t.token, { env: { FLOODGATE_SYNTHETIC_MODELS: SYNTH } });
    const long = await api<{ id: string }>(stack, "POST", `/v1/models/${SYNTH}/jobs`, {
      input: { steps: 100, service_ms: 20_000 },
    });
    await until("the long job to run", 20_000, async () =>
      (await api<JobView>(stack, "GET", `/v1/jobs/${long.body.id}`)).body.phase === "sampling" ? true : undefined,
    );
    const c = await api<JobView>(stack, "POST", `/v1/jobs/${long.body.id}/cancel`);
    expect(c.body.status).toBe("cancelled");
    const next = await api<{ id: string }>(stack, "POST", `/v1/models/${SYNTH}/jobs`, {
      input: { steps: 2, service_ms: 50 },
    });
    const [done] = await terminal([next.body.id], 20_000);
    expect(done?.status).toBe("succeeded");
    p.kill("SIGTERM");
    await waitExit(p, 15_000);
  }, 60_000);

  it("a runner hung inside a job loses it at run_timeout_s (the job fails run_timeout) and is restarted, freeing its slot", async () => {
    const HANG = "synth-hang";
    const put = await api(
      stack,
      "PUT",
      `/v1/admin/models/${HANG}`,
      { input_schema: { type: "object" }, max_attempts: 1, run_timeout_s: 2, expected_runtime_s: 1 },
      stack.config.admin_key,
    );
    expect(put.status).toBe(201);
    const t = await token([SYNTH, HANG]);
    let out = "";
    // One slot and no prefetch: the next job can only run once the hung one's slot is free.
    const p = agent(t.token, {
      env: { FLOODGATE_SYNTHETIC_MODELS: `${SYNTH},${HANG}` },
      extraArgs: ["--slots", "1", "--prefetch", "0"],
      output: (s) => (out += s),
    });
    const hung = await api<{ id: string }>(stack, "POST", `/v1/models/${HANG}/jobs`, {
      input: { fault: "stall", steps: 2, service_ms: 50 },
    });
    expect(hung.status).toBe(202);
    const [timedOut] = await terminal([hung.body.id], 20_000);
    expect(timedOut?.status).toBe("failed");
    expect(timedOut?.error?.code).toBe("run_timeout");
    expect(timedOut?.attempts.map((a) => a.reason)).toEqual(["run_timeout"]);
    const next = await api<{ id: string }>(stack, "POST", `/v1/models/${SYNTH}/jobs`, {
      input: { steps: 2, service_ms: 50 },
    });
    const [done] = await terminal([next.body.id], 30_000);
    expect(done?.status).toBe("succeeded");
    expect(out).toContain("restarting the runner");
    p.kill("SIGTERM");
    await waitExit(p, 15_000);
  }, 90_000);

  it("revoking its token disconnects a live agent within one heartbeat; it exits and its jobs go back", async () => {
    const t = await token([SYNTH]);
    let out = "";
    const p = agent(t.token, { output: (s) => (out += s) });
    await until("the agent to connect", 20_000, async () => (out.includes("connected") ? true : undefined));
    const exited = new Promise<number | null>((res) => p.once("exit", (code) => res(code)));
    const started = Date.now();
    expect(
      (await api(stack, "DELETE", `/v1/admin/agent-tokens/${t.id}`, undefined, stack.config.admin_key)).status,
    ).toBe(204);
    expect(await exited).toBe(3);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(out).toContain("revoked");
  }, 30_000);

  it("SIGTERM drains: the running job finishes, then the agent exits 0", async () => {
    const t = await token([SYNTH]);
    let out = "";
    const p = agent(t.token, { output: (s) => (out += s) });
    await until("the agent to connect", 20_000, async () => (out.includes("connected") ? true : undefined));
    const job = await api<{ id: string }>(stack, "POST", `/v1/models/${SYNTH}/jobs`, {
      input: { steps: 10, service_ms: 2_000 },
    });
    await until("the job to run", 20_000, async () =>
      (await api<JobView>(stack, "GET", `/v1/jobs/${job.body.id}`)).body.phase === "sampling" ? true : undefined,
    );
    const exited = new Promise<number | null>((res) => p.once("exit", (code) => res(code)));
    p.kill("SIGTERM");
    expect(await exited).toBe(0);
    const [view] = await terminal([job.body.id], 5_000);
    expect(view?.status).toBe("succeeded");
  }, 40_000);

  it("a drain that outlasts --drain-timeout-s gives the running job back without spending an attempt, and the agent exits 0", async () => {
    const t = await token([SYNTH]);
    let out = "";
    const p = agent(t.token, { output: (s) => (out += s), extraArgs: ["--drain-timeout-s", "2"] });
    await until("the agent to connect", 20_000, async () => (out.includes("connected") ? true : undefined));
    const job = await api<{ id: string }>(stack, "POST", `/v1/models/${SYNTH}/jobs`, {
      input: { steps: 10, service_ms: 60_000 },
    });
    await until("the job to run", 20_000, async () =>
      (await api<JobView>(stack, "GET", `/v1/jobs/${job.body.id}`)).body.phase === "sampling" ? true : undefined,
    );
    const exited = new Promise<number | null>((res) => p.once("exit", (code) => res(code)));
    const stopped = Date.now();
    p.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(Date.now() - stopped).toBeLessThan(15_000);
    expect(out).toContain("drain took over 2 s");
    // The release went out before the exit; the edge takes it in its own time.
    const view = await until("the job to be queued again", 20_000, async () => {
      const v = (await api<JobView>(stack, "GET", `/v1/jobs/${job.body.id}`)).body;
      return v.status === "running" ? undefined : v;
    });
    expect(view.status).toBe("queued");
    expect(view.attempts.map((a) => a.reason)).toEqual(["drained"]);
    await api(stack, "POST", `/v1/jobs/${job.body.id}/cancel`);
  }, 60_000);
});
