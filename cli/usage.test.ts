import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { json, startServer, type TestServer } from "../test/support/http-server.ts";
import { summarizeUsage, type UsageAnswer } from "../shared/usage.ts";
import { runCommand, type Io } from "./client-commands.ts";
import { usage, usageCsv, usageTable } from "./usage.ts";

let server: TestServer | undefined;
const dirs: string[] = [];

afterEach(async () => {
  await server?.close();
  server = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function io(url: string): Io & { out: string[]; err: string[] } {
  const root = mkdtempSync(join(tmpdir(), "fg-cli-usage-"));
  dirs.push(root);
  mkdirSync(join(root, ".floodgate"));
  writeFileSync(
    join(root, ".floodgate", "local.json"),
    JSON.stringify({ url, admin_key: "fga_x", api_key: "fgk_x", agent_token: "t" }),
  );
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    stdout: (s) => void out.push(s),
    stderr: (s) => void err.push(s),
    tty: false,
    columns: 100,
    interactive: false,
    readKey: () => Promise.resolve("d"),
    onInterrupt: () => () => undefined,
    env: {},
    cwd: root,
    now: () => Date.parse("2026-01-02T00:00:00Z"),
    fetch: (input, init) => globalThis.fetch(input, init),
  };
}

const HOUR = Date.UTC(2026, 0, 1, 10);
const base = { hour: HOUR, lost_gpu_ms: 0, cancelled: 0, expired: 0 };
const answer: UsageAnswer = {
  account: "acc_0123456789abcdef",
  from: "2026-01-01T00:00:00.000Z",
  to: "2026-01-02T00:00:00.000Z",
  group_by: "version",
  ...summarizeUsage(
    [
      {
        ...base,
        model: "demo",
        version: "v1",
        gpu_ms: 2_500,
        executing_ms: 1_250,
        attempts: 2,
        succeeded: 1,
        failed: 1,
        output_bytes: 10,
      },
      {
        ...base,
        model: "demo",
        version: "v2",
        gpu_ms: 1,
        executing_ms: 1,
        attempts: 1,
        succeeded: 1,
        failed: 0,
        output_bytes: 0,
      },
    ],
    "version",
  ),
};

describe("floodgate usage", () => {
  it("asks for the caller's usage with the span and grouping given, and prints rows and their totals", async () => {
    server = await startServer((_req, res) => json(res, 200, answer));
    const t = io(server.url);
    const code = await runCommand("usage", usage, ["--from", "2026-01-01T00:00:00Z", "--group-by", "version"], t);
    expect(code).toBe(0);
    expect(server.requests[0]).toMatchObject({ method: "GET" });
    expect(server.requests[0]!.path).toBe("/v1/usage?from=2026-01-01T00%3A00%3A00Z&group_by=version");
    const text = t.out.join("");
    expect(text).toMatch(/demo\s+v1\s+2\.5\s+1\.25\s+0\s+2\s+1\s+1/);
    expect(text).toMatch(/total\s+2\.501/);
  });

  it("with --account asks the admin route for that account, and --csv prints a header and one line a row", async () => {
    server = await startServer((_req, res) => json(res, 200, answer));
    const t = io(server.url);
    expect(await runCommand("usage", usage, ["--account", "acc_0123456789abcdef", "--csv"], t)).toBe(0);
    expect(server.requests[0]!.path).toBe("/v1/admin/usage?account=acc_0123456789abcdef");
    expect(t.out.join("")).toBe(usageCsv(answer));
    expect(usageCsv(answer).split("\r\n")).toEqual([
      "model,version,day,gpu_s,executing_s,lost_gpu_s,attempts,succeeded,failed,cancelled,expired,output_bytes",
      "demo,v1,,2.5,1.25,0,2,1,1,0,0,10",
      "demo,v2,,0.001,0.001,0,1,1,0,0,0,0",
      "",
    ]);
  });

  it("a bad grouping or both --csv and --json is a usage error before any request", async () => {
    server = await startServer((_req, res) => json(res, 500, {}));
    const t = io(server.url);
    expect(await runCommand("usage", usage, ["--group-by", "week"], t)).toBe(2);
    expect(await runCommand("usage", usage, ["--csv", "--json"], t)).toBe(2);
    expect(server.requests).toHaveLength(0);
  });

  it("an empty span says so", () => {
    expect(usageTable({ ...answer, usage: [] })).toContain("no usage in this span");
  });
});
