/**
 * `floodgate doctor` on this machine (no GPU) against the real local stack: ready with a warning
 * that says the agent would run CPU-only runners, the token's scope from the edge, the python
 * runner's device from its own probe; a revoked token makes it not ready; nothing is left behind.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, BIN, ROOT, startStack, type Stack } from "./stack.ts";

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: 0 });
});

afterAll(async () => {
  await stack?.stop("SIGTERM");
});

interface Report {
  ready: boolean;
  checks: { name: string; verdict: "pass" | "warn" | "fail"; detail: string; fix?: string }[];
}

function doctor(args: string[]): Promise<{ code: number | null; report: Report; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, "doctor", "--json", ...args], {
      cwd: ROOT,
      env: { ...process.env, FLOODGATE_URL: "", FLOODGATE_AGENT_TOKEN: "" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => {
      try {
        resolve({ code, report: JSON.parse(stdout) as Report, stderr });
      } catch {
        reject(new Error(`doctor printed no JSON (exit ${code}): ${stdout}\n${stderr}`));
      }
    });
  });
}

const check = (r: Report, name: string) => r.checks.find((c) => c.name === name)!;

describe("floodgate doctor against the local stack", () => {
  it("this machine is ready: no GPU (it says the agent would run on the CPU), the token's scope, the clock, the cache", async () => {
    const cache = mkdtempSync(join(tmpdir(), "doctor-e2e-"));
    const { code, report } = await doctor([
      "--url",
      stack.config.url,
      "--token",
      stack.config.agent_token,
      "--cache-dir",
      cache,
      "--runner",
      "python",
    ]);
    expect(report.ready).toBe(true);
    expect(code).toBe(0);
    // This machine has no NVIDIA GPU (a machine that has one passes instead).
    const gpu = check(report, "gpu");
    expect(gpu.verdict === "pass" || /the agent would run its runners on the CPU only/.test(gpu.detail)).toBe(true);
    expect(check(report, "python").detail).toMatch(/the python runner would sample on (cpu|cuda)/);
    expect(check(report, "edge")).toMatchObject({ verdict: "pass" });
    expect(check(report, "clock")).toMatchObject({ verdict: "pass" });
    expect(check(report, "token")).toMatchObject({
      verdict: "pass",
      detail: expect.stringMatching(/pool local, models .*reference/),
    });
    expect(check(report, "cache").detail).toMatch(/MB\/s/);
    expect(readdirSync(cache)).toEqual([]);
  });

  it("a revoked token is not ready, and the report says to get a live one", async () => {
    const minted = await api<{ id: string; token: string }>(
      stack,
      "POST",
      "/v1/admin/agent-tokens",
      { pool: "doomed", models: ["demo"], ttl_s: 3600 },
      stack.config.admin_key,
    );
    expect(minted.status).toBe(201);
    await api(stack, "DELETE", `/v1/admin/agent-tokens/${minted.body.id}`, undefined, stack.config.admin_key);
    const { code, report } = await doctor(["--url", stack.config.url, "--token", minted.body.token]);
    expect(code).toBe(1);
    expect(report.ready).toBe(false);
    expect(check(report, "token")).toMatchObject({ verdict: "fail", fix: expect.stringMatching(/live agent token/) });
  });
});
