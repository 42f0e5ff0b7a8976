/**
 * GPU health for heartbeats: utilisation, memory and temperature from `nvidia-smi` where it
 * exists; an empty list on a machine without it.
 */
import { execFile } from "node:child_process";
import type { GpuHealth } from "../shared/wire.ts";

function num(s: string | undefined): number | undefined {
  const n = Number(s);
  return s !== undefined && s !== "" && Number.isFinite(n) ? n : undefined;
}

/** Parses `nvidia-smi --query-gpu=name,utilization.gpu,memory.used,memory.total,temperature.gpu --format=csv,noheader,nounits`. */
export function parseNvidiaSmi(text: string): GpuHealth[] {
  const out: GpuHealth[] = [];
  for (const line of text.split("\n")) {
    const cols = line.split(",").map((c) => c.trim());
    if (cols.length < 5 || !cols[0]) continue;
    const g: GpuHealth = { name: cols[0].slice(0, 128) };
    const util = num(cols[1]);
    const used = num(cols[2]);
    const total = num(cols[3]);
    const temp = num(cols[4]);
    if (util !== undefined) g.util_pct = Math.min(100, Math.max(0, util));
    if (used !== undefined) g.vram_used_mb = used;
    if (total !== undefined) g.vram_total_mb = total;
    if (temp !== undefined) g.temp_c = temp;
    out.push(g);
  }
  return out;
}

export async function gpuHealth(binary = "nvidia-smi"): Promise<GpuHealth[]> {
  return await new Promise((resolve) => {
    execFile(
      binary,
      ["--query-gpu=name,utilization.gpu,memory.used,memory.total,temperature.gpu", "--format=csv,noheader,nounits"],
      { timeout: 2000 },
      (err, stdout) => resolve(err ? [] : parseNvidiaSmi(stdout)),
    );
  });
}

/** Whether any GPU uses more than `pct` percent of its memory. */
export function vramAbove(gpus: readonly GpuHealth[], pct: number): boolean {
  return gpus.some(
    (g) =>
      g.vram_total_mb !== undefined &&
      g.vram_used_mb !== undefined &&
      g.vram_total_mb > 0 &&
      (g.vram_used_mb / g.vram_total_mb) * 100 > pct,
  );
}
