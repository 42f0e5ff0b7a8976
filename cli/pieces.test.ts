import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { PIECE_BYTES, piecesOf, versionDigest } from "../shared/repository.ts";
import { findFiles, hashFile, readManifest, readPiece, readVersionDir, VersionDirError } from "./pieces.ts";

const made: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "floodgate-pieces-"));
  made.push(d);
  return d;
}
afterEach(() => {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

/** Deterministic bytes that differ from piece to piece (so no two pieces share a hash by accident). */
function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

const MANIFEST = {
  format: 1,
  model: "demo",
  version: "1",
  runner: "demo",
  input_schema: { type: "object" },
};

function versionDir(files: Record<string, Buffer | string>, order: string[] = Object.keys(files)): string {
  const dir = tempDir();
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(MANIFEST));
  for (const path of order) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), files[path] ?? "");
  }
  return dir;
}

async function hashed(content: Buffer) {
  const dir = versionDir({ f: content });
  return await hashFile({ path: "f", abs: join(dir, "f"), size: content.length });
}

describe("cutting a file into pieces", () => {
  it("an empty file has no pieces, and the SHA-256 of nothing", async () => {
    const h = await hashed(Buffer.alloc(0));
    expect(h.file).toEqual({ path: "f", size: 0, sha256: sha(Buffer.alloc(0)), pieces: [] });
  });

  it("a file of exactly 8 MiB is one piece, the file's own hash", async () => {
    const content = bytes(PIECE_BYTES);
    const h = await hashed(content);
    expect(h.file.pieces).toEqual([sha(content)]);
    expect(h.file.sha256).toBe(sha(content));
    expect(h.pieces).toEqual([{ sha256: sha(content), offset: 0, size: PIECE_BYTES }]);
  });

  it("pieces break at every 8 MiB, the last holding the rest, each hashing its own bytes", async () => {
    const content = bytes(2 * PIECE_BYTES + 3);
    const h = await hashed(content);
    const slices = [
      content.subarray(0, PIECE_BYTES),
      content.subarray(PIECE_BYTES, 2 * PIECE_BYTES),
      content.subarray(2 * PIECE_BYTES),
    ];
    expect(h.file.pieces).toEqual(slices.map(sha));
    expect(h.pieces.map((p) => [p.offset, p.size])).toEqual([
      [0, PIECE_BYTES],
      [PIECE_BYTES, PIECE_BYTES],
      [2 * PIECE_BYTES, 3],
    ]);
    expect(h.file.sha256).toBe(sha(content));
  });

  it("a piece read back for upload is its bytes, and a file changed since is caught by name", async () => {
    const content = bytes(PIECE_BYTES + 10, 7);
    const dir = versionDir({ f: content });
    const h = await hashFile({ path: "f", abs: join(dir, "f"), size: content.length });
    const last = h.pieces[1]!;
    expect(await readPiece(last.sha256, { file: join(dir, "f"), ...last })).toEqual(content.subarray(PIECE_BYTES));
    writeFileSync(join(dir, "f"), bytes(PIECE_BYTES + 10, 8));
    await expect(readPiece(last.sha256, { file: join(dir, "f"), ...last })).rejects.toThrow(
      /changed since it was hashed/,
    );
  });
});

describe("reading a version directory", () => {
  it("the push is the same whatever order the files were written in, and from run to run", async () => {
    const files = { "b.bin": bytes(PIECE_BYTES + 1, 2), "a/z.txt": "z", "a/y.txt": "y", empty: "" };
    const one = await readVersionDir(versionDir(files));
    const two = await readVersionDir(versionDir(files, ["empty", "a/y.txt", "b.bin", "a/z.txt"]));
    expect(one.push.files.map((f) => f.path)).toEqual(["a/y.txt", "a/z.txt", "b.bin", "empty"]);
    expect(two.push).toEqual(one.push);
    expect(await versionDigest(two.push)).toBe(await versionDigest(one.push));
    expect(await versionDigest((await readVersionDir(versionDir(files))).push)).toBe(await versionDigest(one.push));
  });

  it("a piece shared by files is one source; manifest.json is the manifest, not a file", async () => {
    const same = bytes(100, 3);
    const v = await readVersionDir(versionDir({ "a.bin": same, "b.bin": same }));
    expect(v.push.files.map((f) => f.path)).toEqual(["a.bin", "b.bin"]);
    expect(piecesOf(v.push.files)).toEqual([sha(same)]);
    expect([...v.sources.keys()]).toEqual([sha(same)]);
    expect(v.push.manifest).toMatchObject({ model: "demo", resources: { gpus: 1 }, max_batch: 1 });
  });

  it("a manifest that fails its schema is refused naming the field", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "manifest.json"), JSON.stringify({ ...MANIFEST, resources: { gpus: -1 } }));
    await expect(readManifest(dir)).rejects.toThrow(/^manifest\.json: resources\.gpus: /);
    writeFileSync(join(dir, "manifest.json"), "{");
    await expect(readManifest(dir)).rejects.toThrow(/^manifest\.json is not JSON/);
    await expect(readManifest(tempDir())).rejects.toThrow(/manifest\.json does not exist/);
  });

  it("a symbolic link leaving the directory is refused; one inside is pushed; what is not a file is skipped and named", async () => {
    const outside = tempDir();
    writeFileSync(join(outside, "secret"), "x");
    const dir = versionDir({ "w.bin": "weights", "sub/a.txt": "a" });
    symlinkSync(join(dir, "w.bin"), join(dir, "alias.bin"));
    symlinkSync(join(dir, "sub"), join(dir, "sublink"));
    mkfifoOrSkip(join(dir, "pipe"));
    const found = await findFiles(dir);
    expect(found.files.map((f) => f.path)).toEqual(["alias.bin", "sub/a.txt", "w.bin"]);
    expect(found.skipped.map((s) => s.path).sort()).toEqual([...(hasFifo ? ["pipe"] : []), "sublink"].sort());
    symlinkSync(join(outside, "secret"), join(dir, "leak"));
    await expect(findFiles(dir)).rejects.toThrow(VersionDirError);
    await expect(findFiles(dir)).rejects.toThrow(/leak is a symbolic link to .*, outside/);
  });

  it("a file name a version's path may not have is refused with the rule", async () => {
    const dir = versionDir({ "has space.bin": "x" });
    await expect(findFiles(dir)).rejects.toThrow(/^has space\.bin: a relative path/);
  });
});

let hasFifo = true;
/** A FIFO where the platform makes one (`mkfifo`), to show that what is not a file is skipped by name. */
function mkfifoOrSkip(path: string): void {
  if (spawnSync("mkfifo", [path]).status !== 0) hasFifo = false;
}
