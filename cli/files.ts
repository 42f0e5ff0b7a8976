/**
 * Input files in the CLI: `floodgate files list|upload|rm`, and what `floodgate submit` does
 * with `--input '{"video":"@clip.mp4"}'`: a top-level input value `@PATH` names a local file,
 * uploaded first (with a progress bar on a terminal) and sent as its file id; `@@…` is a
 * literal `@…`. A thin shell over the SDK's files API (client/files.ts).
 */
import { statSync } from "node:fs";
import { resolve } from "node:path";
import { createLogUpdate } from "log-update";
import { z } from "zod";
import { localFile, type FileView, type UploadProgress } from "../client/index.ts";
import { contentTypeOf } from "../client/files.ts";
import { INPUT_CONTENT_TYPES } from "../shared/files.ts";
import {
  Conn,
  CONN_USER,
  connection,
  connHelp,
  help,
  JSON_FLAG,
  jsonOut,
  stderrStream,
  user,
  type Io,
  type Runner,
} from "./client-commands.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { formatBytes } from "./progress.ts";
import { table } from "./table.ts";

export const FILES_HELP = `Usage:
  floodgate files list [--limit N] [--json]     your input files, newest first
  floodgate files upload PATH [--json]          upload an image or video; prints its file id
  floodgate files rm FILE_ID                    delete a file and its bytes

Jobs name input files by id where their model's input schema marks a file field; \`floodgate
submit MODEL --input '{"video":"@clip.mp4"}'\` uploads clip.mp4 first and submits with its id.
Files are deleted after the edge's retention (7 days unless configured).

Options:
  --limit N                files per page (1–100, default 50)
  --json                   the answer as JSON
${connHelp("user")}`;

/** Checks a local path names a readable file of a type inputs may have; answers its absolute path. */
export function checkLocalFile(where: string, path: string, cwd: string): string {
  const file = resolve(cwd, path);
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new UsageError(`${where}: ${file} is not a file`);
    size = st.size;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`${where}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (size === 0) throw new UsageError(`${where}: ${file} is empty`);
  const type = contentTypeOf(file);
  if (type === undefined) {
    throw new UsageError(
      `${where}: ${file}: the extension says no media type an input may have (${INPUT_CONTENT_TYPES.join(", ")})`,
    );
  }
  return file;
}

/**
 * The input with every top-level `"@PATH"` value replaced by the local file to upload (checked
 * to exist here, so a missing file is a usage error before anything is sent), and `"@@…"` by
 * the literal `"@…"`.
 */
export function withLocalFiles(input: Record<string, unknown>, cwd: string): Record<string, unknown> {
  const out: Record<string, unknown> = { ...input };
  for (const [k, v] of Object.entries(input)) {
    if (typeof v !== "string" || !v.startsWith("@")) continue;
    if (v.startsWith("@@")) out[k] = v.slice(1);
    else out[k] = localFile(checkLocalFile(`--input.${k} ${v}`, v.slice(1), cwd));
  }
  return out;
}

/**
 * What an upload's progress draws: a bar redrawn in place on a terminal, and one line per file
 * when it is done (on a terminal and elsewhere alike).
 */
export function uploadProgress(io: Io): (p: UploadProgress) => void {
  const draw = io.tty ? createLogUpdate(stderrStream(io), { showCursor: true }) : undefined;
  const started = io.now();
  return (p) => {
    const share = p.total > 0 ? p.sent / p.total : 1;
    const width = 24;
    const filled = Math.round(share * width);
    const label = p.field === undefined ? p.name : `${p.field} (${p.name})`;
    if (p.sent < p.total) {
      draw?.(
        `uploading ${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${String(Math.floor(share * 100)).padStart(3)}% ${formatBytes(p.sent)}/${formatBytes(p.total)}`,
      );
      return;
    }
    draw?.clear();
    io.stderr(`uploaded ${label}: ${formatBytes(p.total)} in ${((io.now() - started) / 1000).toFixed(1)} s\n`);
  };
}

function fileTable(files: FileView[]): string {
  if (files.length === 0) return "no files\n";
  return table(
    ["ID", "NAME", "TYPE", "SIZE", "STATUS", "EXPIRES"],
    files.map((f) => [f.id, f.name, f.content_type, formatBytes(f.size), f.status, f.expires_at]),
  );
}

const FileIdArg = z.string().regex(/^file_[0-9a-z]{16}$/, "a file id, file_…");

export const files: Runner = async (argv, io) => {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "-h" || sub === "--help" || sub === "help") return help(io, FILES_HELP);
  if (sub !== "list" && sub !== "upload" && sub !== "rm") {
    throw new UsageError(`unknown files command ${JSON.stringify(sub)} (try: list, upload, rm)`);
  }
  const parsed = parseFlags(
    rest,
    { ...CONN_USER, ...JSON_FLAG, ...(sub === "list" ? { limit: { type: "string" } } : {}) },
    z.strictObject({ ...Conn, limit: z.coerce.number().int().min(1).max(100).optional() }),
    sub === "list"
      ? { min: 0, max: 0, names: "" }
      : { min: 1, max: 1, names: sub === "rm" ? "the file id, file_…" : "the path of an image or video" },
  );
  if (!parsed) return help(io, FILES_HELP);
  const { flags, args } = parsed;
  const id = sub === "rm" ? FileIdArg.safeParse(args[0]) : undefined;
  if (id && !id.success) throw new UsageError(`${JSON.stringify(args[0])} is not a file id (file_…)`);
  const path = sub === "upload" ? checkLocalFile("the path", args[0] as string, io.cwd) : undefined;
  const { fg } = user(connection(flags, io), io);
  switch (sub) {
    case "list": {
      const page = await fg.files.list({ limit: flags.limit ?? 50 });
      if (flags.json) jsonOut(io, page);
      else io.stdout(fileTable(page.files));
      return 0;
    }
    case "upload": {
      const file = await fg.files.upload(localFile(path as string), { onProgress: uploadProgress(io) });
      if (flags.json) jsonOut(io, file);
      else io.stdout(`${file.id}\n`);
      return 0;
    }
    default: {
      const fileId = id?.data as string;
      await fg.files.delete(fileId);
      if (flags.json) jsonOut(io, { deleted: fileId });
      else io.stdout(`deleted ${fileId}\n`);
      return 0;
    }
  }
};
