/**
 * `floodgate models push` and `models list` as real processes against the real local stack
 * (`floodgate dev`, R2 and SQLite on disk). A push killed halfway is resumed by running it again,
 * which sends only the pieces the store lacks: a small HTTP relay between the CLI and the edge
 * counts the piece uploads and holds one, so the kill lands after an exact number of pieces.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PIECE_BYTES } from "../../shared/repository.ts";
import { BIN, freePort, ROOT, startStack, type Stack } from "./stack.ts";

let stack: Stack;
const dirs: string[] = [];

beforeAll(async () => {
  stack = await startStack({ agents: 0 });
});

afterAll(async () => {
  await stack?.stop("SIGTERM");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts the CLI as a child process (its own environment names no edge or key). */
function start(args: string[]): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, FLOODGATE_URL: "", FLOODGATE_ADMIN_KEY: "" },
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Run>((res) => child.on("exit", (code) => res({ code, stdout, stderr })));
  return { child, done };
}

const cli = (args: string[]): Promise<Run> => start(args).done;

/** A version directory: manifest.json and these files. */
function versionDir(model: string, version: string, files: Record<string, Buffer | string>): string {
  const dir = mkdtempSync(join(tmpdir(), "floodgate-version-"));
  dirs.push(dir);
  const manifest = { format: 1, model, version, runner: "demo", input_schema: { type: "object" } };
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest, null, 2));
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  return dir;
}

interface Summary {
  state: string;
  pieces: number;
  uploaded_pieces: number;
  skipped_pieces: number;
  bytes_uploaded: number;
  bytes: number;
}

/**
 * A relay to the edge that counts piece uploads (`PUT /v1/admin/pieces/…`) and, while `holdAfter`
 * is set, passes on only that many and holds every later one unanswered.
 */
async function relay(target: string): Promise<{
  url: string;
  puts: () => number;
  held: () => number;
  holdAfter: (n: number | undefined) => void;
  close: () => Promise<void>;
}> {
  let puts = 0;
  let held = 0;
  let limit: number | undefined;
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const piece = req.method === "PUT" && (req.url ?? "").startsWith("/v1/admin/pieces/");
      if (piece && limit !== undefined && puts >= limit) {
        held += 1;
        return;
      }
      if (piece) puts += 1;
      const headers: Record<string, string> = {};
      for (const h of ["authorization", "content-type"]) {
        const v = req.headers[h];
        if (typeof v === "string") headers[h] = v;
      }
      const body = Buffer.concat(chunks);
      void fetch(target + (req.url ?? "/"), {
        method: req.method,
        headers,
        body: body.length > 0 ? body : undefined,
      }).then(
        async (r) => {
          res.writeHead(r.status, { "content-type": r.headers.get("content-type") ?? "application/json" });
          res.end(Buffer.from(await r.arrayBuffer()));
        },
        () => res.destroy(),
      );
    });
  });
  const port = await freePort();
  await new Promise<void>((res) => server.listen(port, "127.0.0.1", res));
  return {
    url: `http://127.0.0.1:${port}`,
    puts: () => puts,
    held: () => held,
    holdAfter: (n) => {
      limit = n;
      puts = 0;
      held = 0;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((res) => server.close(() => res()));
    },
  };
}

async function until(what: string, cond: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("floodgate models against the real stack", () => {
  it("models push uploads a version's pieces and commits it; models list shows it ready; other content under its name is refused", async () => {
    const model = `e2e-${Date.now().toString(36)}`;
    const weights = randomBytes(2 * PIECE_BYTES + 1234);
    const dir = versionDir(model, "2026-12-06.1", {
      "weights.bin": weights,
      "config.json": '{"steps": 4}',
      "tokenizer/vocab.txt": "a\nb\nc\n",
    });
    const pushed = await cli(["models", "push", dir, "--json", "--state", stack.state]);
    expect(pushed.stderr).toBe("");
    expect(pushed.code).toBe(0);
    const summary = JSON.parse(pushed.stdout) as Summary;
    const bytes = weights.length + 12 + 6;
    expect(summary).toMatchObject({ state: "ready", pieces: 5, uploaded_pieces: 5, skipped_pieces: 0, bytes });
    expect(summary.bytes_uploaded).toBe(bytes);

    const listed = await cli(["models", "list", model, "--json", "--state", stack.state]);
    expect(listed.code).toBe(0);
    const { versions } = JSON.parse(listed.stdout) as { versions: Record<string, unknown>[] };
    expect(versions).toHaveLength(1);
    expect(versions[0]).toMatchObject({ model, version: "2026-12-06.1", state: "ready", pieces: 5, bytes });
    expect(versions[0]?.created_by).toMatch(/^admin:[0-9a-f]{8}$/);
    const table = await cli(["models", "list", "--state", stack.state]);
    expect(table.stdout).toMatch(new RegExp(`${model}\\s+2026-12-06\\.1\\s+ready\\s+16\\.8 MB\\s+5\\s`));

    const again = JSON.parse((await cli(["models", "push", dir, "--json", "--state", stack.state])).stdout) as Summary;
    expect(again).toMatchObject({ state: "ready", uploaded_pieces: 0, skipped_pieces: 5, bytes_uploaded: 0 });

    writeFileSync(join(dir, "config.json"), '{"steps": 5}');
    const changed = await cli(["models", "push", dir, "--state", stack.state]);
    expect(changed.code).toBe(1);
    expect(changed.stderr).toMatch(
      /version_conflict: version 2026-12-06\.1 exists \(ready, digest [0-9a-f]{64}\) with other content/,
    );
  });

  it("a push killed after two pieces resumes when run again and sends only the pieces the store lacks", async () => {
    const model = `e2e-resume-${Date.now().toString(36)}`;
    const dir = versionDir(model, "1", { "weights.bin": randomBytes(4 * PIECE_BYTES + 100), "config.json": "{}" });
    const edge = await relay(stack.config.url);
    try {
      const flags = ["--json", "--parallel", "1", "--url", edge.url, "--admin-key", stack.config.admin_key];
      edge.holdAfter(2);
      const first = start(["models", "push", dir, ...flags]);
      await until("the third piece upload", () => edge.held() > 0);
      first.child.kill("SIGKILL");
      const killed = await first.done;
      expect(killed.code).toBeNull();
      expect(edge.puts()).toBe(2);

      const listed = await cli(["models", "list", model, "--json", "--state", stack.state]);
      expect((JSON.parse(listed.stdout) as { versions: { state: string }[] }).versions).toMatchObject([
        { state: "pending" },
      ]);

      edge.holdAfter(undefined);
      const resumed = await cli(["models", "push", dir, ...flags]);
      expect(resumed.code).toBe(0);
      const summary = JSON.parse(resumed.stdout) as Summary;
      expect(summary).toMatchObject({ state: "ready", pieces: 6, uploaded_pieces: 4, skipped_pieces: 2 });
      expect(edge.puts()).toBe(4);
    } finally {
      await edge.close();
    }
  });
});
