/**
 * `floodgate doctor [--url … --token …] [--json]`: checks that this machine can serve as an agent,
 * without changing it (the one write is a timed temporary file under the cache directory,
 * removed at once). Each check passes, warns or fails, and says exactly what to fix; the exit
 * code is 0 only when nothing failed. The checks: the GPUs and the NVIDIA driver, Node, Python
 * and PyTorch for the python runner and the device it would use, the cache directory's free space
 * and write speed, the edge reachable, the clock against the edge's, and the token (valid, live,
 * its scope). Flags fall back on the agent's environment variables (gpu-agent/config.ts), so
 * doctor checks the configuration `floodgate agent` would run with.
 */
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, fsyncSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { z } from "zod";
import { AGENT_FLAGS, RUNNERS } from "../gpu-agent/config.ts";
import { gpuInventory, type GpuInventoryEntry } from "../gpu-agent/gpu.ts";
import { findPython, probeRunnerDevice, PYTHON_MODELS, type RunnerDevice } from "../gpu-agent/python-runner.ts";
import { AgentWhoami } from "../shared/tokens.ts";
import { parseFlags, UsageError } from "./flags.ts";

export type Verdict = "pass" | "warn" | "fail";

/** One check's outcome: what was found, and for a warning or failure what to do. */
export interface CheckResult {
  name: string;
  verdict: Verdict;
  detail: string;
  fix?: string;
}

/** Below this free space on the cache's disk the agent cannot work (bytes). */
export const CACHE_FAIL_BELOW_BYTES = 1 << 30;
/**
 * Below this it works but warns. A hook for the weight cache: once agents keep model versions
 * on local disk, this becomes the room the versions it would serve need, from their manifests.
 */
export const CACHE_WARN_BELOW_BYTES = 20 * (1 << 30);
/** The timed write (bytes): small enough to be quick, large enough to pass the page cache's first flush. */
export const WRITE_PROBE_BYTES = 32 << 20;
/** Below this write speed the cache warns: pieces would be written slower than a network brings them (bytes/s). */
export const WRITE_WARN_BELOW_BPS = 100e6;
/** Clock skew against the edge that warns, and that fails (ms); the `Date` header has 1 s resolution. */
export const SKEW_WARN_MS = 5_000;
export const SKEW_FAIL_MS = 60_000;
/** A token this close to its expiry warns (ms). */
export const TOKEN_WARN_BEFORE_MS = 7 * 86_400_000;
/** The Node the agent needs: its runners use `import.meta.main`. */
export const NODE_MIN: readonly [number, number] = [22, 18];

/** What doctor checks with: the agent's flags that matter here. */
export interface DoctorOptions {
  url?: string;
  token?: string;
  cacheDir: string;
  runner: (typeof RUNNERS)[number];
  python?: string;
  model: string;
}

/** What doctor looks at, replaceable in tests (the machine itself lies outside the system). */
export interface DoctorWorld {
  gpus: typeof gpuInventory;
  findPython: typeof findPython;
  device: typeof probeRunnerDevice;
  fetch: typeof fetch;
  now: () => number;
  nodeVersion: string;
}

const REAL_WORLD: DoctorWorld = {
  gpus: gpuInventory,
  findPython,
  device: probeRunnerDevice,
  fetch: (input, init) => fetch(input, init),
  now: () => Date.now(),
  nodeVersion: process.versions.node,
};

function gib(bytes: number): string {
  return `${(bytes / (1 << 30)).toFixed(1)} GiB`;
}

/** GPUs and the driver. None is a warning: the agent still serves its CPU runners. */
export async function checkGpus(world: Pick<DoctorWorld, "gpus">): Promise<CheckResult> {
  const inv = await world.gpus();
  if (!inv.ok && inv.missing) {
    return {
      name: "gpu",
      verdict: "warn",
      detail:
        "no NVIDIA GPU visible (nvidia-smi not found): the agent would run its runners on the CPU only (demo and synthetic; the python runner on the CPU)",
      fix: "on a GPU host install the NVIDIA driver (nvidia-smi comes with it); in a container, start it with the GPUs (docker run --gpus all, or the NVIDIA device plugin on Kubernetes)",
    };
  }
  if (!inv.ok) {
    return {
      name: "gpu",
      verdict: "fail",
      detail: `nvidia-smi is installed but fails: ${inv.why}`,
      fix: "the driver is not loaded or does not match its tools: reboot after a driver install, or reinstall the driver (nvidia-smi must list the GPUs)",
    };
  }
  if (inv.gpus.length === 0) {
    return {
      name: "gpu",
      verdict: "fail",
      detail: "nvidia-smi runs but lists no GPU",
      fix: "check that the GPUs are attached to this machine or container (CUDA_VISIBLE_DEVICES, --gpus)",
    };
  }
  const drivers = [...new Set(inv.gpus.map((g) => g.driver_version))];
  const list = inv.gpus
    .map(
      (g: GpuInventoryEntry) =>
        `${g.index}: ${g.name}${g.memory_total_mb === undefined ? "" : ` ${Math.round(g.memory_total_mb / 1024)} GiB`}`,
    )
    .join(", ");
  return { name: "gpu", verdict: "pass", detail: `${inv.gpus.length} GPU(s), driver ${drivers.join("/")}: ${list}` };
}

/** Node itself: the version the agent and its runners need. */
export function checkNode(world: Pick<DoctorWorld, "nodeVersion">): CheckResult {
  const [major = 0, minor = 0] = world.nodeVersion.split(".").map(Number);
  const ok = major > NODE_MIN[0] || (major === NODE_MIN[0] && minor >= NODE_MIN[1]);
  return ok
    ? { name: "node", verdict: "pass", detail: `Node ${world.nodeVersion}` }
    : {
        name: "node",
        verdict: "fail",
        detail: `Node ${world.nodeVersion} is older than the agent needs (${NODE_MIN.join(".")})`,
        fix: "install Node 24 (the project pins 24.9.0), e.g. from nodejs.org or your distribution's nodesource packages",
      };
}

/** Python and PyTorch for the python runner, and the device it would sample on. */
export async function checkPython(
  opts: Pick<DoctorOptions, "python" | "runner">,
  world: Pick<DoctorWorld, "findPython" | "device">,
  hasGpu: boolean,
): Promise<CheckResult> {
  const found = await world.findPython(opts.python);
  const needed = opts.runner === "python";
  if (!found.ok) {
    return {
      name: "python",
      verdict: needed ? "fail" : "warn",
      detail: needed
        ? `--runner python cannot start: ${found.message}`
        : `the python runner could not start here (the ${opts.runner} runner needs no Python): ${found.message}`,
      fix: "apt-get install python3-torch python3-msgpack python3-numpy (Debian), or pip install torch msgpack numpy, or pass --python PATH",
    };
  }
  const dev = await world.device(found.python);
  if (!dev.ok) {
    return {
      name: "python",
      verdict: needed ? "fail" : "warn",
      detail: `${found.python} imports torch ${found.torch} but the runner's device probe failed: ${dev.why}`,
      fix: "run the probe by hand to see the whole error: python3 -c 'import torch; print(torch.cuda.is_available())'",
    };
  }
  const d: RunnerDevice = dev.found;
  const where = d.device.startsWith("cuda")
    ? `${d.device} (${d.cuda_devices} CUDA device(s)${d.cuda_name ? `, ${d.cuda_name}` : ""})`
    : "cpu";
  const detail = `${found.python}: torch ${d.torch}; the python runner would sample on ${where}`;
  if (hasGpu && !d.device.startsWith("cuda")) {
    return {
      name: "python",
      verdict: "warn",
      detail: `${detail}, although this machine has NVIDIA GPUs: this PyTorch has no CUDA`,
      fix: "install a CUDA build of PyTorch (pip install torch from the CUDA index matching the driver), or pass --python an interpreter that has one",
    };
  }
  return { name: "python", verdict: "pass", detail };
}

/** The cache directory's disk: free space, and a timed write of {@link WRITE_PROBE_BYTES}. */
export function checkCache(opts: Pick<DoctorOptions, "cacheDir">, now: () => number = Date.now): CheckResult {
  const dir = resolve(opts.cacheDir);
  // The nearest folder that exists: the agent creates the rest, on that disk.
  let existing = dir;
  while (!existsSync(existing) && dirname(existing) !== existing) existing = dirname(existing);
  const pending = existing === dir ? "" : ` (not there yet: the agent creates it under ${existing})`;
  let free: number;
  try {
    const fs = statfsSync(existing);
    free = fs.bavail * fs.bsize;
  } catch (err) {
    return {
      name: "cache",
      verdict: "fail",
      detail: `${dir}: ${(err as Error).message}`,
      fix: "pass --cache-dir a folder on a local disk",
    };
  }
  let probe: string | undefined;
  let bps: number;
  try {
    probe = mkdtempSync(join(existing, ".floodgate-doctor-"));
    const file = join(probe, "write-test");
    const chunk = randomBytes(1 << 20);
    const t0 = now();
    const fd = openSync(file, "w");
    try {
      for (let written = 0; written < WRITE_PROBE_BYTES; written += chunk.length) writeSync(fd, chunk);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    bps = WRITE_PROBE_BYTES / (Math.max(1, now() - t0) / 1000);
  } catch (err) {
    return {
      name: "cache",
      verdict: "fail",
      detail: `${dir}${pending}: cannot write there: ${(err as Error).message}`,
      fix: `give the agent's user write access (chown it) or pass --cache-dir a writable folder (FLOODGATE_CACHE_DIR)`,
    };
  } finally {
    if (probe !== undefined) rmSync(probe, { recursive: true, force: true });
  }
  const detail = `${dir}${pending}: ${gib(free)} free, writes ${(bps / 1e6).toFixed(0)} MB/s`;
  if (free < CACHE_FAIL_BELOW_BYTES) {
    return {
      name: "cache",
      verdict: "fail",
      detail,
      fix: `free space on that disk (at least ${gib(CACHE_FAIL_BELOW_BYTES)}) or move --cache-dir`,
    };
  }
  if (free < CACHE_WARN_BELOW_BYTES) {
    return {
      name: "cache",
      verdict: "warn",
      detail,
      fix: `model weights need room: keep ${gib(CACHE_WARN_BELOW_BYTES)} or more free, or put --cache-dir on a larger (NVMe) disk`,
    };
  }
  if (bps < WRITE_WARN_BELOW_BPS) {
    return {
      name: "cache",
      verdict: "warn",
      detail,
      fix: `a local NVMe disk writes GB/s: put --cache-dir on one (network and overlay file systems are slow for weights)`,
    };
  }
  return { name: "cache", verdict: "pass", detail };
}

/** The edge, the clock against it, and the token: three results from two requests. */
export async function checkEdge(
  opts: Pick<DoctorOptions, "url" | "token" | "runner" | "model">,
  world: Pick<DoctorWorld, "fetch" | "now">,
): Promise<CheckResult[]> {
  if (opts.url === undefined) {
    const fix = `pass --url (or set ${AGENT_FLAGS.url.env}): the agent needs it too`;
    return [
      { name: "edge", verdict: "fail", detail: "no edge URL given", fix },
      { name: "clock", verdict: "fail", detail: "not checked: no edge to compare with", fix },
      { name: "token", verdict: "fail", detail: "not checked: no edge to ask", fix },
    ];
  }
  const base = opts.url.replace(/\/+$/, "");
  const out: CheckResult[] = [];
  let date: string | null = null;
  let mid = 0;
  let reached = false;
  let precise = false;
  try {
    const t0 = world.now();
    const r = await world.fetch(`${base}/healthz`, { signal: AbortSignal.timeout(10_000) });
    const t1 = world.now();
    mid = (t0 + t1) / 2;
    reached = true;
    date = r.headers.get("date");
    const body = (await r.json().catch(() => null)) as { version?: unknown; time?: unknown } | null;
    // The edge's own clock (ms) when it says it; else the Date header (whole seconds), which
    // Cloudflare adds but a local workerd does not.
    if (typeof body?.time === "string") {
      date = body.time;
      precise = true;
    }
    if (!r.ok) {
      out.push({
        name: "edge",
        verdict: "fail",
        detail: `${base}/healthz answered ${r.status}`,
        fix: "check the URL: it is the edge's base URL (https://…), not a path under it",
      });
    } else {
      const version = typeof body?.version === "string" ? ` (version ${body.version})` : "";
      out.push({ name: "edge", verdict: "pass", detail: `${base} answers in ${Math.round(t1 - t0)} ms${version}` });
    }
  } catch (err) {
    const cause = (err as Error & { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (err as Error).message;
    out.push({
      name: "edge",
      verdict: "fail",
      detail: `${base} is not reachable: ${why}`,
      fix: "check the URL and that this machine may open outbound HTTPS to it (proxy, firewall, DNS)",
    });
  }
  // Clock skew from the edge's Date header, against the midpoint of the request.
  const edgeMs = date === null ? Number.NaN : Date.parse(date);
  if (!reached) {
    out.push({
      name: "clock",
      verdict: "fail",
      detail: "not checked: the edge is not reachable",
      fix: "make the edge reachable first",
    });
  } else if (Number.isNaN(edgeMs)) {
    out.push({
      name: "clock",
      verdict: "warn",
      detail: "the edge sent neither its time nor a Date header: skew not measured",
      fix: "keep NTP on (timedatectl set-ntp true)",
    });
  } else {
    const skew = mid - edgeMs;
    // The Date header has whole seconds: up to 1 s of difference is resolution, not skew.
    const abs = Math.max(0, Math.abs(skew) - (precise ? 0 : 1000));
    const detail = `this clock is ${(Math.abs(skew) / 1000).toFixed(1)} s ${skew >= 0 ? "ahead of" : "behind"} the edge's`;
    const fix =
      "turn NTP on (timedatectl set-ntp true, or chrony): logs, lease deadlines and token expiry are read against the edge's clock";
    out.push(
      abs >= SKEW_FAIL_MS
        ? { name: "clock", verdict: "fail", detail, fix }
        : abs >= SKEW_WARN_MS
          ? { name: "clock", verdict: "warn", detail, fix }
          : { name: "clock", verdict: "pass", detail },
    );
  }
  out.push(await checkToken(base, opts, world));
  return out;
}

async function checkToken(
  base: string,
  opts: Pick<DoctorOptions, "token" | "runner" | "model">,
  world: Pick<DoctorWorld, "fetch" | "now">,
): Promise<CheckResult> {
  const mint =
    "ask an admin for one: floodgate tokens create --pool NAME --models MODEL,… (or POST /v1/admin/agent-tokens)";
  if (opts.token === undefined) {
    return {
      name: "token",
      verdict: "fail",
      detail: "no agent token given",
      fix: `pass --token (or set ${AGENT_FLAGS.token.env}); ${mint}`,
    };
  }
  let r: Response;
  try {
    r = await world.fetch(`${base}/v1/agent/whoami`, {
      headers: { authorization: `Bearer ${opts.token}` },
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    return {
      name: "token",
      verdict: "fail",
      detail: `not checked: ${(err as Error).message}`,
      fix: "make the edge reachable first",
    };
  }
  if (r.status === 401) {
    return {
      name: "token",
      verdict: "fail",
      detail: "the edge refuses the token: invalid, expired or revoked",
      fix: `use a live agent token; ${mint}`,
    };
  }
  const parsed = AgentWhoami.safeParse(await r.json().catch(() => null));
  if (!r.ok || !parsed.success) {
    return {
      name: "token",
      verdict: "fail",
      detail: `GET /v1/agent/whoami answered ${r.status}${parsed.success ? "" : " with an unexpected body"}`,
      fix: "an edge older than this agent: deploy the same version of both",
    };
  }
  const who = parsed.data;
  const left = Date.parse(who.expires_at) - world.now();
  const detail = `${who.token_id}, pool ${who.pool}, models ${who.models.join(", ")}; expires ${who.expires_at} (in ${(left / 86_400_000).toFixed(1)} days)`;
  const serves = opts.runner === "demo" ? "demo" : opts.runner === "python" ? opts.model : undefined;
  if (serves !== undefined && !who.models.includes(serves)) {
    return {
      name: "token",
      verdict: "warn",
      detail: `${detail}; it does not cover ${serves}, which --runner ${opts.runner} serves: no job of ${serves} would reach this agent`,
      fix: `mint a token whose models include ${serves}, or run the runner of a model the token covers`,
    };
  }
  if (left < TOKEN_WARN_BEFORE_MS) {
    return { name: "token", verdict: "warn", detail, fix: `it expires soon: ${mint}, then restart the agent with it` };
  }
  return { name: "token", verdict: "pass", detail };
}

/** Runs every check, in the order people read them. */
export async function doctor(opts: DoctorOptions, world: DoctorWorld = REAL_WORLD): Promise<CheckResult[]> {
  const gpu = await checkGpus(world);
  const results = [gpu, checkNode(world)];
  results.push(await checkPython(opts, world, gpu.verdict === "pass"));
  results.push(checkCache(opts, world.now));
  results.push(...(await checkEdge(opts, world)));
  return results;
}

/** Ready: nothing failed (warnings say what would work better). */
export function ready(results: readonly CheckResult[]): boolean {
  return results.every((r) => r.verdict !== "fail");
}

const MARK: Record<Verdict, string> = { pass: "✓", warn: "!", fail: "✗" };

/** The human report. */
export function renderDoctor(results: readonly CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.name.length)) + 2;
  const lines = results.flatMap((r) => [
    `${MARK[r.verdict]} ${r.name.padEnd(width)}${r.detail}`,
    ...(r.fix ? [`  ${" ".repeat(width)}fix: ${r.fix}`] : []),
  ]);
  const failed = results.filter((r) => r.verdict === "fail").length;
  const warned = results.filter((r) => r.verdict === "warn").length;
  lines.push(
    "",
    failed === 0
      ? `ready${warned ? ` (${warned} warning${warned === 1 ? "" : "s"})` : ""}: floodgate agent can run here`
      : `not ready: ${failed} check${failed === 1 ? "" : "s"} failed`,
  );
  return lines.join("\n") + "\n";
}

export const DOCTOR_HELP = `floodgate doctor — check that this machine can serve as an agent, changing nothing

Options (each also from the agent's environment variable in parentheses):
  --url URL          the edge (${AGENT_FLAGS.url.env})
  --token TOKEN      the agent token (${AGENT_FLAGS.token.env})
  --cache-dir DIR    the agent's cache (${AGENT_FLAGS.cache_dir.env}; default .floodgate/agent)
  --runner KIND      demo | synthetic | python (${AGENT_FLAGS.runner.env}; default demo)
  --python PATH      the python runner's interpreter (${AGENT_FLAGS.python.env})
  --model NAME       the python runner's model (${AGENT_FLAGS.model.env}; default reference)
  --json             one JSON object: {"ready", "checks": [{name, verdict, detail, fix?}]}
  -h, --help         this text

Checks: GPUs and driver, Node, Python and PyTorch (and the device the python runner would use),
the cache disk's free space and write speed, the edge, the clock against the edge's, the token.
Exit code 0 when ready (warnings allowed), 1 when a check failed, 2 for a usage error.
`;

const DoctorFlags = z.strictObject({
  url: z.string().min(1).optional(),
  token: z.string().min(1).optional(),
  "cache-dir": z.string().min(1).optional(),
  runner: z.enum(RUNNERS).optional(),
  python: z.string().min(1).optional(),
  model: z.string().min(1).optional(),
  json: z.boolean().optional(),
  help: z.boolean().optional(),
});

/** `floodgate doctor …`: answers the exit code. */
export async function doctorCommand(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  out: (s: string) => void = (s) => process.stdout.write(s),
): Promise<number> {
  const parsed = parseFlags(
    argv,
    {
      url: { type: "string" },
      token: { type: "string" },
      "cache-dir": { type: "string" },
      runner: { type: "string" },
      python: { type: "string" },
      model: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    DoctorFlags,
  );
  if (!parsed) {
    out(DOCTOR_HELP);
    return 0;
  }
  const f = parsed.flags;
  const pick = (flag: string | undefined, key: keyof typeof AGENT_FLAGS): string | undefined =>
    flag ?? (env[AGENT_FLAGS[key].env] || undefined);
  const runnerRaw = pick(f.runner, "runner") ?? "demo";
  const runner = RUNNERS.find((r) => r === runnerRaw);
  if (runner === undefined) throw new UsageError(`--runner / ${AGENT_FLAGS.runner.env}: one of ${RUNNERS.join(", ")}`);
  const results = await doctor({
    url: pick(f.url, "url"),
    token: pick(f.token, "token"),
    cacheDir: pick(f["cache-dir"], "cache_dir") ?? ".floodgate/agent",
    runner,
    python: pick(f.python, "python"),
    model: pick(f.model, "model") ?? PYTHON_MODELS[0],
  });
  out(f.json ? JSON.stringify({ ready: ready(results), checks: results }) + "\n" : renderDoctor(results));
  return ready(results) ? 0 : 1;
}
