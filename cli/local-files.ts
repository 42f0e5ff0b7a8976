/**
 * Local files the CLI uploads: what `floodgate submit` does with `--input
 * '{"video":"@clip.mp4"}'` (a top-level input value `@PATH` names a local file, uploaded first
 * and sent as its file id; `@@…` is a literal `@…`), and the upload bar drawn on a terminal.
 * Used by cli/client-commands.ts (submit) and cli/files.ts (files upload).
 */
import { statSync } from "node:fs";
import { resolve } from "node:path";
import { createLogUpdate } from "log-update";
import { contentTypeOf, localFile, type UploadProgress } from "../client/index.ts";
import { INPUT_CONTENT_TYPES } from "../shared/files.ts";
import { UsageError } from "./flags.ts";
import { formatBytes } from "./progress.ts";
import { stderrStream, type StderrIo } from "./stderr.ts";

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
export function uploadProgress(io: StderrIo & { now(): number }): (p: UploadProgress) => void {
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
