import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { RolloutEntry, RolloutStatus } from "../shared/rollouts.ts";
import { json, startServer, type TestServer } from "../test/support/http-server.ts";
import { clientCommand, type Io } from "./client-commands.ts";
import { historyText, parseRolloutFile, statusText } from "./rollout.ts";

const FILE = `models:
  demo:
    version: "2026-12-06.1"
    canary: { version: "2026-12-06.2", percent: 10, max_failure_pct: 20, min_jobs: 20 }
`;

/** The message a rollout file is refused with. */
function refusal(text: string): string {
  try {
    parseRolloutFile(text, "rollout.yaml");
  } catch (err) {
    return (err as Error).message;
  }
  return "accepted";
}

describe("rollout files", () => {
  it("a rollout file is read with its defaults filled in", () => {
    expect(parseRolloutFile("models:\n  demo:\n    version: v1\n    canary: {version: v2, percent: 5}\n", "r")).toEqual(
      {
        models: { demo: { version: "v1", canary: { version: "v2", percent: 5, max_failure_pct: 20, min_jobs: 20 } } },
      },
    );
    expect(parseRolloutFile(FILE, "r").models.demo?.canary?.percent).toBe(10);
  });

  it("a value that breaks the schema is named with its file, line and column", () => {
    expect(refusal(FILE.replace("percent: 10", "percent: 140"))).toBe(
      "rollout.yaml:4:49: models.demo.canary.percent: Too big: expected number to be <=100",
    );
    expect(refusal("models:\n  demo:\n    version: 2026.12\n")).toBe(
      'rollout.yaml:3:14: models.demo.version: Invalid input: expected string, received number (quote it: "…")',
    );
  });

  it("an unknown key, a bad model name and a missing version point at themselves", () => {
    expect(refusal(FILE.replace("canary:", "canery:"))).toBe(
      'rollout.yaml:4:5: models.demo.canery: Unrecognized key: "canery"',
    );
    expect(refusal("models:\n  Demo!:\n    version: v1\n")).toBe(
      "rollout.yaml:2:3: models.Demo!: a model name is 1–64 of a-z, 0-9, '.', '_', '-'",
    );
    expect(refusal("models:\n  demo:\n    canary: { version: v2, percent: 10 }\n")).toBe(
      "rollout.yaml:3:5: models.demo.version: required, and missing",
    );
  });

  it("a canary naming the stable version, an empty rollout and YAML syntax errors are refused with their place", () => {
    expect(refusal("models:\n  demo:\n    version: v1\n    canary: { version: v1, percent: 10 }\n")).toBe(
      "rollout.yaml:4:24: models.demo.canary.version: a canary's version must differ from the stable version",
    );
    expect(refusal("models: {}\n")).toBe("rollout.yaml:1:9: models: name at least one model");
    expect(refusal("models:\n  demo:\n    version: v1\n    version: v2\n")).toBe(
      "rollout.yaml:4:5: Map keys must be unique",
    );
    expect(refusal('models:\n  demo:\n    version: "v1\n')).toMatch(/^rollout\.yaml:4:1: /);
    expect(refusal("")).toBe('rollout.yaml:1:1: the file is empty; it starts with "models:"');
  });
});

const ENTRY: RolloutEntry = {
  id: 7,
  applied_at: "2026-12-06T10:00:00.000Z",
  by: "admin",
  kind: "apply",
  models: {
    demo: {
      version: "2026-12-06.1",
      canary: { version: "2026-12-06.2", percent: 10, max_failure_pct: 20, min_jobs: 20 },
    },
  },
  source: FILE,
};

const STATUS: RolloutStatus = {
  models: {
    demo: {
      stable: { version: "v1", digest: "1".repeat(64) },
      rollout_id: 8,
      since: "2026-12-06T10:05:00.000Z",
      agents: { v1: { loading: 0, serving: 3, failed: 0 }, v2: { loading: 0, serving: 0, failed: 1 } },
      agent_versions: [
        { agent_id: "agt_a", version: "v1", state: "serving" },
        { agent_id: "agt_b", version: "v2", state: "failed", message: "piece 2: sha256 mismatch" },
      ],
      window: { v1: { jobs: 40, failed: 1, failure_pct: 2.5, since: "2026-12-06T10:00:00.000Z" } },
      reverts: [
        { at: "2026-12-06T10:05:00.000Z", version: "v2", reason: "failure_rate", jobs: 20, failed: 9, failure_pct: 45 },
      ],
    },
  },
};

describe("rollout status and history as people read them", () => {
  it("status shows each version's role, agents and figures, then failed loads and reverts with their figures", () => {
    expect(statusText(STATUS).split("\n")).toEqual([
      "MODEL  VERSION  ROLE         AGENTS     JOBS  FAILED",
      "demo   v1       stable       3 serving  40    1 (2.5%)",
      "demo   v2       not desired  1 failed   —     —",
      "",
      "demo v2 failed to load on agt_b: piece 2: sha256 mismatch",
      "demo: canary v2 reverted at 2026-12-06T10:05:00.000Z (its failure rate): 9 of 20 jobs failed (45%)",
      "",
    ]);
    expect(statusText({ models: {} })).toBe("no rollouts applied yet\n");
  });

  it("history shows one line per model of each entry", () => {
    expect(historyText([ENTRY])).toContain(
      "7   2026-12-06T10:00:00.000Z  apply  demo   demo → 2026-12-06.1 (canary 2026-12-06.2 10%, reverts past 20% failed after 20 jobs)",
    );
  });
});

describe("floodgate rollout", () => {
  let root: string;
  let server: TestServer | undefined;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), "fg-rollout-"));
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
      readKey: () => Promise.resolve(""),
      onInterrupt: () => () => undefined,
      env: {},
      cwd: root,
      now: () => Date.parse("2026-12-06T10:10:00.000Z"),
      fetch: (input, init) => globalThis.fetch(input, init),
    };
  }

  async function edge(): Promise<TestServer> {
    const s = await startServer((req, res) => {
      if (req.method === "POST" && req.path === "/v1/admin/rollouts") return json(res, 201, ENTRY);
      if (req.path === "/v1/admin/rollouts/status") return json(res, 200, STATUS);
      if (req.path === "/v1/admin/rollouts?limit=5") return json(res, 200, { rollouts: [ENTRY] });
      if (req.path === "/v1/admin/rollouts/undo") return json(res, 201, { ...ENTRY, id: 8, kind: "undo" });
      if (req.path === "/v1/admin/rollouts/revert") {
        return json(res, 409, { error: { code: "conflict", message: "model demo has no canary to revert" } });
      }
      return json(res, 404, { error: { code: "not_found", message: "no" } });
    });
    mkdirSync(join(root, ".floodgate"), { recursive: true });
    writeFileSync(
      join(root, ".floodgate", "local.json"),
      JSON.stringify({ url: s.url, admin_key: "fga_admin", api_key: "fgk_user", agent_token: "jwt" }),
    );
    return s;
  }

  it("apply sends the parsed file with its text and prints what it set", async () => {
    server = await edge();
    writeFileSync(join(root, "rollout.yaml"), FILE);
    const a = io();
    expect(await clientCommand("rollout", ["apply", "rollout.yaml"], a)).toBe(0);
    expect(JSON.parse(server.requests[0]!.body)).toEqual({ ...parseRolloutFile(FILE, "x"), source: FILE });
    expect(server.requests[0]!.headers.authorization).toBe("Bearer fga_admin");
    expect(a.out.join("")).toContain("applied rollout 7\n  demo → 2026-12-06.1 (canary 2026-12-06.2 10%");
  });

  it("a rollout file with a mistake is refused with its line before anything is sent, exit 2", async () => {
    server = await edge();
    writeFileSync(join(root, "rollout.yaml"), FILE.replace("percent: 10", "percent: ten"));
    const a = io();
    expect(await clientCommand("rollout", ["apply", "rollout.yaml"], a)).toBe(2);
    expect(a.err.join("")).toMatch(/^floodgate rollout: rollout\.yaml:4:49: models\.demo\.canary\.percent: /);
    expect(await clientCommand("rollout", ["apply", "missing.yaml"], a)).toBe(2);
    expect(a.err.join("")).toContain("ENOENT");
    expect(server.requests).toEqual([]);
  });

  it("status, history and undo print tables or JSON; a refused revert prints the edge's code, exit 1", async () => {
    server = await edge();
    const a = io();
    expect(await clientCommand("rollout", ["status", "--json"], a)).toBe(0);
    expect(JSON.parse(a.out.join(""))).toEqual(STATUS);
    const b = io();
    expect(await clientCommand("rollout", ["history", "--limit", "5"], b)).toBe(0);
    expect(b.out.join("")).toMatch(/^ID +APPLIED +KIND +MODEL +WHAT\n7 /);
    const c = io();
    expect(await clientCommand("rollout", ["undo", "demo"], c)).toBe(0);
    expect(JSON.parse(server.requests.at(-1)!.body)).toEqual({ model: "demo" });
    expect(c.out.join("")).toMatch(/^applied rollout 8 \(undo\): demo → 2026-12-06\.1/);
    const d = io();
    expect(await clientCommand("rollout", ["revert", "demo"], d)).toBe(1);
    expect(d.err.join("")).toContain("conflict: model demo has no canary to revert");
    const e = io();
    expect(await clientCommand("rollout", ["promote", "demo"], e)).toBe(2);
    expect(await clientCommand("rollout", ["undo"], e)).toBe(2);
    expect(e.err.join("")).toContain("missing the model");
  });
});
