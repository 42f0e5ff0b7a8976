/**
 * The demo runner serving a version directory, started as an agent serving the rollout starts
 * it (gpu-agent/main.ts, versionRunners): real runner processes.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { VersionManifest } from "../../shared/repository.ts";
import type { RunnerLike } from "../runner/like.ts";
import { versionRunners } from "../main.ts";

const root = mkdtempSync(join(tmpdir(), "fg-demo-version-"));
const open: RunnerLike[] = [];
afterAll(async () => {
  for (const r of open) await r.close();
  rmSync(root, { recursive: true, force: true });
});

function version(name: string, config: Record<string, unknown>) {
  const manifest = VersionManifest.parse({
    format: 1,
    model: "demo",
    version: name,
    runner: "demo",
    input_schema: { type: "object" },
    resources: { gpus: 1 },
    max_batch: 3,
    config,
  });
  const dir = join(root, name);
  mkdirSync(dir);
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
  return { model: "demo", version: name, dir, manifest, gpus: [5], replica: 1 };
}

const logs: string[] = [];
const start = versionRunners({ cache_dir: root }, (l) => logs.push(l));

describe("the demo runner on a version directory", () => {
  it("serves the manifest's model and version with its max_batch, on the GPUs it was given", async () => {
    const r = await start(version("ok", {}));
    open.push(r);
    expect(r.models).toEqual([{ model: "demo", version: "ok" }]);
    expect(r.maxBatch).toBe(3);
    expect(logs.join("\n")).toMatch(
      /\[runner demo@ok#1\] demo: serving demo@ok \(max_batch 3\) with CUDA_VISIBLE_DEVICES=5 /,
    );
    const out = await r.run(
      { job_id: "j1", model: "demo", version: "ok", input: { prompt: "a fox", steps: 2, frames: 2, size: 16 } },
      { progress: () => {}, preview: () => {}, log: () => {} },
    );
    expect(out.frames).toHaveLength(2);
  });

  it("a version configured to fail its load is refused with why, and its runner stopped", async () => {
    await expect(start(version("broken", { fail: "load" }))).rejects.toThrow(
      "its runner could not load it (model_error): demo@broken is configured to fail its load",
    );
  });

  it("a version configured to fail its start fails before its hello", async () => {
    await expect(start(version("dead", { fail: "start" }))).rejects.toThrow(/configured to fail its start/);
  });

  it("a config the demo runner does not know is refused at its start", async () => {
    await expect(start(version("typo", { fial_pct: 5 }))).rejects.toThrow(/config/);
  });

  it("fail_pct fails that share of jobs with model_error, the same way for the same job", async () => {
    const r = await start(version("flaky", { fail_pct: 100 }));
    open.push(r);
    const job = { job_id: "j2", model: "demo", version: "flaky", input: { prompt: "x" } };
    const on = { progress: () => {}, preview: () => {}, log: () => {} };
    await expect(r.run(job, on)).rejects.toMatchObject({ code: "model_error" });
  });
});
