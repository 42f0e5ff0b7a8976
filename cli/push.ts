/**
 * Pushing a version directory to the model repository through the admin client: the manifest
 * and file list, the pieces the store lacks a few at a time, the commit. Every step is safe to
 * repeat, so a push that was interrupted resumes, and a push of a stored version sends nothing.
 * What `floodgate models push` (cli/models.ts) and `floodgate dev` (cli/dev.ts) call.
 */
import pMap from "p-map";
import type { FloodgateAdminClient } from "../client/index.ts";
import { piecesOf, type VersionRecord } from "../shared/repository.ts";
import { readPiece, readVersionDir, type Skipped } from "./pieces.ts";

/** Pieces uploaded at once, unless `--parallel` says otherwise. */
export const DEFAULT_PARALLEL = 4;
/** Deadline of one piece's upload (ms): 8 MiB on a slow uplink. */
const PIECE_TIMEOUT_MS = 300_000;

/** An upload in progress: what there is to send and what went. */
export interface Upload {
  pieces: number;
  bytes: number;
  done: number;
  sent: number;
  /** When uploading started (ms). */
  since: number;
}

/** What `floodgate models push --json` prints. */
export interface PushSummary {
  model: string;
  version: string;
  digest: string;
  state: VersionRecord["state"];
  files: number;
  pieces: number;
  bytes: number;
  uploaded_pieces: number;
  skipped_pieces: number;
  bytes_uploaded: number;
  skipped_files: Skipped[];
}

/** What a push tells its caller as it goes (all optional). */
export interface PushEvents {
  /** Files hashed so far. */
  hashing?(p: { files: number; of: number; bytes: number; total: number }): void;
  /** What DIR holds, once hashed. */
  counted?(c: {
    model: string;
    version: string;
    files: number;
    pieces: number;
    bytes: number;
    skipped: Skipped[];
  }): void;
  /** The edge answered which pieces it lacks; uploading starts (`u` is updated in place as it goes). */
  uploading?(u: Upload): void;
  /** One piece went: the upload before and after it. */
  piece?(before: Upload, after: Upload): void;
}

/**
 * Pushes the version in `dir` through `client`: sends its manifest and file list, uploads the
 * pieces the store lacks `parallel` at a time, commits it. Safe to repeat: a version already
 * stored uploads nothing and answers it as it is. What `floodgate models push` and
 * `floodgate dev` (the built-in versions) both call.
 */
export async function pushVersionDir(
  client: FloodgateAdminClient,
  dir: string,
  opts: { parallel?: number; signal?: AbortSignal; now?: () => number; on?: PushEvents } = {},
): Promise<PushSummary> {
  const now = opts.now ?? Date.now;
  const on = opts.on ?? {};
  const signal = opts.signal;
  const v = await readVersionDir(dir, (p) => on.hashing?.(p));
  const { model, version } = v.push.manifest;
  const pieces = piecesOf(v.push.files).length;
  const bytes = v.push.files.reduce((n, f) => n + f.size, 0);
  on.counted?.({ model, version, files: v.push.files.length, pieces, bytes, skipped: v.skipped });
  const answer = await client.versions.push(model, v.push, { signal });
  const missing = answer.missing;
  const sizeOf = (sha: string): number => v.sources.get(sha)?.size ?? 0;
  const u: Upload = {
    pieces: missing.length,
    bytes: missing.reduce((n, sha) => n + sizeOf(sha), 0),
    done: 0,
    sent: 0,
    since: now(),
  };
  on.uploading?.(u);
  await pMap(
    missing,
    async (sha) => {
      const source = v.sources.get(sha);
      if (!source) throw new Error(`the edge asked for piece ${sha}, which is not one of this version's`);
      const piece = await readPiece(sha, source);
      await client.versions.putPiece(sha, piece, { signal, timeoutMs: PIECE_TIMEOUT_MS });
      const before = { ...u };
      u.done += 1;
      u.sent += piece.length;
      on.piece?.(before, u);
    },
    { concurrency: opts.parallel ?? DEFAULT_PARALLEL, ...(signal ? { signal } : {}) },
  );
  const record = await client.versions.commit(model, version, { signal });
  return {
    model,
    version,
    digest: record.digest,
    state: record.state,
    files: record.files.length,
    pieces,
    bytes: record.bytes,
    uploaded_pieces: u.done,
    skipped_pieces: pieces - u.done,
    bytes_uploaded: u.sent,
    skipped_files: v.skipped,
  };
}
