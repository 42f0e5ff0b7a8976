/**
 * The one `floodgate` command: a thin dispatcher over the local launcher, the agent and the
 * client commands (cli/client-commands.ts). Flags are parsed strictly: an unknown flag or a bad
 * value is a clear error and exit code 2.
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { agentArgOptions, agentFlagsHelp, parseAgentConfig } from "../gpu-agent/config.ts";
import { PRETEND_GPUS_ENV } from "../gpu-agent/gpu.ts";
import { runAgent } from "../gpu-agent/main.ts";
import { capacity } from "./capacity.ts";
import { CLIENT_HELP, clientCommand, isClientCommand, runCommand } from "./client-commands.ts";
import { dev } from "./dev.ts";
import { doctorCommand } from "./doctor.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { models } from "./models.ts";
import { keysCommand } from "./keys.ts";
import { usage } from "./usage.ts";
import { files } from "./files.ts";
import { webhooks } from "./webhooks.ts";
import { pools } from "./pools.ts";
import { ProvisionerConfig, startProvisioner } from "./provisioner.ts";

const HELP = `floodgate — generative-media jobs at launch-day scale

Usage:
  floodgate dev [--port 8787] [--agents 1] [--state .floodgate] [--autoscale]
      Run the whole platform locally: the edge under wrangler dev (state kept in --state),
      the built-in model versions pushed and models/rollout.yaml applied, local agents
      serving it, and print the keys (also written to <state>/local.json).
  floodgate provisioner --url URL --token TOKEN [--dir DIR] [--agent-token TOKEN]
      Carry out the edge's pool decisions: run each command pool's command (outbound long
      poll, no inbound port). See \`floodgate pools --help\`.
  floodgate agent --url URL --token TOKEN [--gpus all] [--name NAME] [--cache-dir DIR]
                  [--runner demo|synthetic|python [--slots N] [--model reference] …]
      Attach this machine to an edge as a GPU agent: one outbound WebSocket, no inbound port.
      It serves the model versions the rollout names for its token's models (fetched into
      --cache-dir), or with --runner that one runner. Every flag can also come from the
      environment (FLOODGATE_URL, FLOODGATE_AGENT_TOKEN, …).
${CLIENT_HELP}  floodgate doctor [--url URL --token TOKEN] [--cache-dir DIR] [--runner KIND] [--json]
      Check this machine for \`floodgate agent\`: GPUs, Python/torch, cache disk, edge, clock,
      token. Changes nothing; exit 0 only when ready.
  floodgate keys list | new NAME [--rotate FILE] [--retire KID]
      Make the edge's secrets for a deployment (docs/deploy.md).
  floodgate help
      This text.

Run it as \`npx floodgate …\` inside the repository (\`npm start\` is \`floodgate dev\`).
`;

const DEV_HELP = `floodgate dev — run the whole platform locally

Options:
  --port N      port of the edge on 127.0.0.1 (default 8787)
  --agents N    local agents serving what the rollout says (default 1)
  --state DIR   where state, secrets and local.json live (default .floodgate)
  --autoscale   also run a provisioner with the built-in local pool: agents of the local
                token's pool start as jobs queue and stop when idle (0 to 4)
  -h, --help    this text

One floodgate dev per state: a second start on a state a running one owns is refused, and a
start after one was killed first stops whatever it left running.
`;

const AGENT_HELP = `floodgate agent — attach this machine to an edge and serve jobs

Options (each also from the environment variable in parentheses):
${agentFlagsHelp()}
  -h, --help           this text

With just --url and --token the agent serves what the rollout says (floodgate rollout apply)
for the models its token allows: it waits for the edge to name the versions, fetches them into
--cache-dir (each piece checked by its sha256), starts their runners and takes their jobs. A
version asking for N GPUs per replica runs as one runner per N of the agent's GPUs (--gpus),
each seeing only its own (CUDA_VISIBLE_DEVICES); a CPU version runs one. On a new version the
old one serves until the new one does; a version that fails to load leaves the old one serving.
See docs/models.md.

With --runner the agent serves that one runner and ignores rollouts (tests, benchmarks).
--runner python serves a PyTorch model (gpu-agent/python) with continuous batching; the
reference model's random weights are generated into --cache-dir on first use. Exit code 2
when no Python can import torch, msgpack and numpy.

Several agents may run on one host from the same directory (one per GPU with --gpus N, or
one per group): each takes an identity of its own under --cache-dir and keeps it across its
restarts, and they share the versions fetched there. ${PRETEND_GPUS_ENV}=N makes the agent see
N GPUs that do not exist (tests, laptops).

SIGTERM drains (finish running jobs, take none new); a second SIGTERM gives the running jobs
back without spending their attempts and exits. With --preemptible (a machine lent by a
training cluster, a spot VM) the jobs still running --preempt-grace-s after SIGTERM go back
to their queues without spending attempts, and \`floodgate agents reclaim ID\` takes the
machine back at once: the edge returns its jobs and the agent stops them and exits.
`;

const DevFlags = z.strictObject({
  port: z.coerce.number().int().min(1).max(65535).default(8787),
  agents: z.coerce.number().int().min(0).max(64).default(1),
  state: z.string().min(1).default(".floodgate"),
  autoscale: z.boolean().optional(),
  help: z.boolean().optional(),
});

const PROVISIONER_HELP = `floodgate provisioner — carry out the edge's pool decisions

Options (each also from the environment variable in parentheses):
  --url URL            the edge (FLOODGATE_URL)
  --token TOKEN        a provisioner token, floodgate pools token (FLOODGATE_PROVISIONER_TOKEN)
  --dir DIR            where commands run and the local pool keeps its agents (default .)
  --agent-token TOKEN  an agent token for the built-in local pool's agents (FLOODGATE_AGENT_TOKEN)
  --agent-runner KIND  the runner of the local pool's agents: demo (default) | synthetic | python
  -h, --help           this text

It long-polls the edge for its pools' calls and runs each call's command with FLOODGATE_POOL,
FLOODGATE_DESIRED and FLOODGATE_REMOVE (the idle agents to remove, comma-separated) in its
environment, then answers the exit code and the output's tail (floodgate pools status shows
them). SIGTERM stops it, and the local pool's agents with it.
`;

const ProvisionerFlags = z.strictObject({
  url: z.string().optional(),
  token: z.string().optional(),
  dir: z.string().optional(),
  "agent-token": z.string().optional(),
  "agent-runner": z.string().optional(),
  help: z.boolean().optional(),
});

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case "help":
      case "--help":
      case "-h":
        process.stdout.write(HELP);
        return command === undefined ? 2 : 0;
      case "dev": {
        const parsed = parseFlags(
          rest,
          {
            port: { type: "string" },
            agents: { type: "string" },
            state: { type: "string" },
            autoscale: { type: "boolean" },
            help: { type: "boolean", short: "h" },
          },
          DevFlags,
        );
        if (!parsed) {
          process.stdout.write(DEV_HELP);
          return 0;
        }
        const { flags } = parsed;
        return await dev({
          port: flags.port,
          agents: flags.agents,
          state: flags.state,
          autoscale: flags.autoscale === true,
        });
      }
      case "provisioner": {
        const parsed = parseFlags(
          rest,
          {
            url: { type: "string" },
            token: { type: "string" },
            dir: { type: "string" },
            "agent-token": { type: "string" },
            "agent-runner": { type: "string" },
            help: { type: "boolean", short: "h" },
          },
          ProvisionerFlags,
        );
        if (!parsed) {
          process.stdout.write(PROVISIONER_HELP);
          return 0;
        }
        const { flags } = parsed;
        const config = ProvisionerConfig.safeParse({
          url: flags.url ?? process.env.FLOODGATE_URL,
          token: flags.token ?? process.env.FLOODGATE_PROVISIONER_TOKEN,
          dir: flags.dir ?? ".",
          agent_token: flags["agent-token"] ?? process.env.FLOODGATE_AGENT_TOKEN,
          agent_runner: flags["agent-runner"],
        });
        if (!config.success) {
          const issue = config.error.issues[0];
          throw new UsageError(`--${String(issue?.path[0] ?? "").replace("_", "-")}: ${issue?.message ?? "invalid"}`);
        }
        const running = startProvisioner(config.data, (line) => process.stdout.write(`[provisioner] ${line}\n`));
        await new Promise<void>((res) => {
          for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => res());
        });
        await running.stop();
        return 0;
      }
      case "agent": {
        let values: Record<string, unknown>;
        try {
          values = parseArgs({ args: rest, strict: true, allowPositionals: false, options: agentArgOptions() }).values;
        } catch (err) {
          throw new UsageError((err as Error).message);
        }
        if (values.help) {
          process.stdout.write(AGENT_HELP);
          return 0;
        }
        const parsed = parseAgentConfig(values, process.env);
        if (!parsed.ok) throw new UsageError(parsed.message);
        return await runAgent(parsed.config);
      }
      case "models":
        return await runCommand(command, models, rest);
      case "doctor":
        return await doctorCommand(rest);
      case "keys":
        return keysCommand(rest);
      case "webhooks":
        return await runCommand(command, webhooks, rest);
      case "usage":
        return await runCommand(command, usage, rest);
      case "files":
        return await runCommand(command, files, rest);
      case "pools":
        return await runCommand(command, pools, rest);
      case "capacity":
        return await runCommand(command, capacity, rest);
      default:
        if (isClientCommand(command)) return await clientCommand(command, rest);
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`floodgate: ${err.message}\nRun \`floodgate help\` for usage.\n`);
      return 2;
    }
    process.stderr.write(`floodgate: ${(err as Error).message}\n`);
    return 1;
  }
}
