/**
 * Starts an agent from its configuration: the runner process for `--runner`, or (without it)
 * what serving the rollout needs — the GPUs to place replicas on and how to start a version's
 * runner —, the output encoder, and the signal handling (SIGTERM drains; a second SIGTERM gives
 * every lease back without spending attempts and exits). Called by `floodgate agent`.
 */
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, defaultName, FatalAgentError, type Encoder } from "./agent.ts";
import type { RunnerLike } from "./runner/like.ts";
import { type AgentConfig, evictionMarks } from "./config.ts";
import { encodeOutputs, encodePng } from "./encode.ts";
import { cudaVisibleDevices, gpuHealth } from "./gpu.ts";
import { claimIdentity, identityGroup } from "./identity.ts";
import { findPython, PYTHON_MODELS, pythonRunnerArgs, pythonVersionArgs, type Probe } from "./python-runner.ts";
import { RunnerHost, RunnerJobError } from "./runner/host.ts";
import type { ReplicaLaunch, ServeOptions } from "./versions/manager.ts";
import { ByteBucket } from "./versions/bucket.ts";
import { VersionCache } from "./versions/fetch.ts";
import { PieceServer } from "./versions/peer-server.ts";
import { Swarm } from "./versions/swarm.ts";
import { TransferBar } from "./versions/progress.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
/** `.ts` run from the sources, `.js` from the built package (scripts/build-package.ts). */
const EXT = extname(fileURLToPath(import.meta.url));

/**
 * The command that starts the configured runner. For `python` it finds an interpreter that can
 * import torch (`--python`, else python3 on the PATH, else /usr/bin/python3); a setup the agent
 * cannot run is a {@link FatalAgentError} that says what to fix.
 */
export async function runnerCommand(
  config: Pick<AgentConfig, "model" | "model_size" | "python" | "cache_dir" | "slots"> & {
    runner: NonNullable<AgentConfig["runner"]>;
  },
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

/** How long a version's runner may take to load it (ms): large weights from a cold disk are slow. */
const LOAD_TIMEOUT_MS = 10 * 60_000;

/**
 * How an agent serving the rollout starts a replica's runner: the version's runner kind on its
 * directory, seeing only its GPUs (`CUDA_VISIBLE_DEVICES`, none for a CPU replica, numbered as
 * nvidia-smi numbers them), then checks that its hello names the version and has it loaded.
 * Rejects with why it could not; the version is then reported failed.
 */
export function versionRunners(
  config: Pick<AgentConfig, "python" | "cache_dir">,
  log: (line: string) => void,
  probe?: Probe,
): (launch: ReplicaLaunch) => Promise<RunnerLike> {
  let python: Promise<string> | undefined;
  const interpreter = async (): Promise<string> => {
    python ??= findPython(config.python, probe).then((found) => {
      if (found.ok) return found.python;
      python = undefined;
      throw new Error(found.message);
    });
    return await python;
  };
  return async (launch) => {
    const { model, version, dir, manifest } = launch;
    const name = `${model}@${version}#${launch.replica}`;
    let command: string;
    let args: string[];
    switch (manifest.runner) {
      case "demo":
        command = process.execPath;
        args = [join(HERE, "runners", "demo.ts"), "--version-dir", dir];
        break;
      case "python":
        command = await interpreter();
        args = pythonVersionArgs(dir, manifest.max_batch, config.cache_dir);
        break;
    }
    const env: NodeJS.ProcessEnv = { ...process.env, CUDA_VISIBLE_DEVICES: launch.gpus.join(",") };
    // CUDA numbers devices fastest first unless told otherwise; nvidia-smi (and --gpus) by bus.
    if (launch.gpus.length > 0) env.CUDA_DEVICE_ORDER = "PCI_BUS_ID";
    const host = await RunnerHost.start({ command, args, env, onLog: (l) => log(`[runner ${name}] ${l}`) });
    try {
      if (!host.hello.models.some((m) => m.model === model && m.version === version)) {
        throw new Error(
          `its runner serves ${host.hello.models.map((m) => `${m.model}@${m.version}`).join(", ") || "nothing"}, not ${model}@${version}`,
        );
      }
      await host.load(model, version, { timeoutMs: LOAD_TIMEOUT_MS });
    } catch (err) {
      await host.close();
      if (err instanceof RunnerJobError) {
        throw new Error(`its runner could not load it (${err.code}): ${err.message}`, { cause: err });
      }
      throw err;
    }
    return asRunner(host);
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
  const name = config.name ?? defaultName();
  let startRunner: (() => Promise<RunnerLike>) | undefined;
  let serve: ServeOptions | undefined;
  let swarm: Swarm | undefined;
  if (config.runner !== undefined) {
    let command: string;
    let args: string[];
    try {
      ({ command, args } = await runnerCommand({ ...config, runner: config.runner }));
    } catch (err) {
      if (!(err instanceof FatalAgentError)) throw err;
      // A setup that cannot work (no usable Python, an unknown model): say so, exit 2.
      log(`floodgate agent: ${err.message}`);
      return 2;
    }
    if (config.runner === "python") log(`[agent] python runner: ${command} ${args.join(" ")}`);
    const cuda = cudaVisibleDevices(config.gpus);
    const runnerEnv = cuda === undefined ? process.env : { ...process.env, CUDA_VISIBLE_DEVICES: cuda };
    startRunner = async () =>
      asRunner(await RunnerHost.start({ command, args, env: runnerEnv, onLog: (l) => log(`[runner] ${l}`) }));
  } else {
    // An explicit --gpus list is taken as given; `all` is every GPU this machine shows.
    const gpus = config.gpus === "all" ? (await gpuHealth("all")).map((g) => g.index) : [...config.gpus];
    log(
      `[agent ${name}] serving what the rollout says, on ${gpus.length > 0 ? `GPU ${gpus.join(",")}` : "the CPU"}; versions cached in ${join(config.cache_dir, "versions")}`,
    );
    const upload = config.max_upload_mibps === undefined ? undefined : new ByteBucket(config.max_upload_mibps);
    const download = config.max_download_mibps === undefined ? undefined : new ByteBucket(config.max_download_mibps);
    let server: PieceServer | undefined;
    if (config.peer_addr !== undefined) {
      server = new PieceServer(new VersionCache(config.cache_dir), upload);
      const at = config.peer_addr.lastIndexOf(":");
      const host = config.peer_addr.slice(0, at);
      // A loopback address is served on loopback only; any other on every interface (the
      // announced address may be a NAT's, not one this machine has).
      const listenOn = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/.test(host) ? host.replace(/^\[|\]$/g, "") : "0.0.0.0";
      const port = await server.listen(config.peer_port ?? Number(config.peer_addr.slice(at + 1)), listenOn);
      log(`[agent ${name}] serving weight pieces to peers on ${listenOn}:${port}, announced as ${config.peer_addr}`);
    }
    swarm = new Swarm({
      ...(config.peer_addr === undefined ? {} : { addr: config.peer_addr }),
      ...(server ? { server } : {}),
      ...(download ? { download } : {}),
    });
    const bar = new TransferBar(process.stderr);
    serve = {
      gpus,
      cacheDir: config.cache_dir,
      eviction: evictionMarks(config),
      startRunner: versionRunners(config, log),
      swarm,
      ...(download ? { download } : {}),
      onTransfer: (model, version, p) => bar.update(`${model}@${version}`, p),
    };
  }
  const identity = claimIdentity(resolve(config.cache_dir), identityGroup(config.gpus));
  log(`[agent ${name}] agent id ${identity.agentId} (${join(config.cache_dir, identity.slot)})`);
  const agent = new Agent({
    url: config.url,
    token: config.token,
    name,
    agentId: identity.agentId,
    freshId: () => identity.renew(),
    slots: config.slots,
    prefetch: config.prefetch,
    maxVramPct: config.max_vram_pct,
    preemptible: config.preemptible,
    ...(startRunner ? { startRunner } : { serve }),
    encoder,
    inputsDir: join(config.cache_dir, "inputs"),
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
        // A drain that outlasts its deadline gives the rest back, before a supervisor kills us; a
        // preemptible machine goes away sooner, at its reclaim deadline. Either way what has not
        // finished goes back to its queue without spending an attempt.
        deadline = config.preemptible
          ? setTimeout(() => {
              log(`[agent ${name}] reclaim deadline (${config.preempt_grace_s} s): giving the running jobs back`);
              void agent.abort("preempted").then(() => resolveExit(0));
            }, config.preempt_grace_s * 1000)
          : setTimeout(() => {
              log(`[agent ${name}] drain took over ${config.drain_timeout_s} s: giving every lease back and exiting`);
              void agent.abort().then(() => resolveExit(0));
            }, config.drain_timeout_s * 1000);
        void agent.drain("SIGTERM").then(async () => {
          clearTimeout(deadline);
          await agent.close();
          await swarm?.close();
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
      void agent
        .close()
        .then(() => swarm?.close())
        .then(() => resolveExit(3));
    });
    agent.on("reclaimed", () => void agent.close().then(() => resolveExit(0)));
    agent.on("connected", () => log(`[agent ${name}] connected to ${config.url}`));
    agent.start().catch((err: Error) => {
      log(`[agent ${name}] could not start: ${err.message}`);
      resolveExit(err instanceof FatalAgentError ? 2 : 1);
    });
  });
}
