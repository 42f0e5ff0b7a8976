/**
 * Starts an agent from its configuration: the runner process for `--runner`, the output
 * encoder, and the signal handling (SIGTERM drains; a second SIGTERM gives every lease back
 * without spending attempts and exits). Called by `floodgate agent`.
 */
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, defaultName, FatalAgentError, type Encoder, type RunnerLike } from "./agent.ts";
import type { AgentConfig } from "./config.ts";
import { encodeOutputs, encodePng } from "./encode.ts";
import { cudaVisibleDevices, gpuHealth } from "./gpu.ts";
import { claimIdentity, identityGroup } from "./identity.ts";
import { findPython, PYTHON_MODELS, pythonRunnerArgs, type Probe } from "./python-runner.ts";
import { RunnerHost } from "./runner/host.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
/** `.ts` run from the sources, `.js` from the built package (scripts/build-package.ts). */
const EXT = extname(fileURLToPath(import.meta.url));

/**
 * The command that starts the configured runner. For `python` it finds an interpreter that can
 * import torch (`--python`, else python3 on the PATH, else /usr/bin/python3); a setup the agent
 * cannot run is a {@link FatalAgentError} that says what to fix.
 */
export async function runnerCommand(
  config: Pick<AgentConfig, "runner" | "model" | "model_size" | "python" | "cache_dir" | "slots">,
  env: NodeJS.ProcessEnv = process.env,
  probe?: Probe,
): Promise<{ command: string; args: string[] }> {
  switch (config.runner) {
    case "demo":
      return { command: process.execPath, args: [join(HERE, "runners", `demo${EXT}`)] };
    case "synthetic":
      return {
        command: process.execPath,
        args: [
          join(HERE, "runners", `synthetic${EXT}`),
          ...(env.FLOODGATE_SYNTHETIC_ARGS ?? "").split(" ").filter(Boolean),
        ],
      };
    case "python": {
      if (!(PYTHON_MODELS as readonly string[]).includes(config.model)) {
        throw new FatalAgentError(
          `--model ${config.model}: the python runner serves ${PYTHON_MODELS.join(", ")} (see docs/runner-protocol.md)`,
        );
      }
      const found = await findPython(config.python, probe);
      if (!found.ok) throw new FatalAgentError(found.message);
      return { command: found.python, args: pythonRunnerArgs(config) };
    }
  }
}

/** Adapts a runner process to what the agent needs. */
export function asRunner(host: RunnerHost): RunnerLike {
  return {
    maxBatch: host.hello.max_batch,
    models: host.hello.models,
    run: (job, on) =>
      host.run(
        { id: job.job_id, model: job.model, version: job.version, input: job.input },
        { onProgress: on.progress, onPreview: on.preview, onLog: (l) => on.log(l.level, l.message) },
      ),
    cancel: (id) => void host.cancel(id),
    close: async () => {
      await host.close();
    },
    exited: host.exited.then((e) => ({ reason: `${e.reason}: ${e.message}` })),
    get alive() {
      return host.exit === undefined;
    },
  };
}

export const encoder: Encoder = {
  outputs: (frames) => encodeOutputs(frames),
  preview: async (frame) => ({ content_type: "image/png", data: encodePng(frame) }),
};

/** Runs an agent until it is told to stop; resolves with the process exit code. */
export async function runAgent(
  config: AgentConfig,
  log: (line: string) => void = (l) => process.stderr.write(l + "\n"),
): Promise<number> {
  let command: string;
  let args: string[];
  try {
    ({ command, args } = await runnerCommand(config));
  } catch (err) {
    if (!(err instanceof FatalAgentError)) throw err;
    // A setup that cannot work (no usable Python, an unknown model): say so, exit 2.
    log(`floodgate agent: ${err.message}`);
    return 2;
  }
  if (config.runner === "python") log(`[agent] python runner: ${command} ${args.join(" ")}`);
  const name = config.name ?? defaultName();
  const identity = claimIdentity(resolve(config.cache_dir), identityGroup(config.gpus));
  log(`[agent ${name}] agent id ${identity.agentId} (${join(config.cache_dir, identity.slot)})`);
  const cuda = cudaVisibleDevices(config.gpus);
  const runnerEnv = cuda === undefined ? process.env : { ...process.env, CUDA_VISIBLE_DEVICES: cuda };
  const agent = new Agent({
    url: config.url,
    token: config.token,
    name,
    agentId: identity.agentId,
    freshId: () => identity.renew(),
    slots: config.slots,
    prefetch: config.prefetch,
    maxVramPct: config.max_vram_pct,
    startRunner: async () =>
      asRunner(await RunnerHost.start({ command, args, env: runnerEnv, onLog: (l) => log(`[runner] ${l}`) })),
    encoder,
    gpus: () => gpuHealth(config.gpus),
    log: (l) => log(`[agent ${name}] ${l}`),
  });
  process.once("exit", () => identity.release());
  return await new Promise<number>((resolveExit) => {
    let terms = 0;
    let deadline: NodeJS.Timeout | undefined;
    const onTerm = (): void => {
      terms++;
      if (terms === 1) {
        // A drain that outlasts its deadline gives the rest back, before a supervisor kills us.
        deadline = setTimeout(() => {
          log(`[agent ${name}] drain took over ${config.drain_timeout_s} s: giving every lease back and exiting`);
          void agent.abort().then(() => resolveExit(0));
        }, config.drain_timeout_s * 1000);
        void agent.drain("SIGTERM").then(async () => {
          clearTimeout(deadline);
          await agent.close();
          resolveExit(0);
        });
      } else {
        clearTimeout(deadline);
        log(`[agent ${name}] second signal: giving every lease back and exiting`);
        void agent.abort().then(() => resolveExit(0));
      }
    };
    process.on("SIGTERM", onTerm);
    process.on("SIGINT", onTerm);
    agent.on("fatal", (err: Error) => {
      log(`[agent ${name}] ${err.message}`);
      void agent.close().then(() => resolveExit(3));
    });
    agent.on("connected", () => log(`[agent ${name}] connected to ${config.url}`));
    agent.start().catch((err: Error) => {
      log(`[agent ${name}] could not start: ${err.message}`);
      resolveExit(err instanceof FatalAgentError ? 2 : 1);
    });
  });
}
