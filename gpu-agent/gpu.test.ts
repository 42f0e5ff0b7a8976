import { describe, expect, it } from "vitest";
import { gpuHealth, parseNvidiaSmi, vramAbove } from "./gpu.ts";

describe("GPU health", () => {
  it("nvidia-smi's CSV becomes one health record per GPU", () => {
    const out = parseNvidiaSmi(
      "NVIDIA H100 80GB HBM3, 87, 70000, 81559, 64\nNVIDIA H100 80GB HBM3, [N/A], 1, 81559, 40\n",
    );
    expect(out).toEqual([
      { name: "NVIDIA H100 80GB HBM3", util_pct: 87, vram_used_mb: 70000, vram_total_mb: 81559, temp_c: 64 },
      { name: "NVIDIA H100 80GB HBM3", vram_used_mb: 1, vram_total_mb: 81559, temp_c: 40 },
    ]);
  });

  it("a machine without nvidia-smi reports no GPUs rather than failing", async () => {
    expect(await gpuHealth("/nonexistent/nvidia-smi")).toEqual([]);
  });

  it("work stops above the VRAM threshold", () => {
    const gpus = parseNvidiaSmi("g, 0, 78000, 80000, 30\n");
    expect(vramAbove(gpus, 95)).toBe(true);
    expect(vramAbove(gpus, 99)).toBe(false);
    expect(vramAbove([], 1)).toBe(false);
  });
});
