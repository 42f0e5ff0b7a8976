/**
 * GPUs for heartbeats and runners: which devices an agent serves with (`--gpus`), and their
 * utilisation, memory and temperature from `nvidia-smi` where it exists (an empty list on a
 * machine without it).
 *
 * Pretending: `FLOODGATE_PRETEND_GPUS=N` makes an agent see N GPUs that do not exist (indices
 * 0…N−1, 80 GiB each, idle), so multi-GPU placement and `--gpus` can be exercised on a machine
 * without any (tests, laptops). The runner still runs on the CPU. Called by gpu-agent/main.ts.
 */
import { execFile } from "node:child_process";
import type { GpuHealth } from "../shared/wire.ts";

/** The environment variable that makes an agent pretend to have GPUs. */
export const PRETEND_GPUS_ENV = "FLOODGATE_PRETEND_GPUS";

/** Which GPUs an agent serves with: every one it sees, or these indices. */
export type GpuSelection = "all" | readonly number[];

/** Parses `--gpus`: `all`, or a comma-separated list of distinct indices (`0,1`). */
export function parseGpuSelection(text: string): { ok: true; gpus: GpuSelection } | { ok: false; message: string } {
  const t = text.trim();
  if (t === "all") return { ok: true, gpus: "all" };
  const parts = t.split(",").map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => !/^\d{1,3}$/.test(p))) {
    return { ok: false, message: `"${text}" is not "all" or a list of GPU indices such as 0,1` };
  }
  const gpus = parts.map(Number);
  if (new Set(gpus).size !== gpus.length) return { ok: false, message: `"${text}" names a GPU twice` };
  return { ok: true, gpus: gpus.sort((a, b) => a - b) };
}

/**
 * The `CUDA_VISIBLE_DEVICES` a runner gets for a selection: the indices, or nothing to add for
 * `all` (the runner sees what the agent sees).
 */
export function cudaVisibleDevices(gpus: GpuSelection): string | undefined {
  return gpus === "all" ? undefined : gpus.join(",");
}

function num(s: string | undefined): number | undefined {
  const n = Number(s);
  return s !== undefined && s !== "" && Number.isFinite(n) ? n : undefined;
}

const QUERY = "index,name,utilization.gpu,memory.used,memory.total,temperature.gpu";

/** Parses `nvidia-smi --query-gpu=index,name,utilization.gpu,memory.used,memory.total,temperature.gpu --format=csv,noheader,nounits`. */
export function parseNvidiaSmi(text: string): GpuHealth[] {
  const out: GpuHealth[] = [];
  for (const line of text.split("\n")) {
    const cols = line.split(",").map((c) => c.trim());
    const index = num(cols[0]);
    if (cols.length < 6 || index === undefined || !Number.isInteger(index) || !cols[1]) continue;
    const g: GpuHealth = { index, name: cols[1].slice(0, 128) };
    const util = num(cols[2]);
    const used = num(cols[3]);
    const total = num(cols[4]);
    const temp = num(cols[5]);
    if (util !== undefined) g.util_pct = Math.min(100, Math.max(0, util));
    if (used !== undefined) g.vram_used_mb = used;
    if (total !== undefined) g.vram_total_mb = total;
    if (temp !== undefined) g.temp_c = temp;
    out.push(g);
  }
  return out;
}

/** N GPUs that do not exist, for {@link PRETEND_GPUS_ENV}. */
export function pretendGpus(n: number): GpuHealth[] {
  return Array.from({ length: n }, (_, index) => ({
    index,
    name: "pretend GPU",
    util_pct: 0,
    vram_used_mb: 0,
    vram_total_mb: 81920,
  }));
}

/** The GPUs of a selection, in index order. */
export function selectGpus(all: readonly GpuHealth[], gpus: GpuSelection): GpuHealth[] {
  return gpus === "all" ? [...all] : all.filter((g) => g.index !== undefined && gpus.includes(g.index));
}

/**
 * Health of the GPUs this agent serves with: pretend ones when {@link PRETEND_GPUS_ENV} is set,
 * else what nvidia-smi reports, else none.
 */
export async function gpuHealth(
  gpus: GpuSelection = "all",
  binary = "nvidia-smi",
  env: NodeJS.ProcessEnv = process.env,
): Promise<GpuHealth[]> {
  const pretend = Number(env[PRETEND_GPUS_ENV] ?? "");
  if (Number.isInteger(pretend) && pretend > 0) return selectGpus(pretendGpus(Math.min(pretend, 64)), gpus);
  const all = await new Promise<GpuHealth[]>((resolve) => {
    execFile(binary, [`--query-gpu=${QUERY}`, "--format=csv,noheader,nounits"], { timeout: 2000 }, (err, stdout) =>
      resolve(err ? [] : parseNvidiaSmi(stdout)),
    );
  });
  return selectGpus(all, gpus);
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

/** A GPU as `floodgate doctor` reports it: what the driver says, not its load. */
export interface GpuInventoryEntry {
  index: number;
  name: string;
  driver_version: string;
  memory_total_mb: number | undefined;
}

const INVENTORY_QUERY = "index,name,driver_version,memory.total";

/** Parses `nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader,nounits`. */
export function parseGpuInventory(text: string): GpuInventoryEntry[] {
  const out: GpuInventoryEntry[] = [];
  for (const line of text.split("\n")) {
    const cols = line.split(",").map((c) => c.trim());
    const index = num(cols[0]);
    if (cols.length < 4 || index === undefined || !Number.isInteger(index) || !cols[1] || !cols[2]) continue;
    out.push({
      index,
      name: cols[1].slice(0, 128),
      driver_version: cols[2].slice(0, 32),
      memory_total_mb: num(cols[3]),
    });
  }
  return out;
}

/**
 * The GPUs the NVIDIA driver shows this machine, with the driver's version: an error value
 * when nvidia-smi is absent (`missing`) or fails (a driver that is not loaded, a container
 * started without the GPUs). Never pretends (unlike {@link gpuHealth}): `floodgate doctor` asks.
 */
export async function gpuInventory(
  binary = "nvidia-smi",
): Promise<{ ok: true; gpus: GpuInventoryEntry[] } | { ok: false; missing: boolean; why: string }> {
  return await new Promise((resolve) => {
    execFile(
      binary,
      [`--query-gpu=${INVENTORY_QUERY}`, "--format=csv,noheader,nounits"],
      { timeout: 10_000 },
      (err, stdout, stderr) => {
        if (!err) {
          resolve({ ok: true, gpus: parseGpuInventory(stdout) });
          return;
        }
        const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
        const why = missing ? `${binary} not found` : (stderr.trim() || stdout.trim() || err.message).split("\n")[0];
        resolve({ ok: false, missing, why: why ?? err.message });
      },
    );
  });
}
