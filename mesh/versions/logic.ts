/**
 * The rules of a model's versions, pure: what a push must satisfy beyond its schema, the size
 * each piece must have, and how a stored version reads back. Called by the VersionsActor
 * (mesh/versions-actor.ts) and tested in plain Node (logic.test.ts).
 *
 * Files are cut at {@link PIECE_BYTES}: piece `i` of a file of `size` bytes holds bytes
 * `[i·PIECE_BYTES, min(size, (i+1)·PIECE_BYTES))`, so an empty file has no pieces and a file of
 * exactly 8 MiB has one. A piece is named by the SHA-256 of its bytes, so one name always has one
 * size: a push whose file list gives a piece two sizes can never be assembled, and is refused.
 */
import { PIECE_BYTES, piecesOf, type VersionPush } from "../../shared/repository.ts";

/** The name the manifest is written under in a version's directory; no file may take it. */
export const MANIFEST_FILE = "manifest.json";

/** Pieces a file of `size` bytes is cut into. */
export function pieceCount(size: number): number {
  return Math.ceil(size / PIECE_BYTES);
}

/** Bytes of piece `index` of a file of `size` bytes. */
export function pieceSize(size: number, index: number): number {
  return Math.min(PIECE_BYTES, size - index * PIECE_BYTES);
}

/**
 * Each distinct piece of a push with the size its place implies, or the first rule the file list
 * breaks, named by its field (`files.2.pieces: …`), for a 400 `invalid_body`.
 */
export function pieceSizes(
  push: VersionPush,
): { ok: true; sizes: Map<string, number> } | { ok: false; problem: string } {
  const sizes = new Map<string, number>();
  for (const [i, f] of push.files.entries()) {
    if (f.pieces.length !== pieceCount(f.size)) {
      return {
        ok: false,
        problem: `files.${i}.pieces: a file of ${f.size} bytes has ${pieceCount(f.size)} pieces of at most ${PIECE_BYTES} bytes, not ${f.pieces.length}`,
      };
    }
    for (const [j, sha] of f.pieces.entries()) {
      const size = pieceSize(f.size, j);
      const held = sizes.get(sha);
      if (held !== undefined && held !== size) {
        return {
          ok: false,
          problem: `files.${i}.pieces.${j}: piece ${sha} is ${size} bytes here and ${held} bytes elsewhere; one sha256 has one size`,
        };
      }
      sizes.set(sha, size);
    }
  }
  return { ok: true, sizes };
}

/**
 * The first rule a push breaks beyond its schema, named by its field, or `undefined`: the
 * manifest names the route's model; file paths are unique, none is `manifest.json`, and none is
 * a folder of another (`a` and `a/b` cannot both be files); the weights file is one of the
 * files; piece counts and sizes agree ({@link pieceSizes}).
 */
export function pushProblem(model: string, push: VersionPush): string | undefined {
  if (push.manifest.model !== model) {
    return `manifest.model: ${JSON.stringify(push.manifest.model)} is not the model of the path (${JSON.stringify(model)})`;
  }
  const paths = new Set<string>();
  for (const [i, f] of push.files.entries()) {
    if (f.path === MANIFEST_FILE) return `files.${i}.path: ${MANIFEST_FILE} is the manifest, not a file of the version`;
    if (paths.has(f.path)) return `files.${i}.path: ${JSON.stringify(f.path)} is listed twice`;
    paths.add(f.path);
  }
  for (const [i, f] of push.files.entries()) {
    const parts = f.path.split("/");
    for (let n = 1; n < parts.length; n++) {
      const folder = parts.slice(0, n).join("/");
      if (paths.has(folder) || folder === MANIFEST_FILE) {
        return `files.${i}.path: ${JSON.stringify(f.path)} is inside ${JSON.stringify(folder)}, which is a file`;
      }
    }
  }
  const weights = push.manifest.weights;
  if (weights !== undefined && !paths.has(weights)) {
    return `manifest.weights: ${JSON.stringify(weights)} is not one of the version's files`;
  }
  const sized = pieceSizes(push);
  return sized.ok ? undefined : sized.problem;
}

/** What a listing shows of a push: its bytes (the files' sizes summed) and distinct pieces. */
export function totals(push: VersionPush): { bytes: number; pieces: number } {
  return { bytes: push.files.reduce((n, f) => n + f.size, 0), pieces: piecesOf(push.files).length };
}

/**
 * Why a stored piece cannot be the one a version names, or `undefined`: its stored size is not
 * the size its place in the file list implies.
 */
export function storedSizeProblem(sha256: string, stored: number, expected: number): string | undefined {
  return stored === expected
    ? undefined
    : `piece ${sha256} is stored with ${stored} bytes, but the version's file list puts ${expected} bytes there`;
}
