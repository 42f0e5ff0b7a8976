import { spawnSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { api, BIN, freePort, ROOT, startStack, type Stack } from "./stack.ts";

describe("floodgate dev", () => {
  const started: Stack[] = [];
  afterAll(async () => {
    for (const s of started) await s.stop("SIGKILL");
  });

  it("starts the edge, prints the keys, and a submitted job is durable across a restart with the same keys", async () => {
    const port = await freePort();
    const first = await startStack({ port });
    started.push(first);
    expect(first.output()).toContain(first.config.api_key);
    expect(first.output()).toContain(first.config.admin_key);
    expect(first.config.url).toBe(`http://127.0.0.1:${port}`);
    const sub = await api<{ id: string; status: string; tier: string }>(first, "POST", "/v1/models/demo/jobs", {
      input: { prompt: "a red fox" },
    });
    expect(sub.status).toBe(202);
    expect(sub.body.tier).toBe("plus");
    // The edge process dies; state persisted on disk brings the job back.
    expect(await first.stop("SIGTERM")).toBe(0);
    const health = await fetch(`${first.config.url}/healthz`).catch(() => undefined);
    expect(health).toBeUndefined();

    const second = await startStack({ port, state: first.state });
    started.push(second);
    expect(second.config).toEqual(first.config);
    const got = await api<{ status: string }>(second, "GET", `/v1/jobs/${sub.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body.status).toBe("queued");
    const models = await api<{ models: { name: string }[] }>(
      second,
      "GET",
      "/v1/admin/models",
      undefined,
      second.config.admin_key,
    );
    expect(models.body.models.map((m) => m.name)).toContain("demo");
    expect(await second.stop("SIGINT")).toBe(0);
  });

  it("a wrong flag is a clear error with exit code 2", () => {
    const r = spawnSync(process.execPath, [BIN, "dev", "--prot", "1"], { cwd: ROOT, encoding: "utf8" });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("--prot");
    const bad = spawnSync(process.execPath, [BIN, "dev", "--port", "99999"], { cwd: ROOT, encoding: "utf8" });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("--port");
    const help = spawnSync(process.execPath, [BIN, "dev", "--help"], { cwd: ROOT, encoding: "utf8" });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("--agents");
    const env = { ...process.env, FLOODGATE_AGENT_TOKEN: "" };
    const noToken = spawnSync(process.execPath, [BIN, "agent", "--url", "http://127.0.0.1:1"], {
      cwd: ROOT,
      encoding: "utf8",
      env,
    });
    expect(noToken.status).toBe(2);
    expect(noToken.stderr).toContain("FLOODGATE_AGENT_TOKEN");
    const badFlag = spawnSync(process.execPath, [BIN, "agent", "--slotz", "2"], { cwd: ROOT, encoding: "utf8", env });
    expect(badFlag.status).toBe(2);
    const agentHelp = spawnSync(process.execPath, [BIN, "agent", "--help"], { cwd: ROOT, encoding: "utf8" });
    expect(agentHelp.status).toBe(0);
    expect(agentHelp.stdout).toContain("--max-vram-pct");
  });
});

describe("floodgate dev installs the built-in versions", () => {
  let stack: Stack | undefined;
  afterAll(async () => {
    await stack?.stop("SIGKILL");
  });

  it("pushes the built-in versions and applies models/rollout.yaml, its agent with no runner flags runs a demo job on version 2, and a second start uploads nothing and applies nothing", async () => {
    const port = await freePort();
    stack = await startStack({ port, agents: 1 });
    const admin = stack.config.admin_key;
    expect(stack.output()).toMatch(
      /versions {4}demo 2 \(ready, 0 of 0 pieces uploaded\), reference tiny-1 \(ready, (\d+) of \1 pieces uploaded\)/,
    );
    expect(stack.output()).toMatch(/rollout {5}\S*models\/rollout\.yaml applied \(entry 1\)/);
    const sub = await api<{ id: string }>(stack, "POST", "/v1/models/demo/jobs", { input: { prompt: "a red fox" } });
    expect(sub.status).toBe(202);
    let job: { status: string; attempts: { version?: string }[] } = { status: "queued", attempts: [] };
    const deadline = Date.now() + 120_000;
    while (job.status !== "succeeded") {
      if (["failed", "cancelled", "expired"].includes(job.status) || Date.now() > deadline) {
        throw new Error(`the demo job is ${JSON.stringify(job)}:\n${stack.output()}`);
      }
      await new Promise((r) => setTimeout(r, 250));
      job = (await api<typeof job>(stack, "GET", `/v1/jobs/${sub.body.id}`)).body;
    }
    expect(job.attempts.at(-1)?.version).toBe("2");
    const status = await api<{
      models: Record<string, { stable: { version: string }; agents: Record<string, { serving: number }> }>;
    }>(stack, "GET", "/v1/admin/rollouts/status", undefined, admin);
    expect(status.body.models.demo?.stable.version).toBe("2");
    expect(status.body.models.demo?.agents["2"]?.serving).toBe(1);
    expect(await stack.stop("SIGTERM")).toBe(0);

    stack = await startStack({ port, state: stack.state, agents: 0 });
    expect(stack.output()).toMatch(
      /versions {4}demo 2 \(ready, 0 of 0 pieces uploaded\), reference tiny-1 \(ready, 0 of \d+ pieces uploaded\)/,
    );
    expect(stack.output()).toContain("rollout     as applied before");
    const history = await api<{ rollouts: unknown[] }>(stack, "GET", "/v1/admin/rollouts", undefined, admin);
    expect(history.body.rollouts).toHaveLength(1);
    expect(await stack.stop("SIGTERM")).toBe(0);
  });
});
