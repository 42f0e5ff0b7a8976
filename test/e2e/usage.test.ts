/**
 * Usage end to end: a run on real agents with one killed mid-job; the account's usage equals, to
 * the millisecond, the sum of its attempts' executing seconds as the admin job views show them,
 * the lost attempts apart; `floodgate usage --json` reads the same.
 */
import { execFile, type ChildProcess } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgent, waitExit } from "../../cli/dev.ts";
import type { UsageAnswer } from "../../shared/usage.ts";
import { api, BIN, ROOT, startStack, type Stack } from "./stack.ts";

interface AdminJobView {
  id: string;
  status: string;
  phase: string;
  attempts: {
    outcome: string;
    reason: string | null;
    started_at: string;
    ended_at: string | null;
    executing_s: number | null;
  }[];
}

const MODEL = "synth-usage";
let stack: Stack;
const agents: ChildProcess[] = [];

function agent(token: string, index: number, output: (s: string) => void = () => undefined): ChildProcess {
  const child = startAgent({
    url: stack.config.url,
    token,
    state: stack.state,
    index,
    runner: "synthetic",
    env: { ...process.env, FLOODGATE_SYNTHETIC_MODELS: MODEL },
    stdio: "pipe",
  });
  child.stdout?.on("data", (d: Buffer) => output(d.toString()));
  child.stderr?.on("data", (d: Buffer) => output(d.toString()));
  agents.push(child);
  return child;
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

const ms = (s: number): number => Math.round(s * 1000);

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
  for (const a of agents) a.kill("SIGKILL");
  await Promise.all(agents.map((a) => waitExit(a, 5000)));
  await stack?.stop("SIGTERM");
});

describe("usage end to end", () => {
  it("an account's usage equals the sum of its attempts' executing seconds to the millisecond, with attempts lost to a killed agent kept apart", async () => {
    const acct = await api<{ id: string; api_key: string }>(
      stack,
      "POST",
      "/v1/admin/accounts",
      { name: "usage-e2e", tier: "plus" },
      stack.config.admin_key,
    );
    const key = acct.body.api_key;
    const tok = await api<{ token: string }>(
      stack,
      "POST",
      "/v1/admin/agent-tokens",
      { pool: "e2e", models: [MODEL], ttl_s: 3600 },
      stack.config.admin_key,
    );
    let out = "";
    const first = agent(tok.body.token, 1, (s) => (out += s));
    await until("the agent to connect", 30_000, async () => (out.includes("connected") ? true : undefined));
    const submit = async (input: Record<string, unknown>) =>
      (await api<{ id: string }>(stack, "POST", `/v1/models/${MODEL}/jobs`, { input }, key)).body.id;
    const long = await submit({ steps: 20, service_ms: 4_000 });
    await until("the long job to run", 30_000, async () =>
      (await api<AdminJobView>(stack, "GET", `/v1/jobs/${long}`, undefined, key)).body.phase === "sampling"
        ? true
        : undefined,
    );
    // Killed mid-job: that attempt is lost (worker_lost) when the same agent says hello again.
    first.kill("SIGKILL");
    await waitExit(first, 5_000);
    agent(tok.body.token, 1);
    const ids = [
      long,
      await submit({ steps: 2, service_ms: 300 }),
      await submit({ steps: 2, service_ms: 200, fault: "error" }),
      await submit({ steps: 4, service_ms: 500, frames: 2 }),
    ];
    const views = await until("every job to end", 90_000, async () => {
      const vs = await Promise.all(
        ids.map(
          async (id) =>
            (await api<AdminJobView>(stack, "GET", `/v1/admin/jobs/${id}`, undefined, stack.config.admin_key)).body,
        ),
      );
      return vs.every((v) => ["succeeded", "failed"].includes(v.status)) ? vs : undefined;
    });
    expect(views.map((v) => v.status)).toEqual(["succeeded", "succeeded", "failed", "succeeded"]);
    const attempts = views.flatMap((v) => v.attempts);
    const lost = attempts.filter((a) => a.reason === "worker_lost");
    const billed = attempts.filter((a) => a.reason !== "worker_lost");
    expect(lost.length).toBeGreaterThanOrEqual(1);
    for (const a of billed) {
      // The runner's own time, not the edge's span (which also holds the uploads).
      expect(a.executing_s).not.toBeNull();
      expect(ms(a.executing_s!)).toBeLessThanOrEqual(Date.parse(a.ended_at!) - Date.parse(a.started_at));
    }
    const sum = (xs: typeof attempts) => xs.reduce((n, a) => n + ms(a.executing_s ?? 0), 0);

    const usage = await api<UsageAnswer>(stack, "GET", "/v1/usage?group_by=version", undefined, key);
    expect(usage.status).toBe(200);
    const t = usage.body.totals;
    expect(ms(t.executing_s)).toBe(sum(billed));
    // The synthetic runner holds no GPU: each attempt counts as one.
    expect(ms(t.gpu_s)).toBe(sum(billed));
    expect(ms(t.lost_gpu_s)).toBe(sum(lost));
    expect(t.attempts).toBe(attempts.length);
    expect(t.jobs).toEqual({ succeeded: 3, failed: 1, cancelled: 0, expired: 0 });
    expect(t.output_bytes).toBeGreaterThan(0);

    const cli = await promisify(execFile)(
      process.execPath,
      [BIN, "usage", "--json", "--url", stack.config.url, "--api-key", key],
      { cwd: ROOT, env: { ...process.env, FLOODGATE_API_KEY: "", FLOODGATE_URL: "" } },
    );
    expect((JSON.parse(cli.stdout) as UsageAnswer).totals).toEqual({ ...t });
  });
});
