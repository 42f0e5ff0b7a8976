/**
 * The Python client (client/python, standard library only) against the real local stack:
 * `floodgate dev` with one demo agent, and client/python/tests/e2e_stack.py run by Debian's
 * Python with the stack's URL, user key and admin key (for a second account).
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, startStack, type Stack } from "./stack.ts";

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: 1 });
});

afterAll(async () => {
  await stack?.stop("SIGTERM");
});

describe("the Python client against the local stack", () => {
  it("runs a job with a deadline, resumes events, uploads input files (resumably) for a job, and raises errors carrying the job id and the API's code", async () => {
    const child = spawn("/usr/bin/python3", ["-B", "-m", "unittest", "-v", "tests.e2e_stack"], {
      cwd: join(ROOT, "client", "python"),
      env: {
        ...process.env,
        FLOODGATE_URL: stack.config.url,
        FLOODGATE_API_KEY: stack.config.api_key,
        FLOODGATE_ADMIN_KEY: stack.config.admin_key,
      },
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((res) => child.once("exit", res));
    expect(out).toMatch(/Ran 6 tests/);
    // The whole run's output beside the exit status, so a failure shows which test failed.
    expect({ code, out }).toEqual({ code: 0, out: expect.stringMatching(/\bOK\b/) });
  });
});
