/**
 * `floodgate provisioner --url URL --token TOKEN`: the operator's process that carries out the
 * edge's pool decisions for command pools. Like an agent it only connects out: it long-polls
 * `GET /v1/provisioner/calls` with a provisioner token, runs each call's command with
 * FLOODGATE_POOL, FLOODGATE_DESIRED and FLOODGATE_REMOVE (comma-separated agent ids) in its
 * environment, and answers the exit code and the output's tail. The built-in command
 * `floodgate:local-agents` is the local pool (cli/local-pool.ts). Called by cli/main.ts and
 * `floodgate dev --autoscale`.
 */
import { spawn } from "node:child_process";
import { z } from "zod";
import { backoffMs } from "../shared/backoff.ts";
import { LOCAL_POOL_COMMAND, ProvisionerCalls, type ProvisionerAnswer, type ProvisionerCall } from "../shared/pools.ts";
import { RUNNERS } from "../gpu-agent/config.ts";
import { LocalPool } from "./local-pool.ts";

/** A command runs this long at most (ms). */
const COMMAND_TIMEOUT_MS = 10 * 60_000;
/** The output tail kept of a command. */
const OUTPUT_TAIL = 4000;
/** How long one poll is held at the edge (s). */
const WAIT_S = 20;

export const ProvisionerConfig = z.strictObject({
  /** The edge. */
  url: z.url({ protocol: /^https?$/ }),
  /** A provisioner token (`POST /v1/admin/provisioner-tokens`). */
  token: z.string().min(20, "the provisioner token looks too short"),
  /** Where commands run, and where the local pool keeps its agents. */
  dir: z.string().min(1).default("."),
  /** An agent token for the local pool's agents (`floodgate:local-agents`). */
  agent_token: z.string().min(20).optional(),
  /** The runner the local pool's agents serve (`floodgate agent --runner`). */
  agent_runner: z.enum(RUNNERS).default("demo"),
});
export type ProvisionerConfig = z.infer<typeof ProvisionerConfig>;

export interface Provisioner {
  /** Resolves when stopped. */
  done: Promise<void>;
  stop(): Promise<void>;
}

/** Runs one call's command; its exit code and output tail are the answer. */
export async function runCommand(call: ProvisionerCall, cwd: string): Promise<ProvisionerAnswer> {
  return await new Promise((resolve) => {
    const child = spawn(call.command, {
      shell: true,
      cwd,
      env: {
        ...process.env,
        FLOODGATE_POOL: call.pool,
        FLOODGATE_DESIRED: String(call.desired),
        FLOODGATE_REMOVE: call.remove.join(","),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    const keep = (d: Buffer): void => {
      out = (out + d.toString()).slice(-OUTPUT_TAIL);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const timer = setTimeout(() => child.kill("SIGKILL"), COMMAND_TIMEOUT_MS);
    child.once("error", (err) => {
      clearTimeout(timer);
      resolve({ ok: false, exit_code: null, output: `could not start: ${err.message}` });
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ ok: code === 0, exit_code: code, output: signal ? `${out}\nkilled by ${signal}` : out });
    });
  });
}

/** Starts the provisioner loop; `log` gets a line per call. */
export function startProvisioner(config: ProvisionerConfig, log: (line: string) => void): Provisioner {
  const stopper = new AbortController();
  const local = config.agent_token
    ? new LocalPool({
        url: config.url,
        agentToken: config.agent_token,
        dir: config.dir,
        runner: config.agent_runner,
        log,
      })
    : undefined;
  const headers = { authorization: `Bearer ${config.token}` };

  const handle = async (call: ProvisionerCall): Promise<ProvisionerAnswer> => {
    if (call.command === LOCAL_POOL_COMMAND) {
      if (!local)
        return { ok: false, exit_code: null, output: "this provisioner has no --agent-token for the local pool" };
      return { ok: true, exit_code: 0, output: local.scale(call.desired, call.remove) };
    }
    return await runCommand(call, config.dir);
  };

  const loop = async (): Promise<void> => {
    let failures = 0;
    while (!stopper.signal.aborted) {
      try {
        const res = await fetch(`${config.url}/v1/provisioner/calls?wait_s=${WAIT_S}`, {
          headers,
          signal: AbortSignal.any([stopper.signal, AbortSignal.timeout((WAIT_S + 15) * 1000)]),
        });
        if (res.status === 401) throw new Error("the edge refused the provisioner token (401)");
        if (!res.ok) throw new Error(`the edge answered ${res.status}`);
        const { calls } = ProvisionerCalls.parse(await res.json());
        failures = 0;
        for (const call of calls) {
          log(
            `call ${call.id}: pool ${call.pool} → ${call.desired} agent(s)${call.remove.length > 0 ? `, remove ${call.remove.join(",")}` : ""}`,
          );
          const answer = await handle(call);
          await fetch(`${config.url}/v1/provisioner/calls/${call.id}`, {
            method: "POST",
            headers: { ...headers, "content-type": "application/json" },
            body: JSON.stringify(answer),
            signal: AbortSignal.timeout(30_000),
          });
        }
      } catch (err) {
        if (stopper.signal.aborted) break;
        failures++;
        const wait = backoffMs(failures, { baseMs: 500, maxMs: 30_000 });
        log(`${(err as Error).message}; polling again in ${Math.round(wait)} ms`);
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  };

  const done = loop();
  return {
    done,
    stop: async () => {
      stopper.abort();
      await done;
      await local?.close();
    },
  };
}
