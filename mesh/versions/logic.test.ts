import { describe, expect, it } from "vitest";
import { PIECE_BYTES, type VersionPush } from "../../shared/repository.ts";
import { pieceCount, pieceSize, pieceSizes, pushProblem, storedSizeProblem, totals } from "./logic.ts";

const sha = (c: string): string => c.repeat(64);
const emptyFile = (path: string) => ({ path, size: 0, sha256: sha("1"), pieces: [] });

function push(files: VersionPush["files"], manifest: Partial<VersionPush["manifest"]> = {}): VersionPush {
  return {
    manifest: {
      format: 1,
      model: "demo",
      version: "1",
      runner: "demo",
      input_schema: { type: "object" },
      resources: { gpus: 0, vram_gib: 0 },
      max_batch: 1,
      expected_runtime_s: 1,
      config: {},
      ...manifest,
    },
    piece_bytes: PIECE_BYTES,
    files,
  };
}

describe("piece arithmetic", () => {
  it("a file is cut at 8 MiB: an empty file has no pieces, 8 MiB one, 8 MiB + 1 two (the last of one byte)", () => {
    expect(pieceCount(0)).toBe(0);
    expect(pieceCount(1)).toBe(1);
    expect(pieceCount(PIECE_BYTES)).toBe(1);
    expect(pieceCount(PIECE_BYTES + 1)).toBe(2);
    expect(pieceSize(PIECE_BYTES + 1, 0)).toBe(PIECE_BYTES);
    expect(pieceSize(PIECE_BYTES + 1, 1)).toBe(1);
  });
});

describe("a push's file list", () => {
  it("is accepted when counts and sizes agree, a piece shared by files counted once", () => {
    const p = push([
      { path: "a.bin", size: PIECE_BYTES + 5, sha256: sha("1"), pieces: [sha("a"), sha("b")] },
      { path: "w/b.bin", size: PIECE_BYTES, sha256: sha("2"), pieces: [sha("a")] },
      { path: "empty", size: 0, sha256: sha("3"), pieces: [] },
    ]);
    expect(pushProblem("demo", p)).toBeUndefined();
    expect(totals(p)).toEqual({ bytes: 2 * PIECE_BYTES + 5, pieces: 2 });
    const sized = pieceSizes(p);
    expect(sized.ok && [...sized.sizes]).toEqual([
      [sha("a"), PIECE_BYTES],
      [sha("b"), 5],
    ]);
  });

  it("is refused naming the field when the manifest's model is not the path's", () => {
    expect(pushProblem("other", push([]))).toMatch(/^manifest\.model: "demo" is not the model of the path/);
  });

  it("is refused when a file's piece count is not what its size implies", () => {
    expect(
      pushProblem("demo", push([{ path: "a", size: PIECE_BYTES + 1, sha256: sha("1"), pieces: [sha("a")] }])),
    ).toMatch(/^files\.0\.pieces: a file of 8388609 bytes has 2 pieces/);
    expect(pushProblem("demo", push([{ path: "a", size: 0, sha256: sha("1"), pieces: [sha("a")] }]))).toMatch(
      /^files\.0\.pieces:/,
    );
  });

  it("is refused when one sha256 would have two sizes", () => {
    const p = push([
      { path: "a", size: 10, sha256: sha("1"), pieces: [sha("a")] },
      { path: "b", size: 11, sha256: sha("2"), pieces: [sha("a")] },
    ]);
    expect(pushProblem("demo", p)).toMatch(/^files\.1\.pieces\.0: piece a+ is 11 bytes here and 10 bytes elsewhere/);
  });

  it("is refused for a path listed twice, a file named manifest.json, or a file inside another file", () => {
    expect(pushProblem("demo", push([emptyFile("a"), emptyFile("a")]))).toMatch(/^files\.1\.path: "a" is listed twice/);
    expect(pushProblem("demo", push([emptyFile("manifest.json")]))).toMatch(
      /^files\.0\.path: manifest\.json is the manifest/,
    );
    expect(pushProblem("demo", push([emptyFile("a/b"), emptyFile("a")]))).toMatch(
      /^files\.0\.path: "a\/b" is inside "a", which is a file/,
    );
  });

  it("is refused when the manifest's weights file is not one of its files", () => {
    expect(pushProblem("demo", push([], { weights: "model.safetensors" }))).toMatch(/^manifest\.weights:/);
  });

  it("a stored piece of another size than its place implies is a problem", () => {
    expect(storedSizeProblem(sha("a"), 10, 10)).toBeUndefined();
    expect(storedSizeProblem(sha("a"), 9, 10)).toMatch(/stored with 9 bytes/);
  });
});
