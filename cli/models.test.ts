import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { json, startServer, type TestServer } from "../test/support/http-server.ts";
import { runCommand, type Io } from "./client-commands.ts";
import type { VersionSummary } from "../shared/repository.ts";
import { models, uploadLine, uploadLogLine, versionTable } from "./models.ts";
import type { Upload } from "./push.ts";

const upload = (over: Partial<Upload> = {}): Upload => ({
  pieces: 20,
  bytes: 160_000_000,
  done: 5,
  sent: 40_000_000,
  since: 0,
  ...over,
});

/** An upload of 20 pieces of 8 MB, `done` of them sent. */
const at = (done: number): Upload => upload({ done, sent: done * 8_000_000 });
/** An upload of 3 one-byte pieces, `done` of them sent. */
const three = (done: number): Upload => upload({ pieces: 3, done, sent: done });

describe("the push's progress", () => {
  it("the live line shows the bar, pieces, bytes, rate and time left, and never wraps", () => {
    const line = uploadLine(upload(), 4000, 200);
    expect(line).toContain("[██████░░░░░░░░░░░░░░░░░░]");
    expect(line).toContain("5/20 pieces · 40.0 MB/160 MB · 10.0 MB/s · ETA 12 s");
    expect(uploadLine(upload(), 4000, 40).length).toBeLessThanOrEqual(39);
  });

  it("a plain log prints a line at each tenth of the pieces and at the end, nothing in between", () => {
    expect(uploadLogLine(at(0), at(1), 1000)).toBeUndefined();
    expect(uploadLogLine(at(1), at(2), 1000)).toBe("uploaded 2/20 pieces (16.0 MB of 160 MB, 16.0 MB/s)");
    expect(uploadLogLine(at(19), at(20), 1000)).toMatch(/^uploaded 20\/20 pieces/);
    expect([1, 2, 3].map((d) => uploadLogLine(three(d - 1), three(d), 1000) !== undefined)).toEqual([true, true, true]);
  });
});

describe("models list", () => {
  it("the table shows model, version, state, size, pieces, when and by whom", () => {
    const v: VersionSummary = {
      model: "demo",
      version: "2026-12-06.1",
      digest: "ab".repeat(32),
      state: "ready",
      bytes: 16_778_450,
      pieces: 5,
      created_at: new Date(0).toISOString(),
      created_by: "admin:0123abcd",
    };
    expect(versionTable([v], 90_000)).toBe(
      "MODEL  VERSION       STATE  SIZE     PIECES  CREATED         BY              DIGEST\n" +
        "demo   2026-12-06.1  ready  16.8 MB  5       1 min 30 s ago  admin:0123abcd  abababababab…\n",
    );
  });
});

function io(cwd: string): Io & { out: string[]; err: string[] } {
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
    cwd,
    now: () => Date.parse("2026-12-06T10:10:00.000Z"),
    fetch: (input, init) => globalThis.fetch(input, init),
  };
}

describe("models purge", () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).toReversed()) await c();
  });

  async function edge(): Promise<{ server: TestServer; root: string }> {
    const root = mkdtempSync(join(tmpdir(), "fg-purge-"));
    cleanup.push(() => rmSync(root, { recursive: true, force: true }));
    const server = await startServer((req, res) => {
      if (req.method === "POST" && req.path === "/v1/admin/models/demo/versions/1/purge") {
        return json(res, 200, {
          model: "demo",
          version: "1",
          purged_at: "2026-12-06T10:09:00.000Z",
          purged_by: "admin:0123abcd",
        });
      }
      if (req.method === "POST" && req.path === "/v1/admin/models/demo/versions/2/purge") {
        return json(res, 409, {
          error: {
            code: "conflict",
            message: "demo@2 is the rollout's stable version: roll out another version before purging it",
          },
        });
      }
      return json(res, 404, { error: { code: "not_found", message: "no" } });
    });
    cleanup.push(() => server.close());
    mkdirSync(join(root, ".floodgate"), { recursive: true });
    writeFileSync(
      join(root, ".floodgate", "local.json"),
      JSON.stringify({ url: server.url, admin_key: "fga_admin", api_key: "fgk_user", agent_token: "jwt" }),
    );
    return { server, root };
  }

  it("purge asks the edge with the admin key and says what agents do; a refusal prints the edge's code, exit 1; bad arguments exit 2 unsent", async () => {
    const { server, root } = await edge();
    const a = io(root);
    expect(await runCommand("models", models, ["purge", "demo", "1"], a)).toBe(0);
    expect(server.requests[0]!.headers.authorization).toBe("Bearer fga_admin");
    expect(a.out.join("")).toBe(
      "purged demo@1: agents delete it from their caches once nothing on their host serves it\n",
    );
    const j = io(root);
    expect(await runCommand("models", models, ["purge", "demo", "1", "--json"], j)).toBe(0);
    expect(JSON.parse(j.out.join(""))).toMatchObject({ model: "demo", version: "1", purged_by: "admin:0123abcd" });
    const refused = io(root);
    expect(await runCommand("models", models, ["purge", "demo", "2"], refused)).toBe(1);
    expect(refused.err.join("")).toContain("conflict: demo@2 is the rollout's stable version");
    const sent = server.requests.length;
    const bad = io(root);
    expect(await runCommand("models", models, ["purge", "demo"], bad)).toBe(2);
    expect(bad.err.join("")).toContain("missing the model and the version");
    expect(await runCommand("models", models, ["purge", "Not A Model", "1"], bad)).toBe(2);
    expect(server.requests.length).toBe(sent);
  });
});
