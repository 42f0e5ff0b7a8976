import { describe, expect, it } from "vitest";
import { FatalAgentError } from "./agent.ts";
import { runnerCommand } from "./main.ts";
import { findPython, PYTHON_SERVE, probePython, pythonRunnerArgs, type Probe } from "./python-runner.ts";

/** A probe that knows which interpreters have torch, and records what it was asked. */
function fakeProbe(withTorch: string[], asked: string[] = []): Probe {
  return async (python) => {
    asked.push(python);
    return withTorch.includes(python) ? { ok: true, torch: "2.5.1" } : { ok: false, why: "No module named 'torch'" };
  };
}

const CONFIG = {
  runner: "python",
  model: "reference",
  model_size: "tiny",
  python: undefined,
  cache_dir: "/var/cache/floodgate",
  slots: undefined,
} as const;

describe("finding the python runner's interpreter", () => {
  it("without --python, the first of python3 on the PATH and /usr/bin/python3 that imports torch is taken", async () => {
    const asked: string[] = [];
    expect(await findPython(undefined, fakeProbe(["/usr/bin/python3"], asked))).toEqual({
      ok: true,
      python: "/usr/bin/python3",
      torch: "2.5.1",
    });
    expect(asked).toEqual(["python3", "/usr/bin/python3"]);
    expect(await findPython(undefined, fakeProbe(["python3", "/usr/bin/python3"]))).toMatchObject({
      python: "python3",
    });
  });

  it("--python is the only interpreter tried", async () => {
    const asked: string[] = [];
    const r = await findPython("/opt/py/bin/python", fakeProbe(["python3"], asked));
    expect(asked).toEqual(["/opt/py/bin/python"]);
    expect(r).toMatchObject({
      ok: false,
      message: expect.stringContaining("/opt/py/bin/python: No module named 'torch'"),
    });
  });

  it("when none can import torch the message names each one tried, why, and the fix", async () => {
    const r = await findPython(undefined, fakeProbe([]));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message).toContain("python3: No module named 'torch'");
    expect(r.message).toContain("/usr/bin/python3: No module named 'torch'");
    expect(r.message).toContain("apt-get install python3-torch");
  });

  it("an interpreter that does not exist is reported as not found", async () => {
    expect(await probePython("/nonexistent/floodgate/python3")).toEqual({ ok: false, why: "not found" });
  });
});

describe("the python runner's command", () => {
  it("runs serve.py with the model, its size, the agent's cache and the slots as max_batch", async () => {
    const cmd = await runnerCommand({ ...CONFIG, slots: 2 }, {}, fakeProbe(["python3"]));
    expect(cmd).toEqual({
      command: "python3",
      args: [
        "-B",
        PYTHON_SERVE,
        "--model",
        "reference",
        "--model-size",
        "tiny",
        "--cache-dir",
        "/var/cache/floodgate",
        "--max-batch",
        "2",
      ],
    });
    expect(pythonRunnerArgs({ ...CONFIG, model_size: "large" })).toContain("large");
    expect(pythonRunnerArgs(CONFIG).at(-1)).toBe("4");
  });

  it("no usable Python, or a model it does not serve, is a fatal setup error", async () => {
    await expect(runnerCommand(CONFIG, {}, fakeProbe([]))).rejects.toBeInstanceOf(FatalAgentError);
    await expect(runnerCommand({ ...CONFIG, model: "sdxl" }, {}, fakeProbe(["python3"]))).rejects.toThrow(
      /serves reference/,
    );
  });
});
