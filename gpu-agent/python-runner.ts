/**
 * How the agent starts the PyTorch runner (`--runner python`): which interpreter (one that can
 * import torch, msgpack and numpy) and which arguments. The runner itself is the Python package
 * in gpu-agent/python (docs/runner-protocol.md, "The PyTorch runner"). Called by main.ts.
 */
import { execFile } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { AgentConfig } from "./config.ts";

const HERE = dirname(fileURLToPath(import.meta.url));

/** The runner's entry script: running a file puts its folder (the package's parent) on sys.path. */
export const PYTHON_SERVE = join(HERE, "python", "serve.py");

/** Interpreters tried in order when `--python` is absent. */
export const PYTHON_CANDIDATES = ["python3", "/usr/bin/python3"] as const;

/** Built-in models the python runner serves. */
export const PYTHON_MODELS = ["reference"] as const;

/** What the probe imports: everything the runner needs beyond the standard library. */
const PROBE = "import msgpack, numpy, torch; print(torch.__version__)";
/** Importing torch from a cold disk can take a while (ms). */
const PROBE_TIMEOUT_MS = 60_000;

export type Probe = (python: string) => Promise<{ ok: true; torch: string } | { ok: false; why: string }>;

/** Runs `python -c "import msgpack, numpy, torch"` and says whether it worked, and if not why. */
export const probePython: Probe = async (python) =>
  await new Promise((res) => {
    execFile(python, ["-c", PROBE], { timeout: PROBE_TIMEOUT_MS }, (err, stdout, stderr) => {
      if (!err) {
        res({ ok: true, torch: stdout.trim() });
        return;
      }
      const code = (err as NodeJS.ErrnoException).code;
      const last = stderr.trim().split("\n").at(-1);
      res({ ok: false, why: code === "ENOENT" ? "not found" : last || err.message });
    });
  });

/**
 * The interpreter to run the runner with: `explicit` (from `--python`) when given, else the first
 * of {@link PYTHON_CANDIDATES} that can import torch. An error value says what was tried and why
 * each failed, and how to fix it.
 *
 * @example
 * const found = await findPython(config.python);
 * if (!found.ok) throw new FatalAgentError(found.message);
 */
export async function findPython(
  explicit: string | undefined,
  probe: Probe = probePython,
): Promise<{ ok: true; python: string; torch: string } | { ok: false; message: string }> {
  const candidates = explicit === undefined ? [...PYTHON_CANDIDATES] : [explicit];
  const tried: string[] = [];
  for (const python of candidates) {
    const r = await probe(python);
    if (r.ok) return { ok: true, python, torch: r.torch };
    tried.push(`${python}: ${r.why}`);
  }
  const hint =
    explicit === undefined
      ? "install PyTorch for one of them (Debian: apt-get install python3-torch python3-msgpack python3-numpy) or pass --python PATH"
      : "pass --python an interpreter that can import torch, msgpack and numpy";
  return {
    ok: false,
    message: `the python runner needs a Python that can import torch, msgpack and numpy; none found (${tried.join("; ")}): ${hint}`,
  };
}

/** The runner's arguments for an agent configuration (after the interpreter). */
export function pythonRunnerArgs(config: Pick<AgentConfig, "model" | "model_size" | "cache_dir" | "slots">): string[] {
  return [
    // -B: no __pycache__ beside the sources; the runner is started from the repository.
    "-B",
    PYTHON_SERVE,
    "--model",
    config.model,
    "--model-size",
    config.model_size,
    // The reference model's random weights are generated here on first use.
    "--cache-dir",
    resolve(config.cache_dir),
    "--max-batch",
    String(config.slots ?? 4),
  ];
}

/**
 * The runner's arguments for one replica of a model version (after the interpreter): the
 * version's directory as the agent assembled it, and its `max_batch`.
 */
export function pythonVersionArgs(dir: string, maxBatch: number, cacheDir: string): string[] {
  return ["-B", PYTHON_SERVE, "--model-dir", dir, "--cache-dir", resolve(cacheDir), "--max-batch", String(maxBatch)];
}

/** Where the python runner would run, as its own `pick_device` decides (server.py, `--device auto`). */
export interface RunnerDevice {
  torch: string;
  /** `cpu`, `cuda` or `cuda:N`. */
  device: string;
  /** CUDA devices this PyTorch sees (0 without CUDA). */
  cuda_devices: number;
  /** The first CUDA device's name, when there is one. */
  cuda_name?: string;
}

/**
 * Asks an interpreter which device the python runner would sample on, with the runner's own
 * `pick_device` (so the answer cannot drift from what it does) and the `FLOODGATE_DEVICE` the
 * runner would see. Changes nothing. Called by `floodgate doctor`.
 */
export async function probeRunnerDevice(
  python: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ ok: true; found: RunnerDevice } | { ok: false; why: string }> {
  const script = [
    "import json, os, sys",
    "sys.path.insert(0, sys.argv[1])",
    "import torch",
    "from floodgate_runner.server import pick_device",
    'd = pick_device(os.environ.get("FLOODGATE_DEVICE") or "auto")',
    "n = torch.cuda.device_count() if torch.cuda.is_available() else 0",
    'out = {"torch": torch.__version__, "device": str(d), "cuda_devices": n}',
    'if n: out["cuda_name"] = torch.cuda.get_device_name(0)',
    "print(json.dumps(out))",
  ].join("\n");
  return await new Promise((res) => {
    execFile(
      python,
      ["-B", "-c", script, dirname(PYTHON_SERVE)],
      { timeout: PROBE_TIMEOUT_MS, env },
      (err, stdout, stderr) => {
        if (err) {
          const last = stderr.trim().split("\n").at(-1);
          res({ ok: false, why: (err as NodeJS.ErrnoException).code === "ENOENT" ? "not found" : last || err.message });
          return;
        }
        try {
          res({ ok: true, found: JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as RunnerDevice });
        } catch {
          res({ ok: false, why: `unexpected answer: ${stdout.trim().slice(0, 200)}` });
        }
      },
    );
  });
}
