import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { PIECE_BYTES } from "../../shared/repository.ts";
import { FakeEdge, makeVersion, type StoredVersion } from "../testing/edge.ts";
import { type EdgeAccess, fetchVersion, VersionCache } from "./fetch.ts";

const MANIFEST = {
  format: 1,
  model: "demo",
  version: "2",
  runner: "demo",
  input_schema: { type: "object" },
  resources: { gpus: 0 },
  config: { fail_pct: 0 },
};

/** Small files, one piece each, and one shared by two paths. */
function files(n: number): Record<string, string> {
  const out: Record<string, string> = { "same-a.bin": "shared bytes", "nested/same-b.bin": "shared bytes" };
  for (let i = 0; i < n; i++) out[`part-${i}.bin`] = `piece number ${i} `.repeat(10 + i);
  return out;
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0)) await c();
});

async function setup(
  v?: StoredVersion,
): Promise<{ edge: FakeEdge; access: EdgeAccess; cache: VersionCache; version: StoredVersion; logs: string[] }> {
  const edge = await FakeEdge.start();
  const dir = mkdtempSync(join(tmpdir(), "fg-fetch-"));
  cleanup.push(
    () => edge.close(),
    () => rmSync(dir, { recursive: true, force: true }),
  );
  const version = edge.add(v ?? (await makeVersion(MANIFEST, files(8))));
  const access: EdgeAccess = { baseUrl: edge.url, token: "t".repeat(40), agentId: () => "agt_0000000000000001" };
  return { edge, access, cache: new VersionCache(dir), version, logs: [] };
}

const want = (v: StoredVersion) => ({ model: "demo", version: "2", digest: v.record.digest });
const fast = { backoff: { baseMs: 1, maxMs: 5 } };

describe("fetching a version", () => {
  it("pieces are fetched a few at a time, each verified, and the files assembled under versions/<model>/<version>/ with manifest.json from the record", async () => {
    const { edge, access, cache, version } = await setup();
    edge.pieceDelayMs = 30;
    const progress: number[] = [];
    const got = await fetchVersion(access, cache, want(version), {
      concurrency: 3,
      onProgress: (p) => progress.push(p.pieces),
    });
    expect(got).toMatchObject({ ok: true, fetched: { pieces: 9 } });
    if (!got.ok) return;
    expect(got.version.dir).toBe(join(cache.root, "versions", "demo", "2"));
    for (const [path, content] of Object.entries(files(8))) {
      expect(readFileSync(join(got.version.dir, path), "utf8")).toBe(content);
    }
    expect(JSON.parse(readFileSync(join(got.version.dir, "manifest.json"), "utf8"))).toEqual(version.record.manifest);
    // The shared bytes are one piece, fetched once; never more than three at a time.
    expect(edge.requests.filter((r) => r.startsWith("piece"))).toHaveLength(9);
    expect(edge.maxInFlight).toBeGreaterThan(1);
    expect(edge.maxInFlight).toBeLessThanOrEqual(3);
    expect(progress.at(-1)).toBe(9);
    // Nothing temporary is left behind.
    expect(readdirSync(join(cache.root, "pieces")).filter((n) => n.endsWith(".tmp"))).toEqual([]);
    // The version holds its record, its files and the marker of its last use: no lock or fetching record.
    expect(readdirSync(join(cache.root, "versions", "demo")).sort()).toEqual(["2", "2.json", "2.used"]);
  });

  it("a file larger than a piece is assembled from its pieces in order", async () => {
    const big = new Uint8Array(PIECE_BYTES + 1000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 255;
    const v = await makeVersion(MANIFEST, { "weights.bin": big });
    expect(v.record.files[0]?.pieces).toHaveLength(2);
    const { access, cache } = await setup(v);
    const got = await fetchVersion(access, cache, want(v));
    expect(got.ok).toBe(true);
    const bytes = readFileSync(join(cache.dir("demo", "2"), "weights.bin"));
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(v.record.files[0]?.sha256);
  });

  it("a corrupted piece is refused and said so; it is never kept and the version is not assembled", async () => {
    const { edge, access, cache, version } = await setup();
    const bad = version.record.files.find((f) => f.path === "part-3.bin")!.pieces[0]!;
    edge.corrupt.add(bad);
    const logs: string[] = [];
    const got = await fetchVersion(access, cache, want(version), { log: (l) => logs.push(l) });
    expect(got).toMatchObject({ ok: false, permanent: true });
    expect(!got.ok && got.message).toMatch(
      new RegExp(`piece ${bad} of demo@2 from the edge hashes to [0-9a-f]{64}: refused`),
    );
    expect(logs.some((l) => l.includes(bad) && l.includes("refused"))).toBe(true);
    expect(existsSync(cache.piece(bad))).toBe(false);
    expect(existsSync(cache.dir("demo", "2"))).toBe(false);
    expect(existsSync(cache.recordPath("demo", "2"))).toBe(false);
  });

  it("a partial cache resumes: only the pieces it lacks are fetched", async () => {
    const { edge, access, cache, version } = await setup();
    expect((await fetchVersion(access, cache, want(version))).ok).toBe(true);
    // As if the fetch had stopped half way: the directory not yet in place, some pieces missing.
    rmSync(cache.dir("demo", "2"), { recursive: true });
    unlinkSync(cache.recordPath("demo", "2"));
    const lost = [...new Set(version.record.files.slice(0, 4).map((f) => f.pieces[0]!))];
    expect(lost).toHaveLength(3);
    for (const sha of lost) unlinkSync(cache.piece(sha));
    edge.requests.length = 0;
    const again = await fetchVersion(access, cache, want(version));
    expect(again).toMatchObject({ ok: true, fetched: { pieces: 3 } });
    expect(edge.requests.filter((r) => r.startsWith("piece")).sort()).toEqual(lost.map((s) => `piece ${s}`).sort());
  });

  it("a version complete in the cache loads without a request", async () => {
    const { edge, access, cache, version } = await setup();
    expect((await fetchVersion(access, cache, want(version))).ok).toBe(true);
    edge.requests.length = 0;
    const again = await fetchVersion(access, cache, want(version));
    expect(again).toMatchObject({ ok: true, fetched: { pieces: 0, bytes: 0 } });
    expect(edge.requests).toEqual([]);
  });

  it("a record whose digest is not the one desired is refused", async () => {
    const { access, cache, version } = await setup();
    const got = await fetchVersion(access, cache, { ...want(version), digest: "f".repeat(64) });
    expect(got).toMatchObject({ ok: false, permanent: true });
    expect(!got.ok && got.message).toContain(`has digest ${version.record.digest} on the edge, not ${"f".repeat(64)}`);
  });

  it("a record whose content does not hash to its digest is refused", async () => {
    const v = await makeVersion(MANIFEST, files(2));
    // The store's record says one thing and holds another: its digest is the original's.
    const tampered: StoredVersion = {
      ...v,
      record: { ...v.record, manifest: { ...v.record.manifest, config: { fail_pct: 100 } } },
    };
    const { access, cache } = await setup(tampered);
    const got = await fetchVersion(access, cache, want(v));
    expect(got).toMatchObject({ ok: false, permanent: true });
    expect(!got.ok && got.message).toMatch(/hashes to [0-9a-f]{64}, not its digest/);
    expect(existsSync(cache.dir("demo", "2"))).toBe(false);
  });

  it("network trouble (5xx, 429) is retried with backoff; a version the edge does not have fails, to be tried again later", async () => {
    const { edge, access, cache, version } = await setup();
    edge.failNext.set("/v1/agent/pieces/", { status: 503, times: 3 });
    edge.failNext.set("/v1/agent/versions/", { status: 429, times: 1 });
    const got = await fetchVersion(access, cache, want(version), { ...fast, concurrency: 1 });
    expect(got.ok).toBe(true);
    const missing = await fetchVersion(access, cache, { model: "demo", version: "9", digest: "a".repeat(64) }, fast);
    expect(missing).toMatchObject({ ok: false, permanent: false });
    expect(!missing.ok && missing.message).toContain("404 (version_not_found");
  });

  it("a refusal of the agent's token is not retried", async () => {
    const { edge, access, cache, version } = await setup();
    edge.failNext.set("/v1/agent/versions/", { status: 401, times: 1 });
    const got = await fetchVersion(access, cache, want(version), fast);
    expect(got).toMatchObject({ ok: false, permanent: true });
    expect(edge.requests).toEqual([]);
  });
});
