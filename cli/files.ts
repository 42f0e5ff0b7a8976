/**
 * `floodgate files list|upload|rm`: the account's input files. A thin shell over the SDK's
 * files API (client/files.ts); local paths and upload bars are cli/local-files.ts's.
 */
import { z } from "zod";
import { localFile, type FileView } from "../client/index.ts";
import {
  Conn,
  CONN_USER,
  connection,
  connHelp,
  help,
  JSON_FLAG,
  jsonOut,
  user,
  type Runner,
} from "./client-commands.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { checkLocalFile, uploadProgress } from "./local-files.ts";
import { formatBytes } from "./progress.ts";
import { table } from "./table.ts";

export const FILES_HELP = `Usage:
  floodgate files list [--limit N] [--json]     your input files, newest first
  floodgate files upload PATH [--resume FILE_ID] [--json]
      upload an image or video; prints its file id. --resume goes on with an upload that was
      cut off: only the parts the edge has not stored are sent
  floodgate files rm FILE_ID                    delete a file and its bytes

Jobs name input files by id where their model's input schema marks a file field; \`floodgate
submit MODEL --input '{"video":"@clip.mp4"}'\` uploads clip.mp4 first and submits with its id.
Files are deleted after the edge's retention (7 days unless configured).

Options:
  --limit N                files per page (1–100, default 50)
  --json                   the answer as JSON
${connHelp("user")}`;

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
    {
      ...CONN_USER,
      ...JSON_FLAG,
      ...(sub === "list" ? { limit: { type: "string" } } : {}),
      ...(sub === "upload" ? { resume: { type: "string" } } : {}),
    },
    z.strictObject({
      ...Conn,
      limit: z.coerce.number().int().min(1).max(100).optional(),
      resume: FileIdArg.optional(),
    }),
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
      const file = await fg.files.upload(localFile(path as string), {
        onProgress: uploadProgress(io),
        resume: flags.resume,
      });
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
