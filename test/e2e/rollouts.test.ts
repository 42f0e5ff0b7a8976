/**
 * Rollouts end to end: the real local stack (`floodgate dev`: workerd, R2 and SQLite on disk),
 * real agents started with no runner flags, versions pushed and rollouts applied with the real
 * CLI. Versions of a model of this suite's own run the demo runner; their manifest `config`
 * makes one fail on purpose (gpu-agent/runners/demo.ts).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgent, waitExit } from "../../cli/dev.ts";
import type { RolloutStatus } from "../../shared/rollouts.ts";
import { api, BIN, ROOT, startStack, type Stack } from "./stack.ts";

const MODEL = "e2e-roll";
const AGENTS = 3;
/** Quick demo jobs: a few steps of small frames. */
const INPUT = { prompt: "a red fox", steps: 12, frames: 4, size: 32 };

let stack: Stack;
const agents: ChildProcess[] = [];
const logs: string[] = [];
const dirs: string[] = [];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The CLI as a child process against the stack (its local.json gives the edge and the keys). */
async function cli(args: string[]): Promise<Run> {
  const child = spawn(process.execPath, [BIN, ...args, "--state", stack.state], {
    cwd: ROOT,
    env: { ...process.env, FLOODGATE_URL: "", FLOODGATE_ADMIN_KEY: "", FLOODGATE_API_KEY: "" },
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  return await new Promise((res) => child.on("exit", (code) => res({ code, stdout, stderr })));
}

async function ok(args: string[]): Promise<string> {
  const r = await cli(args);
  if (r.code !== 0) throw new Error(`floodgate ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** A demo version of {@link MODEL}: the built-in demo manifest under another name, with `config` and files. */
function versionDir(name: string, config: Record<string, unknown> = {}, files: Record<string, Buffer> = {}): string {
  const demo = JSON.parse(readFileSync(join(ROOT, "models", "demo", "2", "manifest.json"), "utf8")) as object;
  const dir = mkdtempSync(join(tmpdir(), "floodgate-e2e-version-"));
  dirs.push(dir);
  writeFileSync(join(dir, "manifest.json"), JSON.stringify({ ...demo, model: MODEL, version: name, config }));
  for (const [path, bytes] of Object.entries(files)) writeFileSync(join(dir, path), bytes);
  return dir;
}

function rolloutFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), "floodgate-e2e-rollout-"));
  dirs.push(dir);
  const file = join(dir, "rollout.yaml");
  writeFileSync(file, text);
  return file;
}

async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await probe();
    if (got !== undefined) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${logs.join("").slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** The cache directory of the local agent numbered `i`. */
const cacheOf = (i: number): string => join(stack.state, "agents", String(i));

async function status(): Promise<RolloutStatus["models"][string] | undefined> {
  return (JSON.parse(await ok(["rollout", "status", "--json"])) as RolloutStatus).models[MODEL];
}

/** Waits until every agent serves `version` and no other version of the model. */
async function allServe(version: string): Promise<void> {
  await until(`every agent serving ${version}`, 90_000, async () => {
    const s = await status();
    const serving = s?.agent_versions.filter((a) => a.state === "serving") ?? [];
    const agentsOn = new Set(serving.filter((a) => a.version === version).map((a) => a.agent_id));
    return agentsOn.size === AGENTS && serving.every((a) => a.version === version) ? true : undefined;
  });
}

interface JobView {
  id: string;
  status: string;
  attempts: { version?: string | null; outcome: string }[];
}

async function submit(): Promise<string> {
  const r = await api<{ id: string }>(stack, "POST", `/v1/models/${MODEL}/jobs`, { input: INPUT });
  if (r.status !== 202) throw new Error(`submit answered ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body.id;
}

async function job(id: string): Promise<JobView> {
  return (await api<JobView>(stack, "GET", `/v1/jobs/${id}`)).body;
}

/** Waits for every job to end; answers them. On the deadline, says where the others stand. */
async function settled(ids: readonly string[], ms = 300_000): Promise<JobView[]> {
  let last: JobView[] = [];
  try {
    return await until(`${ids.length} jobs to end`, ms, async () => {
      last = await Promise.all(ids.map(job));
      return last.every((j) => ["succeeded", "failed", "cancelled", "expired"].includes(j.status)) ? last : undefined;
    });
  } catch (err) {
    const open = last.filter((j) => !["succeeded", "failed", "cancelled", "expired"].includes(j.status));
    throw new Error(`${String(err)}\nstill open: ${JSON.stringify(open.slice(0, 5))}`, { cause: err });
  }
}

beforeAll(async () => {
  stack = await startStack({ agents: 0 });
  const tok = await api<{ token: string }>(
    stack,
    "POST",
    "/v1/admin/agent-tokens",
    { pool: "e2e", models: [MODEL], ttl_s: 3600 },
    stack.config.admin_key,
  );
  for (let i = 0; i < AGENTS; i++) {
    const child = startAgent({
      url: stack.config.url,
      token: tok.body.token,
      state: stack.state,
      index: i,
      stdio: "pipe",
    });
    child.stdout?.on("data", (d: Buffer) => logs.push(d.toString()));
    child.stderr?.on("data", (d: Buffer) => logs.push(d.toString()));
    agents.push(child);
  }
}, 180_000);

afterAll(async () => {
  for (const a of agents) a.kill("SIGTERM");
  await Promise.all(agents.map((a) => waitExit(a, 15_000)));
  await stack?.stop("SIGTERM");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 60_000);

describe("rollouts with real agents", () => {
  it("agents started with only --url and --token move from one pushed version to the next while jobs run, 0 failed and 0 lost, and undo moves them back", async () => {
    for (const v of ["a", "b"])
      expect(JSON.parse(await ok(["models", "push", versionDir(v), "--json"]))).toMatchObject({ state: "ready" });
    await ok(["rollout", "apply", rolloutFile(`models:\n  ${MODEL}:\n    version: "a"\n`)]);
    await allServe("a");

    // Jobs keep arriving before, during and after the switch.
    const ids: string[] = [];
    const feeding = { on: true };
    const feeder = (async () => {
      while (feeding.on) {
        ids.push(await submit());
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    await until("a few jobs in", 30_000, async () => (ids.length >= 5 ? true : undefined));
    const applied = await ok(["rollout", "apply", rolloutFile(`models:\n  ${MODEL}:\n    version: "b"\n`)]);
    expect(applied).toContain(`${MODEL} → b`);
    await allServe("b");
    const switched = ids.length;
    await until("a few jobs after the switch", 30_000, async () => (ids.length >= switched + 5 ? true : undefined));
    feeding.on = false;
    await feeder;
    const jobs = await settled(ids);
    const failed = jobs.filter((j) => j.status !== "succeeded");
    // What the agents said of a job that did not succeed, to read when this fails.
    const said = logs
      .join("")
      .split("\n")
      .filter((l) => failed.some((j) => l.includes(j.id)));
    expect({ failed, said }, "0 failed and 0 lost").toEqual({ failed: [], said: [] });
    const ran = new Set(jobs.map((j) => j.attempts.at(-1)?.version));
    expect(ran).toEqual(new Set(["a", "b"]));

    const undone = await ok(["rollout", "undo", MODEL]);
    expect(undone).toContain(`${MODEL} → a`);
    await allServe("a");
    const after = await settled([await submit(), await submit()]);
    expect(after.map((j) => [j.status, j.attempts.at(-1)?.version])).toEqual([
      ["succeeded", "a"],
      ["succeeded", "a"],
    ]);
  }, 420_000);

  it("a canary that fails its jobs reverts itself once its failure rate passes the limit, and rollout status shows the figures", async () => {
    await ok(["models", "push", versionDir("broken", { fail_pct: 100 }), "--json"]);
    await ok([
      "rollout",
      "apply",
      rolloutFile(
        `models:\n  ${MODEL}:\n    version: "a"\n    canary: { version: "broken", percent: 50, max_failure_pct: 20, min_jobs: 4 }\n`,
      ),
    ]);
    // Jobs go on until the canary is gone; those the canary failed count, the rest run on a.
    const ids: string[] = [];
    const reverted = await until("the canary reverted", 180_000, async () => {
      ids.push(await submit());
      const s = await status();
      return s?.reverts[0]?.version === "broken" ? s : undefined;
    });
    expect(reverted.canary).toBeUndefined();
    expect(reverted.stable.version).toBe("a");
    const revert = reverted.reverts[0];
    expect(revert?.reason).toBe("failure_rate");
    expect(revert?.jobs).toBeGreaterThanOrEqual(4);
    expect((revert?.failed ?? 0) * 100).toBeGreaterThan(20 * (revert?.jobs ?? 0));
    const text = await ok(["rollout", "status"]);
    expect(text).toContain(
      `${MODEL}: canary broken reverted at ${revert?.at} (its failure rate): ${revert?.failed} of ${revert?.jobs} jobs failed (${revert?.failure_pct}%)`,
    );
    // After the revert every job runs on the stable version.
    await allServe("a");
    const after = await settled([await submit(), await submit()]);
    expect(after.map((j) => [j.status, j.attempts.at(-1)?.version])).toEqual([
      ["succeeded", "a"],
      ["succeeded", "a"],
    ]);
    await settled(ids);
  }, 300_000);

  it("a piece corrupted in the edge's R2 store is refused by every agent (sha256 mismatch), never reaches a runner, and the old version keeps serving", async () => {
    const weights = randomBytes(300_000);
    await ok(["models", "push", versionDir("rotten", {}, { "weights.bin": weights }), "--json"]);
    // Local R2 keeps each object's bytes in a file of their own: find the piece's and spoil it.
    const blobs: string[] = [];
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        const st = statSync(path);
        if (st.isDirectory()) walk(path);
        else if (st.size === weights.length && readFileSync(path).equals(weights)) blobs.push(path);
      }
    };
    walk(join(stack.state, "wrangler"));
    expect(blobs).toHaveLength(1);
    writeFileSync(blobs[0] as string, randomBytes(weights.length));

    await ok(["rollout", "apply", rolloutFile(`models:\n  ${MODEL}:\n    version: "rotten"\n`)]);
    const failed = await until("every agent refusing the version", 90_000, async () => {
      const s = await status();
      const refused = s?.agent_versions.filter((a) => a.version === "rotten" && a.state === "failed") ?? [];
      return refused.length === AGENTS ? refused : undefined;
    });
    for (const f of failed)
      expect(f.message).toMatch(/piece [0-9a-f]{64} of e2e-roll@rotten from the edge hashes to [0-9a-f]{64}/);
    // No runner ever started on it, nor was a directory of it assembled in any agent's cache.
    expect(logs.join("")).not.toContain(`serving ${MODEL}@rotten`);
    for (let i = 0; i < AGENTS; i++) {
      expect(existsSync(join(stack.state, "agents", String(i), "versions", MODEL, "rotten"))).toBe(false);
    }
    // The version they served before keeps serving, and jobs run on it.
    const s = await status();
    expect(s?.agent_versions.filter((a) => a.version === "a" && a.state === "serving")).toHaveLength(AGENTS);
    const after = await settled([await submit()]);
    expect(after.map((j) => [j.status, j.attempts.at(-1)?.version])).toEqual([["succeeded", "a"]]);
  }, 240_000);

  it("floodgate models purge refuses the version the rollout desires; a purged one leaves every agent's cache, with the pieces only it used, once no runner serves it", async () => {
    const shared = randomBytes(200_000);
    const own = { p1: randomBytes(150_000), p2: randomBytes(150_000) };
    for (const v of ["p1", "p2"] as const) {
      const dir = versionDir(v, {}, { "shared.bin": shared, "own.bin": own[v] });
      expect(JSON.parse(await ok(["models", "push", dir, "--json"]))).toMatchObject({ state: "ready" });
    }
    await ok(["rollout", "apply", rolloutFile(`models:\n  ${MODEL}:\n    version: "p1"\n`)]);
    await allServe("p1");
    await ok(["rollout", "apply", rolloutFile(`models:\n  ${MODEL}:\n    version: "p2"\n`)]);
    await allServe("p2");
    const refused = await cli(["models", "purge", MODEL, "p2"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("conflict");
    expect(await ok(["models", "purge", MODEL, "p1"])).toContain(`purged ${MODEL}@p1`);
    await until("p1 gone from every agent's cache", 60_000, async () => {
      for (let i = 0; i < AGENTS; i++) {
        const versions = join(cacheOf(i), "versions", MODEL);
        if (existsSync(join(versions, "p1")) || existsSync(join(versions, "p1.json"))) return undefined;
        if (existsSync(join(cacheOf(i), "pieces", sha(own.p1)))) return undefined;
      }
      return true;
    });
    for (let i = 0; i < AGENTS; i++) {
      // The piece p2 shares stays, and p2 whole.
      expect(existsSync(join(cacheOf(i), "pieces", sha(shared)))).toBe(true);
      expect(readFileSync(join(cacheOf(i), "versions", MODEL, "p2", "own.bin")).equals(own.p2)).toBe(true);
    }
    const after = await settled([await submit()]);
    expect(after.map((j) => [j.status, j.attempts.at(-1)?.version])).toEqual([["succeeded", "p2"]]);
  }, 300_000);
});
