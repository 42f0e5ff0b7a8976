/**
 * Drives a noisy neighbour (test/chaos/noisy.ts) in a process of its own, over its stdin, so its
 * load never shares the measuring process's event loop. Used by the noisy-neighbour end-to-end
 * test and the `noisy` benchmark.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import type { BlockTally, NoisyConfig, NoisyReport } from "./noisy.ts";

/** A running flood client. */
export interface Flood {
  /** The client's process id, for CPU accounting. */
  pid: number | undefined;
  /** Opens its streams and, once every one has answered, starts the flood. */
  on(): Promise<void>;
  /** Stops the flood, waits for its answers and closes the streams; answers what it sent since `on`. */
  off(): Promise<BlockTally>;
  /** Stops everything and answers the client's report; the process exits. */
  end(): Promise<NoisyReport>;
  /** SIGKILL, for cleanup when something failed on the way. */
  kill(): void;
}

/** How long the client may take to answer a command (ms): opening 300 streams included. */
const ANSWER_MS = 60_000;

/**
 * Starts the flood client and waits until its setup (jobs and stream tokens) is done.
 *
 * @example
 * const f = await startFlood({ url, key, model: "idle", input: {}, idle_model: "idle", stream_jobs: 0, streams: 0, rate: 100 });
 * try { await f.on(); …; await f.off(); console.log(await f.end()); } finally { f.kill(); }
 */
export async function startFlood(config: NoisyConfig): Promise<Flood> {
  const child = spawn(process.execPath, [join(import.meta.dirname, "noisy.ts"), JSON.stringify(config)], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  /** Waits for the client's next line that starts with `word`, consumes the lines up to it, and answers it. */
  const said = async (word: string): Promise<string> => {
    const deadline = Date.now() + ANSWER_MS;
    for (;;) {
      const lines = out.split("\n");
      const at = lines.slice(0, -1).findIndex((l) => l.startsWith(word));
      if (at >= 0) {
        out = lines.slice(at + 1).join("\n");
        return lines[at]!;
      }
      if (child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`the flood client did not say ${word}:\n${err}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    await said("ready");
  } catch (e) {
    child.kill("SIGKILL");
    throw e;
  }
  const command = async (word: string): Promise<string> => {
    child.stdin.write(`${word}\n`);
    return await said(word);
  };
  return {
    pid: child.pid,
    on: async () => {
      await command("on");
    },
    off: async () => JSON.parse((await command("off")).slice("off".length)) as BlockTally,
    end: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.stdin.write("end\n");
        await exited;
      }
      const last = out.trim().split("\n").at(-1) ?? "";
      try {
        return JSON.parse(last) as NoisyReport;
      } catch {
        throw new Error(`the flood client ended without its report (exit ${child.exitCode}):\n${err}`);
      }
    },
    kill: () => {
      if (child.exitCode === null) child.kill("SIGKILL");
    },
  };
}
