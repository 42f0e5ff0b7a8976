/**
 * Starts an agent from its configuration: the runner process for `--runner`, the output
 * encoder, and the signal handling (SIGTERM drains; a second SIGTERM gives every lease back
 * without spending attempts and exits). Called by `floodgate agent`.
 */
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, defaultName, FatalAgentError, stableAgentId, type Encoder, type RunnerLike } from "./agent.ts";
import type { AgentConfig } from "./config.ts";
import { encodeOutputs, encodePng } from "./encode.ts";
import { RunnerHost } from "./runner/host.ts";

const HERE = dirname(fileURLToPath(import.meta.url));

/** The command that starts a runner of a kind. */
export function runnerCommand(
  kind: AgentConfig["runner"],
  env: NodeJS.ProcessEnv = process.env,
): { command: string; args: string[] } {
  switch (kind) {
    case "demo":
      return { command: process.execPath, args: [join(HERE, "runners", "demo.ts")] };
    case "synthetic":
      return {
        command: process.execPath,
        args: [
          join(HERE, "runners", "synthetic.ts"),
          ...(env.FLOODGATE_SYNTHETIC_ARGS ?? "").split(" ").filter(Boolean),
        ],
      };
    case "python":
      throw new FatalAgentError("the python runner is not part of this build; use --runner demo or --runner synthetic");
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
  const { command, args } = runnerCommand(config.runner);
  const name = config.name ?? defaultName();
  const agent = new Agent({
    url: config.url,
    token: config.token,
    name,
    agentId: stableAgentId(resolve(config.cache_dir)),
    slots: config.slots,
    prefetch: config.prefetch,
    maxVramPct: config.max_vram_pct,
    startRunner: async () => asRunner(await RunnerHost.start({ command, args, onLog: (l) => log(`[runner] ${l}`) })),
    encoder,
    log: (l) => log(`[agent ${name}] ${l}`),
  });
  return await new Promise<number>((resolveExit) => {
    let terms = 0;
    const onTerm = (): void => {
      terms++;
      if (terms === 1) {
        void agent.drain("SIGTERM").then(async () => {
          await agent.close();
          resolveExit(0);
        });
      } else {
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
