import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  cudaVisibleDevices,
  gpuHealth,
  parseGpuInventory,
  parseGpuSelection,
  parseNvidiaSmi,
  PRETEND_GPUS_ENV,
  vramAbove,
} from "./gpu.ts";

describe("GPU health", () => {
  it("nvidia-smi's CSV becomes one health record per GPU, with its index", () => {
    const out = parseNvidiaSmi(
      "0, NVIDIA H100 80GB HBM3, 87, 70000, 81559, 64\n1, NVIDIA H100 80GB HBM3, [N/A], 1, 81559, 40\n",
    );
    expect(out).toEqual([
      { index: 0, name: "NVIDIA H100 80GB HBM3", util_pct: 87, vram_used_mb: 70000, vram_total_mb: 81559, temp_c: 64 },
      { index: 1, name: "NVIDIA H100 80GB HBM3", vram_used_mb: 1, vram_total_mb: 81559, temp_c: 40 },
    ]);
  });

  it("a machine without nvidia-smi reports no GPUs rather than failing", async () => {
    expect(await gpuHealth("all", "/nonexistent/nvidia-smi", {})).toEqual([]);
  });

  it("an agent pinned to some GPUs reports only those", async () => {
    const dir = mkdtempSync(join(tmpdir(), "floodgate-smi-"));
    const smi = join(dir, "nvidia-smi");
    const rows = [0, 1, 2, 3].map((i) => `${i}, GPU ${i}, 10, 100, 1000, 50`).join("\n");
    writeFileSync(smi, `#!/bin/sh\necho '${rows}'\n`);
    chmodSync(smi, 0o755);
    expect((await gpuHealth([1, 3], smi, {})).map((g) => g.index)).toEqual([1, 3]);
    expect(await gpuHealth("all", smi, {})).toHaveLength(4);
  });

  it("FLOODGATE_PRETEND_GPUS makes GPUs that do not exist, selectable like real ones", async () => {
    const env = { [PRETEND_GPUS_ENV]: "8" };
    expect(await gpuHealth("all", "/nonexistent/nvidia-smi", env)).toHaveLength(8);
    expect((await gpuHealth([6, 7], "/nonexistent/nvidia-smi", env)).map((g) => g.index)).toEqual([6, 7]);
  });

  it("--gpus takes all or distinct indices, and pins the runner with CUDA_VISIBLE_DEVICES", () => {
    expect(parseGpuSelection("all")).toEqual({ ok: true, gpus: "all" });
    expect(parseGpuSelection("3, 1")).toEqual({ ok: true, gpus: [1, 3] });
    expect(parseGpuSelection("1,1").ok).toBe(false);
    expect(parseGpuSelection("gpu0").ok).toBe(false);
    expect(parseGpuSelection("").ok).toBe(false);
    expect(cudaVisibleDevices([1, 3])).toBe("1,3");
    expect(cudaVisibleDevices("all")).toBeUndefined();
  });

  it("work stops above the VRAM threshold", () => {
    const gpus = parseNvidiaSmi("0, g, 0, 78000, 80000, 30\n");
    expect(vramAbove(gpus, 95)).toBe(true);
    expect(vramAbove(gpus, 99)).toBe(false);
    expect(vramAbove([], 1)).toBe(false);
  });
});

describe("parseGpuInventory", () => {
  it("reads index, name, driver version and memory, and skips lines that are not GPUs", () => {
    const text =
      "0, NVIDIA H100 80GB HBM3, 550.54.15, 81559\n1, NVIDIA H100 80GB HBM3, 550.54.15, [N/A]\nNo devices were found\n";
    expect(parseGpuInventory(text)).toEqual([
      { index: 0, name: "NVIDIA H100 80GB HBM3", driver_version: "550.54.15", memory_total_mb: 81559 },
      { index: 1, name: "NVIDIA H100 80GB HBM3", driver_version: "550.54.15", memory_total_mb: undefined },
    ]);
  });
});
