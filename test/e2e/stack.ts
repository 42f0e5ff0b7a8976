/**
 * The real local stack for end-to-end suites: `floodgate dev` as a child process on a free
 * port with its own state directory, stopped (with everything it started) when the suite ends.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { LocalConfig } from "../../cli/dev.ts";

export const ROOT = resolve(import.meta.dirname, "..", "..");
export const BIN = join(ROOT, "cli", "bin.js");

export async function freePort(): Promise<number> {
  return await new Promise((res, rej) => {
    const srv = createServer();
    srv.once("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? res(addr.port) : rej(new Error("no port"))));
    });
  });
}

export interface Stack {
  child: ChildProcess;
  config: LocalConfig;
  state: string;
  output: () => string;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/**
 * Stacks still running when this test process exits: a test that timed out is abandoned, not
 * unwound, so its `finally` may never stop the stack it started. Each is told to stop (it then
 * stops everything it started) as the process goes.
 */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
});

/** Starts `floodgate dev` and waits until it has written local.json and printed its keys. */
export async function startStack(opts: { state?: string; port?: number; agents?: number } = {}): Promise<Stack> {
  const state = opts.state ?? mkdtempSync(join(tmpdir(), "floodgate-e2e-"));
  const port = opts.port ?? (await freePort());
  const child = spawn(
    process.execPath,
    [BIN, "dev", "--port", String(port), "--state", state, "--agents", String(opts.agents ?? 0)],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  running.add(child);
  const exited = new Promise<number | null>((res) =>
    child.once("exit", (code) => {
      running.delete(child);
      res(code);
    }),
  );
  const deadline = Date.now() + 90_000;
  while (!out.includes("Ctrl-C stops everything")) {
    if (child.exitCode !== null) throw new Error(`floodgate dev exited ${child.exitCode}:\n${out}`);
    if (Date.now() > deadline) {
      child.kill("SIGTERM");
      throw new Error(`floodgate dev did not start in time:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const file = join(state, "local.json");
  if (!existsSync(file)) throw new Error("local.json was not written");
  const config = LocalConfig.parse(JSON.parse(readFileSync(file, "utf8")));
  return {
    child,
    config,
    state,
    output: () => out,
    stop: async (signal = "SIGTERM") => {
      if (child.exitCode === null) child.kill(signal);
      return await exited;
    },
  };
}

export async function api<T = Record<string, unknown>>(
  stack: Stack,
  method: string,
  path: string,
  body?: unknown,
  key = stack.config.api_key,
): Promise<{ status: number; body: T }> {
  const r = await fetch(stack.config.url + path, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: (text ? JSON.parse(text) : null) as T };
}

/**
 * Runs the CLI as a child process, from `cwd`, and answers its exit code and output. The
 * caller's FLOODGATE_URL and FLOODGATE_API_KEY are cleared: what it connects to is in `args`.
 */
export function cli(args: string[], cwd = ROOT): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd,
      env: { ...process.env, FLOODGATE_URL: "", FLOODGATE_API_KEY: "" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("exit", (code) => done({ code, stdout, stderr }));
  });
}
