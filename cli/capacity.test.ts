import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { json, startServer, type TestServer } from "../test/support/http-server.ts";
import { capacity, capacityTable } from "./capacity.ts";
import { clientCommand, runCommand, type Io } from "./client-commands.ts";

let root: string;
let server: TestServer | undefined;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "fg-cap-"));
});
afterEach(async () => {
  await server?.close();
  server = undefined;
  rmSync(root, { recursive: true, force: true });
});

function io(): Io & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    stdout: (s) => void out.push(s),
    stderr: (s) => void err.push(s),
    tty: false,
    columns: 80,
    interactive: false,
    readKey: () => Promise.resolve("d"),
    onInterrupt: () => () => undefined,
    env: {},
    cwd: root,
    now: () => Date.parse("2025-01-01T00:01:00.000Z"),
    fetch: (input, init) => globalThis.fetch(input, init),
  };
}

const DEMO = { agents_connected: 2, agents_needed: 5, slots_busy: 3, slots_total: 4, queued: 40, first_breach_s: 72.5 };
const IDLE = { agents_connected: 0, agents_needed: 0, slots_busy: 0, slots_total: 0, queued: 0, first_breach_s: null };

async function edge(): Promise<void> {
  server = await startServer((req, res) => {
    if (req.path === "/v1/admin/capacity") return json(res, 200, { models: { demo: DEMO, idle: IDLE } });
    if (req.method === "POST" && req.path === "/v1/admin/agents/agt_0123456789abcdef/reclaim") {
      return json(res, 200, { agent_id: "agt_0123456789abcdef", released: 2 });
    }
    return json(res, 404, { error: { code: "agent_not_found", message: "no connected agent" } });
  });
  mkdirSync(join(root, ".floodgate"), { recursive: true });
  writeFileSync(
    join(root, ".floodgate", "local.json"),
    JSON.stringify({ url: server.url, admin_key: "fga_admin", api_key: "fgk_user", agent_token: "jwt" }),
  );
}

describe("floodgate capacity", () => {
  it("prints one row per model: agents connected and needed, busy slots, queued, first breach", () => {
    const text = capacityTable({ models: { idle: IDLE, demo: DEMO } });
    const lines = text.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^MODEL +AGENTS +NEEDED +SLOTS BUSY +QUEUED +FIRST BREACH$/);
    expect(lines[1]).toMatch(/^demo +2 +5 +3\/4 +40 +72.5 s$/);
    expect(lines[2]).toMatch(/^idle +0 +0 +0\/0 +0 +-$/);
  });

  it("--json prints the edge's answer as it is", async () => {
    await edge();
    const out = io();
    expect(await runCommand("capacity", capacity, ["--json"], out)).toBe(0);
    expect(JSON.parse(out.out.join(""))).toEqual({ models: { demo: DEMO, idle: IDLE } });
    expect(server?.requests.at(-1)?.headers.authorization).toBe("Bearer fga_admin");
  });

  it("agents reclaim names the jobs sent back, and an unknown agent is an error with its code", async () => {
    await edge();
    const out = io();
    expect(await clientCommand("agents", ["reclaim", "agt_0123456789abcdef"], out)).toBe(0);
    expect(out.out.join("")).toContain("reclaimed agt_0123456789abcdef: 2 job(s) back to their queues");
    const bad = io();
    expect(await clientCommand("agents", ["reclaim", "agt_ffffffffffffffff"], bad)).toBe(1);
    expect(bad.err.join("")).toContain("agent_not_found");
    const none = io();
    expect(await clientCommand("agents", ["reclaim"], none)).toBe(2);
  });
});
