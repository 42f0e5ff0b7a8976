/**
 * `floodgate models push DIR` and `floodgate models list [MODEL]` (admin): a model author's side
 * of the model repository. A push reads the version directory (cli/pieces.ts), sends its
 * manifest and file list, uploads the pieces the store lacks a few at a time with a live
 * progress line, then commits the version. Every step is safe to repeat, so an interrupted push
 * resumes by running it again: only the pieces still missing are sent. Called by cli/main.ts.
 */
import { resolve } from "node:path";
import pMap from "p-map";
import { z } from "zod";
import { ModelName } from "../shared/api.ts";
import { piecesOf, type VersionRecord, type VersionSummary } from "../shared/repository.ts";
import {
  admin,
  ago,
  Conn,
  CONN_ADMIN,
  connection,
  connHelp,
  help,
  JSON_FLAG,
  jsonOut,
  Screen,
  type Io,
  type Runner,
} from "./client-commands.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { formatBytes, formatDuration } from "./progress.ts";
import { readPiece, readVersionDir, type Skipped } from "./pieces.ts";
import { table } from "./table.ts";

/** Pieces uploaded at once, unless `--parallel` says otherwise. */
const DEFAULT_PARALLEL = 4;
/** Deadline of one piece's upload (ms): 8 MiB on a slow uplink. */
const PIECE_TIMEOUT_MS = 300_000;

const MODELS_HELP = `floodgate models — model versions in the repository (admin)

Usage:
  floodgate models push DIR [--parallel N] [--json]
      Push the version in DIR: DIR/manifest.json (model, version, runner, input schema, …;
      docs/models.md) and every other file in DIR, cut into 8 MiB pieces. Pieces the store
      already has are not sent again, so an interrupted push resumes when run again. The same
      model and version with other content is refused: versions are immutable.
  floodgate models list [MODEL] [--json]
      Versions (of MODEL, or of every model), newest first: state, size, pieces, when, by whom.

Options:
  --parallel N             pieces uploaded at once (default ${DEFAULT_PARALLEL})
  --json                   one JSON object on stdout instead of the progress and the summary
${connHelp("admin")}
Symbolic links inside DIR are followed; one that leads outside DIR is refused. What is not a
regular file (a link to a folder, a socket, a FIFO) is skipped, and each is named.
`;

/** An upload in progress: what there is to send and what went. */
export interface Upload {
  pieces: number;
  bytes: number;
  done: number;
  sent: number;
  /** When uploading started (ms). */
  since: number;
}

const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

function rate(u: Upload, now: number): number | undefined {
  const s = (now - u.since) / 1000;
  return s > 0.2 && u.sent > 0 ? u.sent / s : undefined;
}

/**
 * The live line of an upload for a terminal `columns` wide: a bar over the bytes, pieces done,
 * bytes, rate and time left; cut to fit so it never wraps.
 */
export function uploadLine(u: Upload, now: number, columns = 80): string {
  const frac = u.bytes > 0 ? Math.min(1, u.sent / u.bytes) : 1;
  const full = Math.round(frac * 24);
  const r = rate(u, now);
  const eta = r === undefined ? "" : ` · ETA ${formatDuration((u.bytes - u.sent) / r)}`;
  const line =
    `${SPINNER[Math.floor(now / 100) % SPINNER.length] ?? ""} uploading [${"█".repeat(full)}${"░".repeat(24 - full)}] ` +
    `${u.done}/${u.pieces} pieces · ${formatBytes(u.sent)}/${formatBytes(u.bytes)}` +
    `${r === undefined ? "" : ` · ${formatBytes(r)}/s`}${eta}`;
  const max = Math.max(1, columns - 1);
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** The plain-log line after a piece, when the upload crossed a tenth of its pieces (or ended). */
export function uploadLogLine(before: Upload, after: Upload, now: number): string | undefined {
  const tenth = (u: Upload): number => (u.pieces > 0 ? Math.floor((10 * u.done) / u.pieces) : 10);
  if (tenth(before) === tenth(after) && after.done !== after.pieces) return undefined;
  const r = rate(after, now);
  return `uploaded ${after.done}/${after.pieces} pieces (${formatBytes(after.sent)} of ${formatBytes(after.bytes)}${r === undefined ? "" : `, ${formatBytes(r)}/s`})`;
}

/** The table of `floodgate models list`. */
export function versionTable(versions: VersionSummary[], now: number): string {
  return table(
    ["MODEL", "VERSION", "STATE", "SIZE", "PIECES", "CREATED", "BY", "DIGEST"],
    versions.map((v) => [
      v.model,
      v.version,
      v.state,
      formatBytes(v.bytes),
      String(v.pieces),
      ago(v.created_at, now),
      v.created_by,
      `${v.digest.slice(0, 12)}…`,
    ]),
  );
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

class Interrupted extends Error {}

const pushVersion: Runner = async (argv, io) => {
  const parsed = parseFlags(
    argv,
    { ...CONN_ADMIN, ...JSON_FLAG, parallel: { type: "string" } },
    z.strictObject({ ...Conn, parallel: z.coerce.number().int().min(1).max(64).default(DEFAULT_PARALLEL) }),
    { min: 1, max: 1, names: "the version directory, e.g. floodgate models push models/demo/2026-12-06.1" },
  );
  if (!parsed) return help(io, MODELS_HELP);
  const { flags, args } = parsed;
  const json = flags.json === true;
  // Configuration first: a missing key is said before a checkpoint is hashed.
  const client = admin(connection(flags, io), io);
  const dir = resolve(io.cwd, args[0] as string);
  const screen = json ? undefined : new Screen(io);
  const stop = new AbortController();
  const off = io.onInterrupt(() => {
    off();
    stop.abort(new Interrupted());
  });
  const started = io.now();
  let upload: Upload | undefined;
  try {
    const v = await readVersionDir(dir, (p) => {
      if (io.tty) screen?.live(`hashing ${p.files}/${p.of} files · ${formatBytes(p.bytes)}/${formatBytes(p.total)}`);
    });
    for (const s of v.skipped) io.stderr(`skipped ${s.path}: ${s.why}\n`);
    const { model, version } = v.push.manifest;
    const pieces = piecesOf(v.push.files).length;
    const bytes = v.push.files.reduce((n, f) => n + f.size, 0);
    screen?.line(
      `${model} ${version}: ${v.push.files.length} files, ${pieces} pieces, ${formatBytes(bytes)} (hashed in ${formatDuration((io.now() - started) / 1000)})`,
    );
    const answer = await client.versions.push(model, v.push, { signal: stop.signal });
    const missing = answer.missing;
    const sizeOf = (sha: string): number => v.sources.get(sha)?.size ?? 0;
    const u: Upload = {
      pieces: missing.length,
      bytes: missing.reduce((n, sha) => n + sizeOf(sha), 0),
      done: 0,
      sent: 0,
      since: io.now(),
    };
    upload = u;
    if (missing.length > 0) {
      screen?.line(
        `${pieces - missing.length} of ${pieces} pieces already stored; uploading ${missing.length} (${formatBytes(u.bytes)})`,
      );
    }
    const ticker =
      io.tty && screen ? setInterval(() => screen.live(uploadLine(u, io.now(), io.columns)), 100) : undefined;
    ticker?.unref?.();
    try {
      await pMap(
        missing,
        async (sha) => {
          const source = v.sources.get(sha);
          if (!source) throw new Error(`the edge asked for piece ${sha}, which is not one of this version's`);
          const piece = await readPiece(sha, source);
          await client.versions.putPiece(sha, piece, { signal: stop.signal, timeoutMs: PIECE_TIMEOUT_MS });
          const before = { ...u };
          u.done += 1;
          u.sent += piece.length;
          if (!io.tty) {
            const line = uploadLogLine(before, u, io.now());
            if (line !== undefined) screen?.line(line);
          }
        },
        { concurrency: flags.parallel, signal: stop.signal },
      );
    } finally {
      clearInterval(ticker);
      screen?.clear();
    }
    const record = await client.versions.commit(model, version, { signal: stop.signal });
    const summary: PushSummary = {
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
    if (json) jsonOut(io, summary);
    else {
      io.stdout(
        `${model} ${version} is ${record.state}: ${summary.files} files, ${pieces} pieces (${u.done} uploaded, ${summary.skipped_pieces} already stored), ` +
          `${formatBytes(record.bytes)} in ${formatDuration((io.now() - started) / 1000)}\ndigest ${record.digest}\n`,
      );
    }
    return 0;
  } catch (err) {
    screen?.clear();
    if (stop.signal.reason instanceof Interrupted) {
      const sent = upload ? ` after ${upload.done} of ${upload.pieces} pieces` : "";
      io.stderr(`interrupted${sent}; run the same command again to resume (stored pieces are not sent again)\n`);
      return 130;
    }
    throw err;
  } finally {
    off();
  }
};

const listVersions: Runner = async (argv, io) => {
  const parsed = parseFlags(argv, { ...CONN_ADMIN, ...JSON_FLAG }, z.strictObject(Conn), {
    min: 0,
    max: 1,
    names: "",
  });
  if (!parsed) return help(io, MODELS_HELP);
  const model = parsed.args[0];
  if (model !== undefined && !ModelName.safeParse(model).success) {
    throw new UsageError(`${JSON.stringify(model)} is not a model name (1–64 of a-z, 0-9, '.', '_', '-')`);
  }
  const versions = await admin(connection(parsed.flags, io), io).versions.list(model);
  if (parsed.flags.json) jsonOut(io, { versions });
  else if (versions.length === 0) {
    io.stdout(
      `${model === undefined ? "no versions yet" : `no versions of ${model} yet`}; push one: floodgate models push DIR\n`,
    );
  } else io.stdout(versionTable(versions, io.now()));
  return 0;
};

/** `floodgate models …`: push or list. */
export const models: Runner = async (argv, io: Io) => {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "-h" || sub === "--help" || sub === "help") return help(io, MODELS_HELP);
  if (sub === "push") return await pushVersion(rest, io);
  if (sub === "list") return await listVersions(rest, io);
  throw new UsageError(`unknown models command ${JSON.stringify(sub)} (try: models push, models list)`);
};
