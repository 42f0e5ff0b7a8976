/**
 * The host cache under concurrent agents: real processes sharing one directory.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FakeEdge, makeVersion } from "../testing/edge.ts";
import { VersionCache } from "./fetch.ts";
import { tryLock } from "./lock.ts";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0)) await c();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "fg-cache-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs `script` (an ES module) in a new process; resolves with its stdout, rejects if it fails. */
function run(script: string): Promise<string> {
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
  cleanup.push(() => void child.kill("SIGKILL"));
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  return new Promise((res, rej) =>
    child.once("exit", (code) => (code === 0 ? res(out) : rej(new Error(`exited ${code}: ${err}`)))),
  );
}

describe("the host cache", () => {
  it("four agents of one host fetching one version at once fetch each piece from the edge once, and all get it whole", async () => {
    const edge = await FakeEdge.start();
    cleanup.push(() => edge.close());
    const files: Record<string, string> = {};
    for (let i = 0; i < 12; i++) files[`part-${i}.bin`] = `piece ${i} `.repeat(200 + i);
    const v = edge.add(
      await makeVersion(
        {
          format: 1,
          model: "demo",
          version: "7",
          runner: "demo",
          input_schema: { type: "object" },
          resources: { gpus: 0 },
          config: {},
        },
        files,
      ),
    );
    edge.pieceDelayMs = 40;
    const dir = tempDir();
    const script = `import { fetchVersion, VersionCache } from ${JSON.stringify(join(import.meta.dirname, "fetch.ts"))};
      const got = await fetchVersion({ baseUrl: ${JSON.stringify(edge.url)}, token: "t".repeat(40), agentId: () => "agt_" + process.pid },
        new VersionCache(${JSON.stringify(dir)}), { model: "demo", version: "7", digest: ${JSON.stringify(v.record.digest)} }, { lockPollMs: 20 });
      process.stdout.write(JSON.stringify(got));
      process.exit(got.ok ? 0 : 1);`;
    const results = (await Promise.all([0, 1, 2, 3].map(() => run(script)))).map(
      (o) => JSON.parse(o) as { ok: boolean; version: { dir: string }; fetched: { pieces: number } },
    );
    const pieces = new Set(v.record.files.flatMap((f) => f.pieces));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(new Set(results.map((r) => r.version.dir)).size).toBe(1);
    // One agent fetched every piece; the others waited for it.
    expect(results.map((r) => r.fetched.pieces).sort((a, b) => a - b)).toEqual([0, 0, 0, pieces.size]);
    expect(edge.requests.filter((r) => r.startsWith("piece "))).toHaveLength(pieces.size);
    for (const [path, content] of Object.entries(files))
      expect(readFileSync(join(results[0]!.version.dir, path), "utf8")).toBe(content);
    expect(existsSync(new VersionCache(dir).lockPath("demo", "7"))).toBe(false);
  }, 60_000);

  it("a lock held by a live process is not taken; one left by a dead process is broken and taken", async () => {
    const dir = tempDir();
    const path = join(dir, "versions", "m", "1.lock");
    const held = await tryLock(path);
    expect(held).toBeDefined();
    expect(await tryLock(path)).toBeUndefined();
    await held!.release();
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
    writeFileSync(path, JSON.stringify({ pid: Number(dead.stdout), at: new Date().toISOString() }));
    const taken = await tryLock(path);
    expect(taken).toBeDefined();
    expect(JSON.parse(readFileSync(path, "utf8")).pid).toBe(process.pid);
    await taken!.release();
  });

  it("of eight processes racing for one dead agent's lock, exactly one takes it", async () => {
    const dir = tempDir();
    const path = join(dir, "v.lock");
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
    writeFileSync(path, JSON.stringify({ pid: Number(dead.stdout) }));
    // Each racer says what it got and lives on until told to go, so the taker's lock stays live.
    const script = `import { tryLock } from ${JSON.stringify(join(import.meta.dirname, "lock.ts"))};
      const l = await tryLock(${JSON.stringify(path)}); process.stdout.write(l ? "took\\n" : "no\\n");
      process.stdin.resume(); process.stdin.on("end", () => process.exit(0));`;
    const children = Array.from({ length: 8 }, () =>
      spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["pipe", "pipe", "inherit"] }),
    );
    cleanup.push(() => children.forEach((c) => c.kill("SIGKILL")));
    const outs = await Promise.all(
      children.map(
        (c) =>
          new Promise<string>((res, rej) => {
            let out = "";
            c.stdout.on("data", (d: Buffer) => {
              out += d.toString();
              if (out.endsWith("\n")) res(out.trim());
            });
            c.once("exit", (code) => rej(new Error(`racer exited ${code}`)));
          }),
      ),
    );
    for (const c of children) c.stdin.end();
    expect(outs.filter((o) => o === "took")).toHaveLength(1);
  }, 60_000);
});
