/**
 * The packages a user installs, tried as a new user would: `npm pack` of `@floodgate/client` and
 * `@floodgate/cli`, installed from the tarballs into a scratch project in a temporary directory
 * (no path back into the repository on its PATH), then a job run against the real local stack by
 * `import { createClient } from "@floodgate/client"` and served by the packed agent started with
 * `npx floodgate agent`. npm installs the packages' dependencies from its cache where it has
 * them (`--prefer-offline`).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stopProcess, waitExit } from "../../cli/dev.ts";
import { api, ROOT, startStack, type Stack } from "./stack.ts";

let stack: Stack;
let scratch: string;
let tarballs: { client: string; cli: string };
let agent: ChildProcess | undefined;
let agentLog = "";

/** The PATH a user outside the repository has: nothing of the repository, plus a Node ≥ 22.18. */
function userPath(): string {
  const rest = (process.env.PATH ?? "").split(delimiter).filter((p) => p && !p.startsWith(ROOT));
  return [join(scratch, "bin"), ...rest].join(delimiter);
}

function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, PATH: userPath(), FLOODGATE_URL: "", FLOODGATE_AGENT_TOKEN: "", ...extra };
}

function run(cmd: string, args: string[], cwd: string, env = userEnv()): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { cwd, env, encoding: "utf8", timeout: 180_000 });
  return { status: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

/** Packs a workspace package (its prepack builds it) and answers the tarball's path. */
async function pack(dir: string, dest: string): Promise<string> {
  const child = spawn("npm", ["pack", "--silent", "--pack-destination", dest], { cwd: join(ROOT, dir) });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((res) => child.once("exit", res));
  if (code !== 0) throw new Error(`npm pack in ${dir} failed:\n${out}`);
  return join(dest, out.trim().split("\n").at(-1) as string);
}

/** Node binaries on this machine, oldest first: the SDK must work on the oldest one it supports (20). */
function nodes(): { path: string; major: number }[] {
  const found = new Map<string, number>();
  for (const path of [process.execPath, "/usr/bin/node", "/usr/local/bin/node"]) {
    const r = spawnSync(path, ["-p", "process.versions.node"], { encoding: "utf8" });
    if (r.status === 0) found.set(path, Number(r.stdout.trim().split(".")[0]));
  }
  return [...found].map(([path, major]) => ({ path, major })).sort((a, b) => a.major - b.major);
}

/** Packs both packages and installs them into a fresh scratch project. */
async function packAndInstall(): Promise<void> {
  const dest = mkdtempSync(join(tmpdir(), "floodgate-pack-"));
  const [client, cli] = await Promise.all([pack("client", dest), pack("cli", dest)]);
  tarballs = { client, cli };
  scratch = mkdtempSync(join(tmpdir(), "floodgate-scratch-"));
  // A Node for `npx floodgate` (bin.js needs ≥ 22.18): the one running this test, alone in a folder.
  mkdirSync(join(scratch, "bin"));
  writeFileSync(join(scratch, "bin", "node"), `#!/bin/sh\nexec "${process.execPath}" "$@"\n`, { mode: 0o755 });
  writeFileSync(join(scratch, "package.json"), JSON.stringify({ name: "scratch", private: true, type: "module" }));
  const install = run(
    "npm",
    ["install", "--prefer-offline", "--no-audit", "--no-fund", tarballs.client, tarballs.cli],
    scratch,
  );
  if (install.status !== 0) throw new Error(`npm install of the tarballs failed:\n${install.out}`);
}

beforeAll(async () => {
  // The builds and the stack's start at once: each waits on its own processes.
  const [built, started] = await Promise.allSettled([packAndInstall(), startStack({ agents: 0 })]);
  if (started.status === "fulfilled") stack = started.value;
  if (built.status === "rejected") throw built.reason;
  if (started.status === "rejected") throw started.reason;
}, 300_000);

afterAll(async () => {
  if (agent) {
    stopProcess(agent);
    await waitExit(agent, 15_000);
  }
  await stack?.stop("SIGTERM");
});

describe("the packed packages, installed outside the repository", () => {
  it("each tarball holds built JavaScript and no TypeScript sources or tests", () => {
    for (const tarball of Object.values(tarballs)) {
      const files = run("tar", ["tzf", tarball], scratch).out.split("\n").filter(Boolean);
      expect(files.some((f) => f.endsWith(".js"))).toBe(true);
      expect(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
      expect(files.filter((f) => /test/.test(f))).toEqual([]);
    }
  });

  it("npx floodgate agent from the packed CLI attaches, and the packed SDK runs a job on it", async () => {
    agent = spawn(
      "npx",
      [
        "floodgate",
        "agent",
        "--url",
        stack.config.url,
        "--token",
        stack.config.agent_token,
        "--name",
        "packed",
        // The test's stack has no rollout applied: the agent serves the demo runner it is given.
        "--runner",
        "demo",
        "--cache-dir",
        join(scratch, "agent-cache"),
      ],
      { cwd: scratch, env: userEnv(), stdio: ["ignore", "pipe", "pipe"], detached: true },
    );
    agent.stdout?.on("data", (d: Buffer) => (agentLog += d.toString()));
    agent.stderr?.on("data", (d: Buffer) => (agentLog += d.toString()));
    const until = Date.now() + 60_000;
    while (!/connected to/.test(agentLog)) {
      if (agent.exitCode !== null) throw new Error(`the packed agent exited ${agent.exitCode}:\n${agentLog}`);
      if (Date.now() > until) throw new Error(`the packed agent did not connect:\n${agentLog}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const agentId = /agent id (agt_[0-9a-z]{16})/.exec(agentLog)?.[1];
    expect(agentId).toBeDefined();

    writeFileSync(
      join(scratch, "job.mjs"),
      `import { createClient } from "@floodgate/client";
const fg = createClient({ url: process.env.URL, apiKey: process.env.KEY });
const result = await fg.run("demo", { prompt: "a red fox", frames: 2, size: 32, steps: 3 }, { timeoutMs: 90_000 });
console.log(JSON.stringify({ id: result.id, outputs: result.outputs.map((o) => o.name) }));
`,
    );
    // The oldest Node here that the SDK supports (≥ 20): Debian's when it has one.
    const node = nodes().find((n) => n.major >= 20)!;
    const job = run(node.path, ["job.mjs"], scratch, userEnv({ URL: stack.config.url, KEY: stack.config.api_key }));
    expect(job.status, `${job.out}\nagent:\n${agentLog}`).toBe(0);
    const { id, outputs } = JSON.parse(job.out.trim().split("\n").at(-1) as string) as {
      id: string;
      outputs: string[];
    };
    expect(outputs.length).toBeGreaterThan(0);
    const seen = await api<{ attempts: { agent: string }[] }>(
      stack,
      "GET",
      `/v1/admin/jobs/${id}`,
      undefined,
      stack.config.admin_key,
    );
    expect(seen.body.attempts.map((a) => a.agent)).toEqual([agentId]);
  });

  it("the SDK's types resolve through its exports map in a TypeScript project", () => {
    writeFileSync(
      join(scratch, "check.ts"),
      `import { createClient, FloodgateApiError, type JobView } from "@floodgate/client";
const fg = createClient({ url: "https://floodgate.example.com", apiKey: "fgk_x" });
export const view: Promise<JobView> = fg.jobs.get("job_x");
export const isApiError = (e: unknown): boolean => e instanceof FloodgateApiError;
`,
    );
    writeFileSync(
      join(scratch, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          module: "nodenext",
          moduleResolution: "nodenext",
          strict: true,
          noEmit: true,
          lib: ["ES2023", "DOM"],
          types: [],
        },
        files: ["check.ts"],
      }),
    );
    const tsc = run(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", scratch], scratch);
    expect(tsc.out).toBe("");
    expect(tsc.status).toBe(0);
  });

  it("npx floodgate doctor from the packed CLI finds the packed python runner and the edge", () => {
    const r = run(
      "npx",
      [
        "floodgate",
        "doctor",
        "--json",
        "--runner",
        "python",
        "--url",
        stack.config.url,
        "--token",
        stack.config.agent_token,
        "--cache-dir",
        join(scratch, "agent-cache"),
      ],
      scratch,
    );
    const report = JSON.parse(r.out.slice(r.out.indexOf("{"))) as {
      ready: boolean;
      checks: { name: string; verdict: string; detail: string }[];
    };
    expect(report.checks.find((c) => c.name === "python")?.detail).toMatch(/the python runner would sample on/);
    expect(report.ready).toBe(true);
    expect(r.status).toBe(0);
  });

  it("floodgate dev in the installed package says it runs from a clone of the repository", () => {
    const r = run("npx", ["floodgate", "dev"], scratch);
    expect(r.status).toBe(1);
    expect(r.out).toMatch(/run it in a clone of the repository/);
  });
});
