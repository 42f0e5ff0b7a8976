/**
 * The pool that ships with the project (`command: floodgate:local-agents`): the provisioner
 * starts and stops local `floodgate agent` processes, each with a cache directory of its own
 * under `<dir>/pool/<n>`, so the agent id it took can be read back and an agent named for
 * removal found; its output goes to `agent.log` there. Used by `floodgate dev --autoscale` and
 * the end-to-end suites. Removing an agent sends it SIGTERM: an idle agent (the only kind the
 * edge names) exits at once.
 */
import type { ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { startAgent, stopProcess, waitExit } from "./dev.ts";

export interface LocalPoolOptions {
  url: string;
  /** An agent token of the pool's name. */
  agentToken: string;
  /** Where the agents' cache directories go. */
  dir: string;
  /** The runner its agents serve (default demo). */
  runner?: string;
  /** More `floodgate agent` flags (`--preemptible`, …). */
  agentArgs?: string[];
  log: (line: string) => void;
}

interface Started {
  child: ChildProcess;
  cacheDir: string;
  index: number;
  stopping: boolean;
}

/** The agent id an agent wrote under its cache directory, once it has started. */
export function agentIdIn(cacheDir: string): string | undefined {
  const root = join(cacheDir, "identity");
  if (!existsSync(root)) return undefined;
  for (const group of readdirSync(root)) {
    for (const slot of readdirSync(join(root, group))) {
      const file = join(root, group, slot, "id");
      if (existsSync(file)) return readFileSync(file, "utf8").trim();
    }
  }
  return undefined;
}

export class LocalPool {
  private readonly opts: LocalPoolOptions;
  private readonly agents: Started[] = [];
  private next = 0;

  constructor(opts: LocalPoolOptions) {
    this.opts = opts;
  }

  /** Agents running and not asked to stop. */
  alive(): number {
    return this.agents.filter((a) => !a.stopping && a.child.exitCode === null && a.child.signalCode === null).length;
  }

  /**
   * Stops the agents named in `remove`, then starts agents until `desired` run. Answers what it
   * did, for the call's answer.
   */
  scale(desired: number, remove: readonly string[]): string {
    const stopped: string[] = [];
    for (const id of remove) {
      const a = this.agents.find((x) => !x.stopping && agentIdIn(x.cacheDir) === id);
      if (!a) continue;
      a.stopping = true;
      stopProcess(a.child);
      stopped.push(id);
    }
    let started = 0;
    while (this.alive() < desired) {
      this.start();
      started++;
    }
    const line = `local pool: ${this.alive()} agent(s) running; started ${started}, stopped ${stopped.length}${stopped.length > 0 ? ` (${stopped.join(", ")})` : ""}`;
    this.opts.log(line);
    return line;
  }

  private start(): void {
    const index = this.next++;
    const cacheDir = join(this.opts.dir, "pool", String(index));
    const child = startAgent({
      url: this.opts.url,
      token: this.opts.agentToken,
      state: this.opts.dir,
      index,
      name: `pool-${index}`,
      cacheDir,
      runner: this.opts.runner ?? "demo",
      logFile: join(cacheDir, "agent.log"),
      extraArgs: this.opts.agentArgs ?? [],
    });
    this.agents.push({ child, cacheDir, index, stopping: false });
  }

  /** Stops every agent it started and waits for them. */
  async close(): Promise<void> {
    for (const a of this.agents) stopProcess(a.child);
    await Promise.all(this.agents.map((a) => waitExit(a.child, 15_000)));
  }
}
