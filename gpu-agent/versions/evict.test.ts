/**
 * Eviction of the host cache: real files in a temporary directory, real processes for agents
 * sharing it.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { piecesOf } from "../../shared/repository.ts";
import { FakeEdge, makeVersion, type StoredVersion } from "../testing/edge.ts";
import { evictCache, pinPath, purgeVersion, readPins, writePins } from "./evict.ts";
import { fetchVersion, VersionCache } from "./fetch.ts";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).toReversed()) await c();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "fg-evict-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A disk that is never full: only the byte marks count. */
const roomyDisk = async () => ({ total: 1e15, free: 1e15 });
/** Marks with no disk pressure. */
const bytes = (highBytes: number, lowBytes: number) => ({ highBytes, lowBytes, diskHighPct: 100, diskLowPct: 99 });

const KiB = 1024;
/** File content of `n` KiB, distinct per seed (each file is one piece). */
const blob = (seed: string, n: number): string => seed.padEnd(n * KiB, ".");

async function edgeWith(versions: Record<string, Record<string, string>>): Promise<{
  edge: FakeEdge;
  stored: Map<string, StoredVersion>;
}> {
  const edge = await FakeEdge.start();
  cleanup.push(() => edge.close());
  const stored = new Map<string, StoredVersion>();
  for (const [version, files] of Object.entries(versions)) {
    const v = await makeVersion(
      {
        format: 1,
        model: "m",
        version,
        runner: "demo",
        input_schema: { type: "object" },
        resources: { gpus: 0 },
        config: {},
      },
      files,
    );
    stored.set(version, edge.add(v));
  }
  return { edge, stored };
}

const access = (edge: FakeEdge) => ({ baseUrl: edge.url, token: "t".repeat(40), agentId: () => "agt_test" });

/** Fetches each version into the cache, and marks it last used `i` minutes after the epoch of the test. */
async function stock(cache: VersionCache, edge: FakeEdge, stored: Map<string, StoredVersion>): Promise<void> {
  let i = 0;
  for (const [version, v] of stored) {
    const got = await fetchVersion(access(edge), cache, { model: "m", version, digest: v.record.digest });
    expect(got.ok).toBe(true);
    const at = new Date(Date.UTC(2026, 0, 1, 0, i++));
    utimesSync(cache.usedPath("m", version), at, at);
  }
}

const complete = (cache: VersionCache, version: string) =>
  existsSync(cache.recordPath("m", version)) && existsSync(cache.dir("m", version));

describe("evicting the host cache", () => {
  it("past the high mark, the least recently used versions go until the cache is under the low mark, with the pieces only they used", async () => {
    const shared = blob("shared", 40);
    const { edge, stored } = await edgeWith({
      "1": { "w.bin": shared, "a.bin": blob("one", 40) },
      "2": { "w.bin": shared, "b.bin": blob("two", 40) },
      "3": { "w.bin": shared, "c.bin": blob("three", 40) },
    });
    const cache = new VersionCache(tempDir());
    await stock(cache, edge, stored);
    // Pieces: 4 × 40 KiB; versions: 3 × 80 KiB (and their manifests): about 400 KiB in all.
    const r = await evictCache(cache, bytes(350 * KiB, 250 * KiB), { disk: roomyDisk });
    // Version 1 (80 KiB of files and its own 40 KiB piece) goes; that leaves about 280 KiB, so 2 goes too.
    expect(r.evicted).toEqual(["m@1", "m@2"]);
    expect(r.cacheBytes).toBeLessThanOrEqual(250 * KiB);
    expect(complete(cache, "1")).toBe(false);
    expect(complete(cache, "2")).toBe(false);
    expect(complete(cache, "3")).toBe(true);
    const piece = (version: string, path: string) =>
      stored.get(version)!.record.files.find((f) => f.path === path)!.pieces[0]!;
    expect(existsSync(cache.piece(piece("1", "a.bin")))).toBe(false);
    expect(existsSync(cache.piece(piece("2", "b.bin")))).toBe(false);
    // The piece version 3 still uses is kept.
    expect(existsSync(cache.piece(piece("3", "w.bin")))).toBe(true);
    expect(existsSync(cache.piece(piece("3", "c.bin")))).toBe(true);
    // What is left loads from the cache without the edge.
    edge.requests.length = 0;
    const again = await fetchVersion(access(edge), cache, {
      model: "m",
      version: "3",
      digest: stored.get("3")!.record.digest,
    });
    expect(again.ok && again.fetched.pieces).toBe(0);
    expect(edge.requests).toEqual([]);
  });

  it("under the high mark nothing is evicted", async () => {
    const { edge, stored } = await edgeWith({ "1": { "a.bin": blob("one", 10) }, "2": { "b.bin": blob("two", 10) } });
    const cache = new VersionCache(tempDir());
    await stock(cache, edge, stored);
    const r = await evictCache(cache, bytes(1024 * KiB, 10 * KiB), { disk: roomyDisk });
    expect(r.evicted).toEqual([]);
    expect(complete(cache, "1") && complete(cache, "2")).toBe(true);
  });

  it("a disk fuller than its high mark evicts until the disk is under its low mark", async () => {
    const { edge, stored } = await edgeWith({
      "1": { "a.bin": blob("one", 100) },
      "2": { "b.bin": blob("two", 100) },
      "3": { "c.bin": blob("three", 100) },
    });
    const cache = new VersionCache(tempDir());
    await stock(cache, edge, stored);
    // A 1000 KiB disk with 50 KiB free: 95% full. Down to 80% needs 150 KiB freed: the oldest
    // version (100 KiB of files and its 100 KiB piece) is enough.
    const r = await evictCache(
      cache,
      { diskHighPct: 90, diskLowPct: 80 },
      { disk: async () => ({ total: 1000 * KiB, free: 50 * KiB }) },
    );
    expect(r.evicted).toEqual(["m@1"]);
    expect(r.bytes).toBeGreaterThanOrEqual(150 * KiB);
    expect(complete(cache, "2") && complete(cache, "3")).toBe(true);
  });

  it("versions pinned by a live agent of the host are never evicted; pins of a dead agent are dropped", async () => {
    const { edge, stored } = await edgeWith({
      "1": { "a.bin": blob("one", 40) },
      "2": { "b.bin": blob("two", 40) },
      "3": { "c.bin": blob("three", 40) },
    });
    const cache = new VersionCache(tempDir());
    await stock(cache, edge, stored);
    // This process pins 1 (the oldest); a dead process's pin file names 2.
    writePins(cache, [{ model: "m", version: "1" }]);
    const dead = spawnSyncPid();
    writeFileSync(pinPath(cache, dead), JSON.stringify({ pid: dead, versions: ["m/2"] }));
    expect(await readPins(cache)).toEqual(new Set(["m/1"]));
    expect(existsSync(pinPath(cache, dead))).toBe(false);
    const r = await evictCache(cache, bytes(1, 0), { disk: roomyDisk });
    expect(r.evicted.sort()).toEqual(["m@2", "m@3"]);
    expect(complete(cache, "1")).toBe(true);
  });

  it("a version whose lock another agent holds is not evicted, nor are the pieces of a version being fetched", async () => {
    const { edge, stored } = await edgeWith({
      "1": { "a.bin": blob("one", 40), "s.bin": blob("shared", 40) },
      "2": { "b.bin": blob("two", 40) },
    });
    const cache = new VersionCache(tempDir());
    await stock(cache, edge, stored);
    // Another agent holds 2's lock (checking or fetching it), and is fetching a version 3 that
    // shares a piece with 1.
    const held = await holdIn(cache.lockPath("m", "2"));
    const three = await makeVersion(
      { ...stored.get("1")!.record.manifest, version: "3" },
      { "s.bin": blob("shared", 40), "z.bin": blob("zz", 40) },
    );
    const lock3 = await holdIn(cache.lockPath("m", "3"));
    writeFileSync(cache.fetchingPath("m", "3"), JSON.stringify(three.record));
    const r = await evictCache(cache, bytes(1, 0), { disk: roomyDisk });
    expect(r.evicted).toEqual(["m@1"]);
    expect(complete(cache, "2")).toBe(true);
    const sharedPiece = piecesOf(three.record.files).find((sha) =>
      piecesOf(stored.get("1")!.record.files).includes(sha),
    )!;
    expect(existsSync(cache.piece(sharedPiece))).toBe(true);
    held.kill();
    lock3.kill();
  });

  it("a purged version goes with its files and the pieces only it used; one pinned by a live agent waits", async () => {
    const shared = blob("shared", 20);
    const { edge, stored } = await edgeWith({
      "1": { "s.bin": shared, "a.bin": blob("one", 20) },
      "2": { "s.bin": shared, "b.bin": blob("two", 20) },
    });
    const cache = new VersionCache(tempDir());
    await stock(cache, edge, stored);
    writePins(cache, [{ model: "m", version: "1" }]);
    expect(await purgeVersion(cache, "m", "1")).toBe("busy");
    expect(complete(cache, "1")).toBe(true);
    writePins(cache, []);
    expect(await purgeVersion(cache, "m", "1")).toBe("purged");
    expect(complete(cache, "1")).toBe(false);
    expect(existsSync(cache.usedPath("m", "1"))).toBe(false);
    const piece = (version: string, path: string) =>
      stored.get(version)!.record.files.find((f) => f.path === path)!.pieces[0]!;
    expect(existsSync(cache.piece(piece("1", "a.bin")))).toBe(false);
    expect(existsSync(cache.piece(piece("1", "s.bin")))).toBe(true);
    expect(complete(cache, "2")).toBe(true);
    expect(await purgeVersion(cache, "m", "1")).toBe("absent");
  });

  it("agents loading their versions while two others evict never see their versions deleted; the rest goes", async () => {
    const files: Record<string, Record<string, string>> = {};
    for (let i = 1; i <= 8; i++) files[String(i)] = { "x.bin": blob(`v${i}`, 30), "s.bin": blob("shared", 30) };
    const { edge, stored } = await edgeWith(files);
    const dir = tempDir();
    const cache = new VersionCache(dir);
    await stock(cache, edge, stored);
    edge.requests.length = 0;
    const here = import.meta.dirname;
    // Each loader pins its version (as the version manager does before it fetches) and says so;
    // told to go, it loads the version from the cache again and again, reading its files each
    // time, says how many pieces it had to fetch, and lives on (its pins with it) until told to end.
    const loader = (version: string) => `import { writePins } from ${JSON.stringify(join(here, "evict.ts"))};
      import { fetchVersion, VersionCache } from ${JSON.stringify(join(here, "fetch.ts"))};
      import { readFileSync } from "node:fs";
      import { createInterface } from "node:readline";
      const cache = new VersionCache(${JSON.stringify(dir)});
      writePins(cache, [{ model: "m", version: ${JSON.stringify(version)} }]);
      const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
      process.stdout.write("pinned\\n");
      await lines.next();
      let fetched = 0;
      for (let i = 0; i < 25; i++) {
        const got = await fetchVersion({ baseUrl: ${JSON.stringify(edge.url)}, token: "t".repeat(40), agentId: () => "agt_" + process.pid },
          cache, { model: "m", version: ${JSON.stringify(version)}, digest: ${JSON.stringify(stored.get(version)!.record.digest)} }, { lockPollMs: 5 });
        if (!got.ok) { console.error(got.message); process.exit(1); }
        fetched += got.fetched.pieces;
        readFileSync(got.version.dir + "/x.bin"); readFileSync(got.version.dir + "/s.bin");
      }
      process.stdout.write(fetched + "\\n");
      await lines.next();
      process.exit(0);`;
    const evictor = `import { evictCache } from ${JSON.stringify(join(here, "evict.ts"))};
      import { VersionCache } from ${JSON.stringify(join(here, "fetch.ts"))};
      const cache = new VersionCache(${JSON.stringify(dir)});
      const gone = new Set();
      for (let i = 0; i < 40; i++) {
        const r = await evictCache(cache, { highBytes: 1, lowBytes: 0, diskHighPct: 100, diskLowPct: 99 });
        for (const v of r.evicted) gone.add(v);
      }
      process.stdout.write(JSON.stringify([...gone]));`;
    const loaders = ["1", "2", "3", "4"].map((v) => talk(loader(v)));
    for (const l of loaders) expect(await l.line()).toBe("pinned");
    const evictors = [run(evictor), run(evictor)];
    for (const l of loaders) l.say("go");
    const outs = [...(await Promise.all(loaders.map((l) => l.line()))), ...(await Promise.all(evictors))];
    for (const l of loaders) l.say("end");
    await Promise.all(loaders.map((l) => l.exited));
    // No loader had to fetch again: its version was never deleted under it.
    expect(outs.slice(0, 4)).toEqual(["0", "0", "0", "0"]);
    const gone = new Set(outs.slice(4).flatMap((o) => JSON.parse(o) as string[]));
    for (const v of ["1", "2", "3", "4"]) expect(gone.has(`m@${v}`)).toBe(false);
    // No loader needed the edge.
    expect(edge.requests).toEqual([]);
    for (const v of ["1", "2", "3", "4"]) {
      expect(complete(cache, v)).toBe(true);
      expect(readFileSync(join(cache.dir("m", v), "x.bin"), "utf8")).toBe(files[v]!["x.bin"]);
    }
    for (const v of ["5", "6", "7", "8"]) expect(complete(cache, v)).toBe(false);
    // The piece the kept versions share stays; the pieces only the evicted ones used are gone.
    const pieceOf = (v: string, path: string) => stored.get(v)!.record.files.find((f) => f.path === path)!.pieces[0]!;
    expect(existsSync(cache.piece(pieceOf("1", "s.bin")))).toBe(true);
    for (const v of ["5", "6", "7", "8"]) expect(existsSync(cache.piece(pieceOf(v, "x.bin")))).toBe(false);
    // Once the loaders are gone, their pins go with them: a last pass clears the rest.
    await evictCache(cache, bytes(1, 0), { disk: roomyDisk });
    for (const v of ["1", "2", "3", "4"]) expect(complete(cache, v)).toBe(false);
    expect(existsSync(join(dir, "evict.lock"))).toBe(false);
  }, 60_000);
});

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

/** A process spoken to and heard line by line. */
function talk(script: string): {
  line: () => Promise<string>;
  say: (l: string) => void;
  exited: Promise<number | null>;
} {
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["pipe", "pipe", "inherit"] });
  cleanup.push(() => void child.kill("SIGKILL"));
  let buf = "";
  const waiting: ((l: string) => void)[] = [];
  const ready: string[] = [];
  child.stdout.on("data", (d: Buffer) => {
    buf += d.toString();
    for (let at = buf.indexOf("\n"); at >= 0; at = buf.indexOf("\n")) {
      const l = buf.slice(0, at);
      buf = buf.slice(at + 1);
      const w = waiting.shift();
      if (w) w(l);
      else ready.push(l);
    }
  });
  const exited = new Promise<number | null>((res) => child.once("exit", res));
  return {
    line: () =>
      ready.length > 0
        ? Promise.resolve(ready.shift()!)
        : Promise.race([
            new Promise<string>((res) => waiting.push(res)),
            exited.then((code) => Promise.reject(new Error(`exited ${code} before a line`))),
          ]),
    say: (l) => void child.stdin.write(`${l}\n`),
    exited,
  };
}

/** The pid of a process that has exited. */
function spawnSyncPid(): number {
  return Number(
    spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout,
  );
}

/** Another process takes the lock at `path` and holds it until killed. */
async function holdIn(path: string): Promise<{ kill: () => void }> {
  const script = `import { tryLock } from ${JSON.stringify(join(import.meta.dirname, "lock.ts"))};
    const l = await tryLock(${JSON.stringify(path)}); process.stdout.write(l ? "took\\n" : "no\\n");
    process.stdin.resume();`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["pipe", "pipe", "inherit"] });
  cleanup.push(() => void child.kill("SIGKILL"));
  const said = await new Promise<string>((res, rej) => {
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.endsWith("\n")) res(out.trim());
    });
    child.once("exit", (code) => rej(new Error(`holder exited ${code}`)));
  });
  expect(said).toBe("took");
  return { kill: () => void child.kill("SIGKILL") };
}
