/**
 * What `floodgate models push` sends, read from a version's directory: `manifest.json`
 * (checked with `VersionManifest`), and every other file cut into content-addressed pieces of
 * `PIECE_BYTES` and hashed (SHA-256 of each piece and of the whole file). Files are streamed, never
 * read whole, so a 20 GB checkpoint costs a megabyte of memory; a piece is read again, from its
 * offset, only when it is uploaded. Called by cli/models.ts; tested in pieces.test.ts.
 *
 * Nothing is left out silently: a symbolic link that leaves the directory is refused, and what is
 * not a regular file (a link to a folder, a socket, a FIFO, a device) is skipped and said so.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, open, readdir, readFile, realpath, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import {
  MAX_VERSION_FILES,
  PIECE_BYTES,
  VersionFile,
  VersionManifest,
  type VersionPush,
} from "../shared/repository.ts";

/** A version directory that cannot be pushed as it is; the message says what to change. */
export class VersionDirError extends Error {}

/** Where a piece's bytes are: a file and a range of it. */
export interface PieceSource {
  file: string;
  offset: number;
  size: number;
}

/** A file of the directory, hashed: the file as the push lists it, and where each piece is. */
export interface HashedFile {
  file: VersionFile;
  pieces: { sha256: string; offset: number; size: number }[];
}

/** A file of the directory to push: its path in the version and on disk. */
export interface FoundFile {
  path: string;
  abs: string;
  size: number;
}

/** Something in the directory that is not pushed, and why. */
export interface Skipped {
  path: string;
  why: string;
}

/** The manifest file of a version directory. */
export const MANIFEST = "manifest.json";

/** Bytes read from a file at a time while hashing. */
const READ_BYTES = 1024 * 1024;

/** Reads `DIR/manifest.json`, naming the field of the first problem (`manifest.json: resources.gpus: …`). */
export async function readManifest(dir: string): Promise<VersionManifest> {
  const file = join(dir, MANIFEST);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new VersionDirError(
      code === "ENOENT"
        ? `${file} does not exist: a version directory holds manifest.json (docs/models.md) and its files`
        : `cannot read ${file}: ${code ?? (err as Error).message}`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new VersionDirError(`${MANIFEST} is not JSON: ${(err as Error).message}`);
  }
  const parsed = VersionManifest.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? issue.path.join(".") : "(the whole file)";
    throw new VersionDirError(`${MANIFEST}: ${where}: ${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}

/** Whether `path` is `root` or inside it (both real paths). */
function inside(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * The files of a version directory to push, sorted by path, and what is skipped. A symbolic link
 * to a file inside the directory is pushed with its target's bytes; one that leads outside is
 * refused ({@link VersionDirError}), as is a name a version's path may not have.
 */
export async function findFiles(dir: string): Promise<{ files: FoundFile[]; skipped: Skipped[] }> {
  const root = await realpath(dir);
  const files: FoundFile[] = [];
  const skipped: Skipped[] = [];
  const walk = async (abs: string): Promise<void> => {
    const entries = await readdir(abs, { withFileTypes: true });
    for (const e of entries) {
      const full = join(abs, e.name);
      const path = relative(root, full).split(sep).join("/");
      if (e.isDirectory()) {
        await walk(full);
        continue;
      }
      if (path === MANIFEST) continue;
      let target = full;
      if (e.isSymbolicLink()) {
        const real = await realpath(full).catch(() => undefined);
        if (real === undefined) {
          skipped.push({ path, why: "a symbolic link to nothing" });
          continue;
        }
        if (!inside(root, real)) {
          throw new VersionDirError(
            `${path} is a symbolic link to ${real}, outside ${dir}: copy the file into the directory or remove the link`,
          );
        }
        if ((await stat(real)).isDirectory()) {
          skipped.push({ path, why: "a symbolic link to a folder (its files are pushed where they are)" });
          continue;
        }
        target = real;
      }
      const info = await lstat(target);
      if (!info.isFile()) {
        skipped.push({ path, why: "not a regular file" });
        continue;
      }
      const valid = VersionFile.shape.path.safeParse(path);
      if (!valid.success) {
        throw new VersionDirError(`${path}: ${valid.error.issues[0]?.message ?? "not a valid path"}; rename it`);
      }
      files.push({ path, abs: target, size: info.size });
    }
  };
  await walk(root);
  if (files.length > MAX_VERSION_FILES) {
    throw new VersionDirError(`${dir} holds ${files.length} files; a version holds at most ${MAX_VERSION_FILES}`);
  }
  // Code-point order, whatever order the file system lists them in: the digest depends on it.
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { files, skipped };
}

/**
 * Streams a file once, cutting it into pieces of {@link PIECE_BYTES}: each piece's SHA-256 and
 * place, and the whole file's. An empty file has no pieces. `onBytes` hears each chunk read.
 */
export async function hashFile(f: FoundFile, onBytes?: (n: number) => void): Promise<HashedFile> {
  const whole = createHash("sha256");
  const pieces: HashedFile["pieces"] = [];
  let piece = createHash("sha256");
  let inPiece = 0;
  let read = 0;
  for await (const chunk of createReadStream(f.abs, { highWaterMark: READ_BYTES }) as AsyncIterable<Buffer>) {
    whole.update(chunk);
    for (let at = 0; at < chunk.length;) {
      const take = Math.min(PIECE_BYTES - inPiece, chunk.length - at);
      piece.update(chunk.subarray(at, at + take));
      inPiece += take;
      at += take;
      if (inPiece === PIECE_BYTES) {
        pieces.push({ sha256: piece.digest("hex"), offset: read + at - inPiece, size: inPiece });
        piece = createHash("sha256");
        inPiece = 0;
      }
    }
    read += chunk.length;
    onBytes?.(chunk.length);
  }
  if (inPiece > 0) pieces.push({ sha256: piece.digest("hex"), offset: read - inPiece, size: inPiece });
  if (read !== f.size) throw new VersionDirError(`${f.path} changed while it was read (${f.size} bytes, then ${read})`);
  return {
    file: { path: f.path, size: read, sha256: whole.digest("hex"), pieces: pieces.map((p) => p.sha256) },
    pieces,
  };
}

/** What a version directory pushes: the push body, where each piece is, and what was skipped. */
export interface VersionDir {
  push: VersionPush;
  sources: Map<string, PieceSource>;
  skipped: Skipped[];
}

/**
 * Reads a version directory: its manifest, then every file hashed ({@link hashFile}). The push
 * it answers depends only on the bytes and paths, never on the order files were made or listed.
 * `onProgress` hears the bytes hashed so far of all there are.
 */
export async function readVersionDir(
  dir: string,
  onProgress?: (p: { files: number; of: number; bytes: number; total: number }) => void,
): Promise<VersionDir> {
  const manifest = await readManifest(dir);
  const { files, skipped } = await findFiles(dir);
  const total = files.reduce((n, f) => n + f.size, 0);
  const sources = new Map<string, PieceSource>();
  const listed: VersionFile[] = [];
  let bytes = 0;
  for (const [i, f] of files.entries()) {
    const hashed = await hashFile(f, (n) => {
      bytes += n;
      onProgress?.({ files: i, of: files.length, bytes, total });
    });
    listed.push(hashed.file);
    for (const p of hashed.pieces) if (!sources.has(p.sha256)) sources.set(p.sha256, { file: f.abs, ...p });
    onProgress?.({ files: i + 1, of: files.length, bytes, total });
  }
  return { push: { manifest, piece_bytes: PIECE_BYTES, files: listed }, sources, skipped };
}

/**
 * Reads a piece's bytes from its file and checks them against its name, so a file changed since
 * it was hashed is caught here, with its name, rather than refused by the edge.
 */
export async function readPiece(sha256: string, source: PieceSource): Promise<Buffer<ArrayBuffer>> {
  const fh = await open(source.file, "r");
  try {
    const bytes = Buffer.alloc(source.size);
    let got = 0;
    while (got < source.size) {
      const { bytesRead } = await fh.read(bytes, got, source.size - got, source.offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got !== source.size || createHash("sha256").update(bytes).digest("hex") !== sha256) {
      throw new VersionDirError(`${source.file} changed since it was hashed; push again`);
    }
    return bytes;
  } finally {
    await fh.close();
  }
}
