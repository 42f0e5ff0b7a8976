import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decode as decodePng } from "fast-png";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, JobCancelledError } from "../../client/index.ts";
import type { JobEvent } from "../../shared/events.ts";
import { cli, startStack, type Stack } from "./stack.ts";

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: 1 });
});

afterAll(async () => {
  await stack?.stop("SIGTERM");
});

describe("the client SDK and the CLI against the real stack", () => {
  it("the SDK's run submits, reports the id before waiting, streams events and resolves with the outputs", async () => {
    const fg = createClient({ url: stack.config.url, apiKey: stack.config.api_key });
    const seen: string[] = [];
    let submittedBeforeEvents = false;
    let id = "";
    const result = await fg.run(
      "demo",
      { prompt: "a red fox", frames: 4, size: 64, steps: 6 },
      {
        onSubmitted: (jobId: string) => {
          id = jobId;
          submittedBeforeEvents = seen.length === 0;
        },
        onEvent: (e: JobEvent) => {
          seen.push(e.event);
        },
        timeoutMs: 60_000,
      },
    );
    expect(submittedBeforeEvents).toBe(true);
    expect(result.id).toBe(id);
    expect(seen[0]).toBe("status");
    expect(seen).toContain("progress");
    expect(seen.at(-1)).toBe("succeeded");
    const png = result.outputs.find((o) => o.name === "last.png");
    if (!png) throw new Error("no last.png");
    const image = decodePng(new Uint8Array(await (await fetch(png.url)).arrayBuffer()));
    expect([image.width, image.height]).toEqual([64, 64]);
  }, 90_000);

  it("the SDK's run rejects with a typed error carrying the job id when the job is cancelled", async () => {
    const fg = createClient({ url: stack.config.url, apiKey: stack.config.api_key });
    let id = "";
    const settled = fg
      .run(
        "demo",
        { prompt: "slow", frames: 64, size: 512, steps: 100 },
        {
          onSubmitted: (j: string) => {
            id = j;
          },
          timeoutMs: 60_000,
        },
      )
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    // onSubmitted sets the id from another task; wait for it with a deadline.
    const deadline = Date.now() + 10_000;
    for (let known = ""; !known && Date.now() < deadline; known = id) await new Promise((r) => setTimeout(r, 20));
    await fg.jobs.cancel(id);
    const err = await settled;
    expect(err).toBeInstanceOf(JobCancelledError);
    expect((err as JobCancelledError).jobId).toBe(id);
  }, 90_000);

  it("floodgate submit --watch follows the job to the end, saves previews and outputs, and exits 0", async () => {
    const out = mkdtempSync(join(tmpdir(), "floodgate-cli-"));
    const r = await cli([
      "submit",
      "demo",
      "--input",
      '{"prompt":"a red fox","frames":8,"size":64,"steps":12}',
      "--watch",
      "--out",
      out,
      "--state",
      stack.state,
    ]);
    expect(r.stderr).toMatch(/succeeded/);
    expect(r.code).toBe(0);
    const files = readdirSync(out);
    expect(files).toEqual(expect.arrayContaining(["animation.gif", "last.png"]));
    expect(files.some((f) => f.startsWith("preview-"))).toBe(true);
    const png = decodePng(new Uint8Array(readFileSync(join(out, "last.png"))));
    expect([png.width, png.height]).toEqual([64, 64]);
  }, 90_000);

  it("floodgate submit with an invalid input exits non-zero with the error; without --watch it prints the job id", async () => {
    const bad = await cli(["submit", "demo", "--input", '{"prompt":7}', "--state", stack.state]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("invalid_input");
    const ok = await cli(["submit", "demo", "--input", '{"prompt":"x"}', "--state", stack.state]);
    expect(ok.code).toBe(0);
    expect(ok.stdout.trim()).toMatch(/^job_[0-9a-z]{30}$/);
    const status = await cli(["status", ok.stdout.trim(), "--state", stack.state]);
    expect(status.code).toBe(0);
  }, 60_000);
});
