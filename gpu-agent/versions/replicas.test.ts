/**
 * Replicas for real: `floodgate agent` (the CLI, no runner flag) on a machine pretending to have
 * 8 GPUs, serving a demo version that asks 2 GPUs per replica, against the fake edge. The runner
 * processes themselves say which devices they were given.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { PRETEND_GPUS_ENV } from "../gpu.ts";
import { FakeEdge, makeVersion } from "../testing/edge.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");
const JOB = (n: number): string => `job_${String(n).padStart(30, "0")}`;

const cleanup: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanup.splice(0).toReversed()) await c();
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("replicas on several GPUs", () => {
  it(`with ${PRETEND_GPUS_ENV}=8 and a version asking gpus: 2, the agent runs 4 runner processes, each seeing its own two devices`, async () => {
    const edge = await FakeEdge.start();
    cleanup.push(() => edge.close());
    const cache = mkdtempSync(join(tmpdir(), "fg-replicas-"));
    cleanup.push(() => rmSync(cache, { recursive: true, force: true }));
    const v = edge.add(
      await makeVersion(
        {
          format: 1,
          model: "demo",
          version: "2gpu",
          runner: "demo",
          input_schema: { type: "object" },
          resources: { gpus: 2, vram_gib: 1 },
          max_batch: 1,
        },
        { "notes.txt": "a demo version on two GPUs per replica" },
      ),
    );
    edge.desire([{ model: "demo", stable: { version: "2gpu", digest: v.record.digest } }]);
    let output = "";
    const child: ChildProcess = spawn(
      process.execPath,
      [join(ROOT, "cli", "bin.js"), "agent", "--url", edge.url, "--token", "t".repeat(40), "--cache-dir", cache],
      { cwd: ROOT, env: { ...process.env, [PRETEND_GPUS_ENV]: "8" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)));
    cleanup.push(async () => {
      if (child.exitCode === null) child.kill("SIGKILL");
      await exited;
    });
    child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (output += d.toString()));

    // Serving, with the four replicas' slots, told at once.
    const beat = await edge.until(
      "demo@2gpu serving on 4 replicas",
      () =>
        edge
          .of("agent.heartbeat")
          .find((h) => h.slots === 4 && h.versions.some((s) => s.version === "2gpu" && s.state === "serving")),
      60_000,
    );
    expect(beat.versions).toEqual([{ model: "demo", version: "2gpu", state: "serving" }]);

    // What each runner process says of itself.
    const said = [
      ...output.matchAll(/serving demo@2gpu \(max_batch 1\) with CUDA_VISIBLE_DEVICES=([\d,]*) in process (\d+)/g),
    ];
    expect(said.map((m) => m[1]).sort()).toEqual(["0,1", "2,3", "4,5", "6,7"]);
    const pids = said.map((m) => Number(m[2]));
    expect(new Set(pids).size).toBe(4);
    expect(pids.every(alive)).toBe(true);

    // Four leases at once: one on each replica, each job's log naming its replica's devices.
    const input = { prompt: "a fox", steps: 2, frames: 1, size: 16 };
    edge.lease(
      [1, 2, 3, 4].map((n) => ({
        job_id: JOB(n),
        epoch: 1,
        deadline: Date.now() + 60_000,
        attempt: 1,
        model: "demo",
        version: "2gpu",
        input,
      })),
    );
    const results = await edge.until(
      "4 results",
      () => {
        const r = edge.of("job.results").flatMap((m) => m.results);
        return r.length === 4 ? r : undefined;
      },
      60_000,
    );
    expect(results.map((r) => r.status)).toEqual(["succeeded", "succeeded", "succeeded", "succeeded"]);
    const devices = edge
      .of("job.log")
      .flatMap((l) => /on CUDA_VISIBLE_DEVICES=([\d,]+)/.exec(l.message)?.slice(1) ?? []);
    expect(devices.sort()).toEqual(["0,1", "2,3", "4,5", "6,7"]);

    // SIGTERM drains and stops every runner.
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    const deadline = Date.now() + 10_000;
    while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(pids.filter(alive)).toEqual([]);
  }, 120_000);
});
