import type { ChildProcess } from "node:child_process";
import { decode as decodePng } from "fast-png";
import { GifReader } from "omggif";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgent, waitExit } from "../../cli/dev.ts";
import { api, startStack, type Stack } from "./stack.ts";

interface JobView {
  id: string;
  status: string;
  phase: string;
  attempts: { agent: string; outcome: string; reason: string | null }[];
  outputs: { name: string; url: string; size: number; content_type: string }[] | null;
  error: { code: string; message: string } | null;
}

let stack: Stack;
const agents: ChildProcess[] = [];
let index = 0;

/** Starts `floodgate agent --runner python` against the stack; its output is collected. */
function pythonAgent(extra: string[], output: (s: string) => void): ChildProcess {
  index += 1;
  const child = startAgent({
    url: stack.config.url,
    token: stack.config.agent_token,
    state: stack.state,
    index,
    runner: "python",
    extraArgs: extra,
    stdio: "pipe",
  });
  child.stdout?.on("data", (d: Buffer) => output(d.toString()));
  child.stderr?.on("data", (d: Buffer) => output(d.toString()));
  agents.push(child);
  return child;
}

async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  stack = await startStack({ agents: 0 });
});

afterAll(async () => {
  for (const a of agents) a.kill("SIGKILL");
  await Promise.all(agents.map((a) => waitExit(a, 5000)));
  await stack?.stop("SIGTERM");
});

describe("the PyTorch runner end to end", () => {
  it("npm start registers the reference model with bounded input next to demo", async () => {
    const models = await api<{ models: { name: string }[] }>(
      stack,
      "GET",
      "/v1/admin/models",
      undefined,
      stack.config.admin_key,
    );
    expect(models.body.models.map((m) => m.name)).toEqual(expect.arrayContaining(["demo", "reference"]));
    const tooBig = await api(stack, "POST", "/v1/models/reference/jobs", { input: { prompt: "x", size: 1024 } });
    expect(tooBig.status).toBe(400);
  });

  it("a reference job runs on an agent with --runner python (tiny) and its frames come back as images", async () => {
    let out = "";
    const agent = pythonAgent(["--model", "reference", "--model-size", "tiny", "--slots", "2"], (s) => (out += s));
    const sub = await api<{ id: string }>(stack, "POST", "/v1/models/reference/jobs", {
      input: { prompt: "a red fox in the snow", seed: 7, steps: 4, frames: 4, size: 32 },
    });
    expect(sub.status).toBe(202);
    const job = await until("the reference job to end", 100_000, async () => {
      const v = (await api<JobView>(stack, "GET", `/v1/jobs/${sub.body.id}`)).body;
      return ["succeeded", "failed", "cancelled", "expired"].includes(v.status) ? v : undefined;
    }).catch((err: Error) => {
      throw new Error(`${err.message}\nagent output:\n${out}`);
    });
    expect(job.status, `${JSON.stringify(job.error)}\n${out}`).toBe("succeeded");
    const gif = job.outputs?.find((o) => o.name === "animation.gif");
    const png = job.outputs?.find((o) => o.name === "last.png");
    const params = job.outputs?.find((o) => o.name === "params.json");
    if (!gif || !png || !params) throw new Error(`missing outputs: ${JSON.stringify(job.outputs)}`);
    const reader = new GifReader(new Uint8Array(await (await fetch(gif.url)).arrayBuffer()));
    expect([reader.width, reader.height, reader.numFrames()]).toEqual([32, 32, 4]);
    const image = decodePng(new Uint8Array(await (await fetch(png.url)).arrayBuffer()));
    expect([image.width, image.height]).toEqual([32, 32]);
    expect(JSON.parse(await (await fetch(params.url)).text())).toMatchObject({
      seed: 7,
      steps: 4,
      frames: 4,
      size: 32,
    });
    // The random weights were generated into the agent's cache on first use.
    expect(out).toContain("generating the reference model (tiny)");
    agent.kill("SIGTERM");
    await waitExit(agent, 15_000);
  }, 150_000);

  it("an agent whose --python cannot import torch exits 2 and says why", async () => {
    let out = "";
    const agent = pythonAgent(["--python", "/nonexistent/floodgate/python3"], (s) => (out += s));
    const code = await new Promise<number | null>((res) => agent.once("exit", (c) => res(c)));
    expect(code).toBe(2);
    expect(out).toContain("needs a Python that can import torch");
    expect(out).toContain("/nonexistent/floodgate/python3: not found");
  }, 30_000);
});
