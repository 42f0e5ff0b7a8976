import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { json, jobView, sse, startServer, type TestServer } from "../test/support/http-server.ts";
import { clientCommand, queueTable, type Io } from "./client-commands.ts";

const JOB = "job_0000000000dddddddddddddddd0000";
const ANSWER = { id: JOB, status: "queued", model: "demo", tier: "plus", created_at: "2025-01-01T00:00:00.000Z" };
const GIF = Buffer.from("GIF89a-fake-bytes");
const PNG_B64 = Buffer.from("png-preview").toString("base64");

interface FakeIo extends Io {
  out: string[];
  err: string[];
  interrupt: (() => void) | undefined;
}

let root: string;
let server: TestServer | undefined;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "fg-cli-"));
});
afterEach(async () => {
  await server?.close();
  server = undefined;
  rmSync(root, { recursive: true, force: true });
});

function fakeIo(over: Partial<Io> = {}): FakeIo {
  const io: FakeIo = {
    out: [],
    err: [],
    interrupt: undefined,
    stdout: (s) => void io.out.push(s),
    stderr: (s) => void io.err.push(s),
    tty: false,
    columns: 80,
    interactive: false,
    readKey: () => Promise.resolve("d"),
    onInterrupt: (fn) => {
      io.interrupt = fn;
      return () => {
        io.interrupt = undefined;
      };
    },
    env: {},
    cwd: root,
    now: () => Date.parse("2025-01-01T00:01:00.000Z"),
    fetch: (input, init) => globalThis.fetch(input, init),
    ...over,
  };
  return io;
}

/** Writes the local.json `npm start` would, pointing at `url`. */
function local(url: string): void {
  mkdirSync(join(root, ".floodgate"), { recursive: true });
  writeFileSync(
    join(root, ".floodgate", "local.json"),
    JSON.stringify({ url, admin_key: "fga_admin", api_key: "fgk_user", agent_token: "jwt" }),
  );
}

/**
 * A fake edge: a submit, an event stream made of `frames` (given the server's URL), the output
 * file, cancel. With `hold` the stream stays open after the frames.
 */
async function edge(
  frames: string[] | ((base: string) => string[]),
  opts: { hold?: boolean } = {},
): Promise<TestServer> {
  let base = "";
  const s = await startServer((req, res) => {
    if (req.method === "POST" && req.path === "/v1/models/demo/jobs") return json(res, 202, ANSWER);
    if (req.path === `/v1/jobs/${JOB}/events`) {
      res.writeHead(200, { "content-type": "text/event-stream" });
      const body = (typeof frames === "function" ? frames(base) : frames).join("");
      if (opts.hold) return res.write(body);
      return res.end(body);
    }
    if (req.path.startsWith("/v1/files/")) {
      res.writeHead(200, { "content-type": "image/gif" });
      return res.end(GIF);
    }
    if (req.path === `/v1/jobs/${JOB}/cancel`)
      return json(res, 200, jobView(JOB, { status: "cancelled", phase: "done", queue: null }));
    if (req.path === `/v1/jobs/${JOB}`) return json(res, 200, jobView(JOB));
    return json(res, 404, { error: { code: "not_found", message: "no such route" } });
  });
  base = s.url;
  return s;
}

const text = (xs: string[]): string => xs.join("");

/**
 * The rows a terminal shows after `written`, trailing blank rows dropped: text, CR, LF and the
 * CSI sequences a live line uses (cursor up, down and to a column, erase line, and the
 * synchronized-output mode, which changes nothing on screen).
 */
function terminal(written: string): string[] {
  const rows = [""];
  let row = 0;
  let col = 0;
  const down = (n: number): void => {
    row += n;
    while (rows.length <= row) rows.push("");
  };
  // oxlint-disable-next-line no-control-regex -- a terminal's escape sequences start with ESC
  for (const [tok, priv, num, cmd] of written.matchAll(/\x1b\[(\?)?(\d*)([A-Za-z])|\r|\n|[^\x1b\r\n]+/g)) {
    const line = rows[row] ?? "";
    if (tok === "\n") {
      down(1);
      col = 0;
    } else if (tok === "\r") col = 0;
    else if (cmd === undefined) {
      rows[row] = line.slice(0, col).padEnd(col) + tok + line.slice(col + tok.length);
      col += tok.length;
    } else if (priv) continue;
    else if (cmd === "A") row = Math.max(0, row - Number(num || 1));
    else if (cmd === "B") down(Number(num || 1));
    else if (cmd === "G") col = Number(num || 1) - 1;
    else if (cmd === "K") rows[row] = num === "2" ? "" : line.slice(0, col);
    else throw new Error(`an escape a terminal test does not know: ${JSON.stringify(tok)}`);
  }
  while (rows.at(-1) === "") rows.pop();
  return rows;
}

describe("floodgate client commands", () => {
  it("refuses a submit without --input, or with a wrong flag, with exit code 2", async () => {
    const io = fakeIo();
    expect(await clientCommand("submit", ["demo"], io)).toBe(2);
    expect(text(io.err)).toMatch(/--input: required/);
    expect(text(io.err)).toMatch(/floodgate submit --help/);
    const io2 = fakeIo();
    expect(await clientCommand("submit", ["demo", "--input", "{}", "--wacth"], io2)).toBe(2);
    expect(text(io2.err)).toMatch(/Unknown option '--wacth'/);
    const io3 = fakeIo();
    expect(await clientCommand("submit", ["demo", "--input", "[1]"], io3)).toBe(2);
    expect(text(io3.err)).toMatch(/must be a JSON object/);
  });

  it("says how to give a missing key: a flag, an environment variable, or npm start", async () => {
    const io = fakeIo({ cwd: join(root, "empty") });
    mkdirSync(io.cwd);
    const code = await clientCommand("status", [JOB, "--url", "http://127.0.0.1:9"], io);
    if (existsSync(join(tmpdir(), ".floodgate"))) return; // a stray local.json above the temp dir
    expect(code).toBe(2);
    expect(text(io.err)).toMatch(/--api-key KEY, set FLOODGATE_API_KEY, or start a local stack with `npm start`/);
  });

  it("prints per-command help with exit code 0", async () => {
    const io = fakeIo();
    expect(await clientCommand("submit", ["--help"], io)).toBe(0);
    expect(text(io.out)).toMatch(/floodgate submit <model> --input/);
  });

  it("submits with the key from local.json and prints the job id (JSON with --json)", async () => {
    server = await edge([]);
    local(server.url);
    writeFileSync(join(root, "in.json"), JSON.stringify({ prompt: "a red fox" }));
    const io = fakeIo();
    expect(await clientCommand("submit", ["demo", "--input", "@in.json", "--idempotency-key", "k1"], io)).toBe(0);
    expect(text(io.out)).toBe(`${JOB}\n`);
    const req = server.requests[0]!;
    expect(req.headers.authorization).toBe("Bearer fgk_user");
    expect(req.headers["idempotency-key"]).toBe("k1");
    expect(JSON.parse(req.body)).toEqual({ input: { prompt: "a red fox" } });
    const io2 = fakeIo();
    expect(await clientCommand("submit", ["demo", "--input", "{}", "--json"], io2)).toBe(0);
    expect(JSON.parse(text(io2.out))).toEqual(ANSWER);
  });

  it("--webhook sends the job's own webhook URL; a malformed one is a usage error", async () => {
    server = await edge([]);
    local(server.url);
    const io = fakeIo();
    expect(
      await clientCommand("submit", ["demo", "--input", "{}", "--webhook", "https://hooks.example.com/fg"], io),
    ).toBe(0);
    expect(JSON.parse(server.requests[0]!.body)).toEqual({ input: {}, webhook: "https://hooks.example.com/fg" });
    const bad = fakeIo();
    expect(await clientCommand("submit", ["demo", "--input", "{}", "--webhook", "not a url"], bad)).toBe(2);
    expect(server.requests).toHaveLength(1);
  });

  it("watches a submitted job: plain progress on stderr, previews and checked outputs saved, exit 0", async () => {
    server = await edge((base) => [
      sse("g.1", "status", {
        status: "queued",
        phase: "waiting",
        queue: { position: 1, eta_s: 12, reason: "capacity" },
        attempt: null,
      }),
      sse("g.2", "status", { status: "running", phase: "assigned", queue: null, attempt: 1 }),
      sse("g.3", "progress", { phase: "sampling", step: 5, total: 10 }),
      sse("g.4", "preview", { content_type: "image/png", size: 11, data_base64: PNG_B64 }),
      sse("g.5", "succeeded", {
        outputs: [
          {
            name: "video.gif",
            content_type: "image/gif",
            size: GIF.length,
            sha256: createHash("sha256").update(GIF).digest("hex"),
            url: `${base}/v1/files/outputs/${JOB}/1/video.gif?exp=1&sig=x`,
          },
        ],
      }),
    ]);
    local(server.url);
    const io = fakeIo();
    const code = await clientCommand("submit", ["demo", "--input", '{"prompt":"fox"}', "--watch", "--out", "out"], io);
    expect(code).toBe(0);
    const err = text(io.err);
    expect(err).toContain(`submitted ${JOB}`);
    expect(err).toContain("running · attempt 1");
    expect(err).toContain("queued · 1 ahead · ETA 12 s");
    expect(err).toContain("sampling 5/10 (50%)");
    expect(err).toContain("preview 1 saved: out/preview-1.png");
    expect(err).toContain("saved out/video.gif (17 B)");
    // No terminal, nothing drawn: plain lines only.
    expect(err).not.toContain("\x1b");
    expect(readFileSync(join(root, "out", "preview-1.png")).toString()).toBe("png-preview");
    expect(readFileSync(join(root, "out", "video.gif"))).toEqual(GIF);
    expect(text(io.out)).toBe(`${join(root, "out", "video.gif")}\n`);
  });

  it("on a terminal, draws one live line in place, prints permanent lines above it and erases it at the end", async () => {
    server = await edge(
      [
        sse("g.1", "status", { status: "running", phase: "sampling", queue: null, attempt: 1 }),
        sse("g.2", "progress", { phase: "sampling", step: 5, total: 10 }),
        sse("g.3", "log", { level: "info", message: "weights loaded" }),
      ],
      { hold: true },
    );
    local(server.url);
    const io = fakeIo({ tty: true, columns: 60 });
    const done = clientCommand("watch", [JOB], io);
    await until(() => {
      const rows = terminal(text(io.err));
      return rows.includes("[info] weights loaded") && /5\/10/.test(rows.at(-1) ?? "");
    });
    const during = terminal(text(io.err));
    expect(during.filter((r) => r.includes("running ·"))).toHaveLength(1);
    expect(during.at(-1)).toMatch(/running · sampling .* 5\/10 50%/);
    expect(during.at(-1)!.length).toBeLessThan(60);
    expect(during.at(-2)).toBe("[info] weights loaded");
    io.interrupt?.();
    expect(await done).toBe(130);
    const after = terminal(text(io.err));
    expect(after).toContain("[info] weights loaded");
    expect(after.some((r) => r.includes("running ·"))).toBe(false);
  });

  it("refuses an output whose bytes do not match the job's record, exit 1", async () => {
    server = await edge((base) => [
      sse("g.1", "succeeded", {
        outputs: [
          {
            name: "video.gif",
            content_type: "image/gif",
            size: GIF.length,
            sha256: "0".repeat(64),
            url: `${base}/v1/files/x`,
          },
        ],
      }),
    ]);
    local(server.url);
    const io = fakeIo();
    expect(await clientCommand("watch", [JOB], io)).toBe(1);
    expect(text(io.err)).toMatch(/does not match the job's record/);
    expect(existsSync(join(root, "floodgate-out", JOB, "video.gif"))).toBe(false);
    expect(existsSync(join(root, "floodgate-out", JOB, "video.gif.part"))).toBe(false);
  });

  it("exits 1 with the reason when the watched job fails", async () => {
    server = await edge([sse("g.1", "failed", { error: { code: "oom", message: "CUDA out of memory" } })]);
    local(server.url);
    const io = fakeIo();
    expect(await clientCommand("watch", [JOB], io)).toBe(1);
    expect(text(io.err)).toContain("failed · oom: CUDA out of memory");
  });

  it("detaches on Ctrl-C without a terminal, printing the job id, and leaves the job alone", async () => {
    server = await edge([sse("g.1", "status", { status: "running", phase: "sampling", queue: null, attempt: 1 })], {
      hold: true,
    });
    local(server.url);
    const io = fakeIo();
    const done = clientCommand("watch", [JOB], io);
    await until(() => io.err.some((l) => l.includes("running")));
    io.interrupt?.();
    expect(await done).toBe(130);
    expect(text(io.out)).toBe(`${JOB}\n`);
    expect(text(io.err)).toMatch(/detached; .* goes on/);
    expect(server.requests.some((r) => r.path.endsWith("/cancel"))).toBe(false);
  });

  it("cancels on Ctrl-C with --cancel-on-interrupt, and when a person at a terminal answers c", async () => {
    server = await edge([sse("g.1", "status", { status: "running", phase: "sampling", queue: null, attempt: 1 })], {
      hold: true,
    });
    local(server.url);
    for (const [args, over] of [
      [["--cancel-on-interrupt"], {}],
      [[], { interactive: true, tty: true, readKey: () => Promise.resolve("c") }],
    ] as [string[], Partial<Io>][]) {
      const before = server.requests.filter((r) => r.path.endsWith("/cancel")).length;
      const io = fakeIo(over);
      const done = clientCommand("watch", [JOB, ...args], io);
      await until(() => server!.requests.filter((r) => r.path.endsWith("/events")).length > before);
      io.interrupt?.();
      expect(await done).toBe(130);
      expect(server.requests.filter((r) => r.path.endsWith("/cancel")).length).toBe(before + 1);
      expect(text(io.err)).toContain(`cancelled ${JOB}`);
    }
  });

  it("prints the edge's error code and request id, exit 1", async () => {
    server = await startServer((_req, res) =>
      json(res, 404, { error: { code: "job_not_found", message: `no job ${JOB}` } }),
    );
    local(server.url);
    const io = fakeIo();
    expect(await clientCommand("status", [JOB], io)).toBe(1);
    expect(text(io.err)).toBe(`floodgate status: job_not_found: no job ${JOB} (request req-test)\n`);
  });

  it("lists jobs as a table, and agents and queues for admins", async () => {
    server = await startServer((req, res) => {
      if (req.path.startsWith("/v1/jobs")) return json(res, 200, { jobs: [jobView(JOB)], next_cursor: JOB });
      if (req.path === "/v1/admin/agents") {
        return json(res, 200, {
          agents: [
            {
              agent_id: "agt_1",
              name: "local-0",
              pool: "local",
              models: ["demo"],
              versions: [],
              slots: 2,
              gpus: [{ name: "H100", util_pct: 50, vram_used_mb: 40_960, vram_total_mb: 81_920, temp_c: 61 }],
              last_heartbeat: "2025-01-01T00:00:58.000Z",
            },
          ],
        });
      }
      return json(res, 404, { error: { code: "not_found", message: "no" } });
    });
    local(server.url);
    const io = fakeIo();
    expect(await clientCommand("jobs", ["--limit", "1"], io)).toBe(0);
    expect(text(io.out)).toMatch(/^ID +MODEL +STATUS +CREATED +DETAIL\n/);
    expect(text(io.out)).toContain(`${JOB}  demo   queued  1 min 00 s ago  0 ahead`);
    expect(text(io.out)).toContain(`more: floodgate jobs --cursor ${JOB}`);
    const io2 = fakeIo();
    expect(await clientCommand("agents", [], io2)).toBe(0);
    expect(text(io2.out)).toContain("local-0  local  demo    2      1× H100 50% 40.0/80 GiB 61°C  2 s ago");
    expect(server.requests.at(-1)!.headers.authorization).toBe("Bearer fga_admin");
    const io3 = fakeIo();
    expect(await clientCommand("jobs", ["--limit", "500"], io3)).toBe(2);
    expect(text(io3.err)).toMatch(/--limit: /);
  });

  it("sums a model's queue over its shards", () => {
    const row = {
      model: "demo",
      tier: "plus",
      depth: 2,
      running: 1,
      oldest_wait_s: 30,
      max_wait_over_slo: 0.1,
      drain_per_s: 0.5,
    };
    const out = queueTable([
      { ...row, shard: 0 },
      { ...row, shard: 1, depth: 3, oldest_wait_s: 90, max_wait_over_slo: 0.3 },
      { ...row, shard: 0, tier: "free", depth: 0, running: 0, drain_per_s: 0 },
    ]);
    expect(out.split("\n")).toEqual([
      "MODEL  TIER  DEPTH  RUNNING  OLDEST WAIT  WAIT/SLO  DRAIN/S",
      "demo   plus  5      2        1 min 30 s   0.30      1.00",
      "demo   free  0      0        —            0.10      0.00",
      "",
    ]);
  });

  it("creates accounts and tokens, refusing a bad tier or pool before any request", async () => {
    server = await startServer((req, res) => {
      if (req.path === "/v1/admin/accounts")
        return json(res, 201, { id: "acc_1", key_id: "key_1", api_key: "fgk_new" });
      if (req.path === "/v1/admin/agent-tokens")
        return json(res, 201, { id: "tok_1", token: "jwt", expires_at: "2030-01-01T00:00:00.000Z" });
      res.writeHead(204);
      return res.end();
    });
    local(server.url);
    const io = fakeIo();
    expect(
      await clientCommand("accounts", ["create", "--name", "acme", "--tier", "api", "--rate-limit", "60"], io),
    ).toBe(0);
    expect(text(io.out)).toContain("api key  fgk_new");
    expect(JSON.parse(server.requests[0]!.body)).toEqual({ name: "acme", tier: "api", rate_limit: 60 });
    const io2 = fakeIo();
    expect(
      await clientCommand("tokens", ["create", "--pool", "gpu-east", "--models", "demo, sdxl", "--json"], io2),
    ).toBe(0);
    expect(JSON.parse(server.requests[1]!.body)).toEqual({ pool: "gpu-east", models: ["demo", "sdxl"] });
    const io3 = fakeIo();
    expect(await clientCommand("tokens", ["revoke", "tok_1"], io3)).toBe(0);
    expect(server.requests[2]).toMatchObject({ method: "DELETE", path: "/v1/admin/agent-tokens/tok_1" });
    const io4 = fakeIo();
    expect(await clientCommand("tokens", ["create", "--pool", "Bad Pool", "--models", "demo"], io4)).toBe(2);
    expect(await clientCommand("accounts", ["create", "--name", "x"], io4)).toBe(2);
    expect(text(io4.err)).toMatch(/--tier: required/);
    expect(server.requests).toHaveLength(3);
  });
});

async function until(cond: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}
