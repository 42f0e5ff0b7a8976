/**
 * `floodgate models push DIR`, `floodgate models list [MODEL]` and `floodgate models purge MODEL
 * VERSION` (admin): a model author's side of the model repository. A push reads the version directory (cli/pieces.ts), sends its
 * manifest and file list, uploads the pieces the store lacks a few at a time with a live
 * progress line, then commits the version. Every step is safe to repeat, so an interrupted push
 * resumes by running it again: only the pieces still missing are sent. Called by cli/main.ts.
 */
import { resolve } from "node:path";
import { z } from "zod";
import { ModelName } from "../shared/api.ts";
import { VersionName, type VersionSummary } from "../shared/repository.ts";
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
import { DEFAULT_PARALLEL, pushVersionDir, type Upload } from "./push.ts";
import { table } from "./table.ts";

const MODELS_HELP = `floodgate models — model versions in the repository (admin)

Usage:
  floodgate models push DIR [--parallel N] [--json]
      Push the version in DIR: DIR/manifest.json (model, version, runner, input schema, …;
      docs/models.md) and every other file in DIR, cut into 8 MiB pieces. Pieces the store
      already has are not sent again, so an interrupted push resumes when run again. The same
      model and version with other content is refused: versions are immutable.
  floodgate models list [MODEL] [--json]
      Versions (of MODEL, or of every model), newest first: state, size, pieces, when, by whom.
  floodgate models purge MODEL VERSION [--json]
      Delete VERSION from every agent's cache: each agent deletes its files and the pieces no
      other cached version uses once nothing on its host serves it. Refused (conflict) while
      the rollout desires it as stable or canary: roll out another version first. The version
      stays in the repository; a later rollout may name it again.

Options:
  --parallel N             pieces uploaded at once (default ${DEFAULT_PARALLEL})
  --json                   one JSON object on stdout instead of the progress and the summary
${connHelp("admin")}
Symbolic links inside DIR are followed; one that leads outside DIR is refused. What is not a
regular file (a link to a folder, a socket, a FIFO) is skipped, and each is named.
`;

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

/** The tenths of its pieces an upload has sent. */
const tenth = (u: Upload): number => (u.pieces > 0 ? Math.floor((10 * u.done) / u.pieces) : 10);

/** The plain-log line after a piece, when the upload crossed a tenth of its pieces (or ended). */
export function uploadLogLine(before: Upload, after: Upload, now: number): string | undefined {
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
  let piecesTotal = 0;
  let ticker: ReturnType<typeof setInterval> | undefined;
  try {
    const summary = await pushVersionDir(client, dir, {
      parallel: flags.parallel,
      signal: stop.signal,
      now: io.now,
      on: {
        hashing: (p) => {
          if (io.tty)
            screen?.live(`hashing ${p.files}/${p.of} files · ${formatBytes(p.bytes)}/${formatBytes(p.total)}`);
        },
        counted: (c) => {
          for (const s of c.skipped) io.stderr(`skipped ${s.path}: ${s.why}\n`);
          screen?.line(
            `${c.model} ${c.version}: ${c.files} files, ${c.pieces} pieces, ${formatBytes(c.bytes)} (hashed in ${formatDuration((io.now() - started) / 1000)})`,
          );
          piecesTotal = c.pieces;
        },
        uploading: (u) => {
          upload = u;
          if (u.pieces > 0) {
            screen?.line(
              `${piecesTotal - u.pieces} of ${piecesTotal} pieces already stored; uploading ${u.pieces} (${formatBytes(u.bytes)})`,
            );
          }
          if (io.tty && screen) {
            ticker = setInterval(() => screen.live(uploadLine(u, io.now(), io.columns)), 100);
            ticker.unref?.();
          }
        },
        piece: (before, after) => {
          if (!io.tty) {
            const line = uploadLogLine(before, after, io.now());
            if (line !== undefined) screen?.line(line);
          }
        },
      },
    });
    clearInterval(ticker);
    screen?.clear();
    if (json) jsonOut(io, summary);
    else {
      io.stdout(
        `${summary.model} ${summary.version} is ${summary.state}: ${summary.files} files, ${summary.pieces} pieces (${summary.uploaded_pieces} uploaded, ${summary.skipped_pieces} already stored), ` +
          `${formatBytes(summary.bytes)} in ${formatDuration((io.now() - started) / 1000)}\ndigest ${summary.digest}\n`,
      );
    }
    return 0;
  } catch (err) {
    clearInterval(ticker);
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

const purgeVersion: Runner = async (argv, io) => {
  const parsed = parseFlags(argv, { ...CONN_ADMIN, ...JSON_FLAG }, z.strictObject(Conn), {
    min: 2,
    max: 2,
    names: "the model and the version, e.g. floodgate models purge demo 1",
  });
  if (!parsed) return help(io, MODELS_HELP);
  const [model = "", version = ""] = parsed.args;
  if (!ModelName.safeParse(model).success) {
    throw new UsageError(`${JSON.stringify(model)} is not a model name (1–64 of a-z, 0-9, '.', '_', '-')`);
  }
  const v = VersionName.safeParse(version);
  if (!v.success)
    throw new UsageError(`${JSON.stringify(version)} is not a version name (${v.error.issues[0]?.message})`);
  const purge = await admin(connection(parsed.flags, io), io).versions.purge(model, version);
  if (parsed.flags.json) jsonOut(io, purge);
  else
    io.stdout(`purged ${model}@${version}: agents delete it from their caches once nothing on their host serves it\n`);
  return 0;
};

/** `floodgate models …`: push, list or purge. */
export const models: Runner = async (argv, io: Io) => {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "-h" || sub === "--help" || sub === "help") return help(io, MODELS_HELP);
  if (sub === "push") return await pushVersion(rest, io);
  if (sub === "list") return await listVersions(rest, io);
  if (sub === "purge") return await purgeVersion(rest, io);
  throw new UsageError(`unknown models command ${JSON.stringify(sub)} (try: models push, models list, models purge)`);
};
