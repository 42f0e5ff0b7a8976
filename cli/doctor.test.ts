import { existsSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  checkCache,
  checkEdge,
  checkGpus,
  checkNode,
  checkPython,
  ready,
  renderDoctor,
  SKEW_FAIL_MS,
  type CheckResult,
  type DoctorWorld,
} from "./doctor.ts";

const NOW = Date.parse("2026-12-06T12:00:00Z");

/** A stand-in for the edge's two answers, with its clock `skewMs` behind ours. */
function edge(
  opts: { precise?: boolean; skewMs?: number; whoami?: number; models?: string[]; expiresInMs?: number } = {},
): DoctorWorld["fetch"] {
  return async (input) => {
    const url = String(input);
    const date = new Date(NOW - (opts.skewMs ?? 0)).toUTCString();
    if (url.endsWith("/healthz")) {
      const time = opts.precise ? { time: new Date(NOW - (opts.skewMs ?? 0)).toISOString() } : {};
      return Response.json({ ok: true, version: "0.1.0", ...time }, { headers: { date } });
    }
    if (opts.whoami !== undefined && opts.whoami !== 200) {
      return Response.json({ error: { code: "unauthorized", message: "x" } }, { status: opts.whoami });
    }
    return Response.json({
      token_id: "tok_0123456789abcdef",
      pool: "gpu-east",
      models: opts.models ?? ["demo"],
      issued_at: new Date(NOW - 1000).toISOString(),
      expires_at: new Date(NOW + (opts.expiresInMs ?? 30 * 86_400_000)).toISOString(),
    });
  };
}

const base = { url: "http://edge.test", token: "t".repeat(40), runner: "demo" as const, model: "reference" };
const byName = (rs: CheckResult[], name: string) => rs.find((r) => r.name === name)!;

async function clock(skewMs: number, precise = false): Promise<CheckResult> {
  return byName(await checkEdge(base, { fetch: edge({ skewMs, precise }), now: () => NOW }), "clock");
}

async function token(o: Parameters<typeof edge>[0], runner: "demo" | "python" = "demo"): Promise<CheckResult> {
  return byName(await checkEdge({ ...base, runner }, { fetch: edge(o), now: () => NOW }), "token");
}

describe("floodgate doctor's checks", () => {
  it("no nvidia-smi warns that the agent would run CPU-only runners; a failing one fails", async () => {
    const none = await checkGpus({ gpus: async () => ({ ok: false, missing: true, why: "nvidia-smi not found" }) });
    expect(none.verdict).toBe("warn");
    expect(none.detail).toMatch(/CPU only/);
    const broken = await checkGpus({
      gpus: async () => ({
        ok: false,
        missing: false,
        why: "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver",
      }),
    });
    expect(broken.verdict).toBe("fail");
    expect(broken.fix).toMatch(/driver/);
    const two = await checkGpus({
      gpus: async () => ({
        ok: true,
        gpus: [
          { index: 0, name: "NVIDIA H100 80GB HBM3", driver_version: "550.54.15", memory_total_mb: 81559 },
          { index: 1, name: "NVIDIA H100 80GB HBM3", driver_version: "550.54.15", memory_total_mb: 81559 },
        ],
      }),
    });
    expect(two).toMatchObject({ verdict: "pass" });
    expect(two.detail).toMatch(/2 GPU\(s\), driver 550\.54\.15/);
  });

  it("a missing torch fails only when the python runner is asked for", async () => {
    const world = {
      findPython: async () => ({ ok: false as const, message: "none found" }),
      device: async () => ({ ok: false as const, why: "x" }),
    };
    expect((await checkPython({ runner: "demo" }, world, false)).verdict).toBe("warn");
    expect((await checkPython({ runner: "python" }, world, false)).verdict).toBe("fail");
  });

  it("a CPU-only PyTorch on a machine with GPUs warns and says to install a CUDA build", async () => {
    const world = {
      findPython: async () => ({ ok: true as const, python: "python3", torch: "2.5.0" }),
      device: async () => ({ ok: true as const, found: { torch: "2.5.0", device: "cpu", cuda_devices: 0 } }),
    };
    expect((await checkPython({ runner: "python" }, world, false)).verdict).toBe("pass");
    const withGpu = await checkPython({ runner: "python" }, world, true);
    expect(withGpu.verdict).toBe("warn");
    expect(withGpu.fix).toMatch(/CUDA build/);
  });

  it("an old Node fails", () => {
    expect(checkNode({ nodeVersion: "20.20.2" }).verdict).toBe("fail");
    expect(checkNode({ nodeVersion: "24.9.0" }).verdict).toBe("pass");
  });

  it("the cache check writes under the cache's disk, measures it, and leaves nothing behind", () => {
    const parent = mkdtempSync(join(tmpdir(), "doctor-cache-"));
    const dir = join(parent, "not", "yet");
    const r = checkCache({ cacheDir: dir });
    expect(r.detail).toMatch(/not there yet/);
    expect(r.detail).toMatch(/GiB free, writes \d+ MB\/s/);
    expect(existsSync(join(parent, "not"))).toBe(false);
    expect(readdirSync(parent)).toEqual([]);
  });

  it("an unwritable cache fails with how to fix it", () => {
    const r = checkCache({ cacheDir: "/proc/floodgate-cache" });
    expect(r.verdict).toBe("fail");
  });

  it("the clock passes within the Date header's resolution, warns past 5 s and fails past a minute", async () => {
    expect((await clock(800)).verdict).toBe("pass");
    expect((await clock(-10_000)).verdict).toBe("warn");
    const far = await clock(SKEW_FAIL_MS + 5_000);
    expect(far.verdict).toBe("fail");
    expect(far.detail).toMatch(/ahead of the edge's/);
  });

  it("the edge's own time in /healthz is read to the millisecond, before the Date header", async () => {
    expect((await clock(4_500, true)).verdict).toBe("pass");
    expect((await clock(5_200, true)).verdict).toBe("warn");
  });

  it("the token's scope is checked against the model the runner serves, and its expiry", async () => {
    expect(await token({})).toMatchObject({ verdict: "pass" });
    expect((await token({ models: ["other"] })).detail).toMatch(/does not cover demo/);
    expect((await token({ models: ["demo"] }, "python")).verdict).toBe("warn");
    expect((await token({ expiresInMs: 86_400_000 })).fix).toMatch(/expires soon/);
    expect(await token({ whoami: 401 })).toMatchObject({ verdict: "fail", detail: expect.stringMatching(/refuses/) });
  });

  it("no URL fails the edge, clock and token checks with the flag to pass", async () => {
    const rs = await checkEdge({ ...base, url: undefined }, { fetch: edge(), now: () => NOW });
    expect(rs.map((r) => r.verdict)).toEqual(["fail", "fail", "fail"]);
    expect(rs[0]?.fix).toMatch(/--url/);
  });

  it("ready means nothing failed; warnings are allowed and every problem prints its fix", () => {
    const rs: CheckResult[] = [
      { name: "gpu", verdict: "warn", detail: "none", fix: "install a driver" },
      { name: "edge", verdict: "pass", detail: "ok" },
    ];
    expect(ready(rs)).toBe(true);
    expect(renderDoctor(rs)).toMatch(/fix: install a driver[\s\S]*ready \(1 warning\)/);
    expect(ready([...rs, { name: "token", verdict: "fail", detail: "bad" }])).toBe(false);
  });
});
