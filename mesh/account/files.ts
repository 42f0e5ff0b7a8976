/**
 * An account's input files: their records, the parts their uploads have stored, their
 * retention, and the check a submit naming them must pass. Pure over {@link AccountStore}: the
 * AccountActor calls it for the edge's file routes and for submits whose input names files,
 * and deletes the bytes in R2 itself (files past retention from its alarm).
 */
import { fail, type Failure } from "../../shared/errors.ts";
import { partCount } from "../../shared/outputs.ts";
import { FileId, type FileCreate, type FileParts, type FileView, type InputFileRef } from "../../shared/files.ts";
import type { AccountStore, FileRow } from "./store.ts";

const iso = (t: number): string => new Date(t).toISOString();

export function fileView(f: FileRow): FileView {
  return {
    id: f.id,
    name: f.name,
    content_type: f.content_type,
    size: f.size,
    status: f.sha256 === null ? "uploading" : "ready",
    sha256: f.sha256,
    part_bytes: f.part_bytes,
    parts: partCount(f.size, f.part_bytes),
    created_at: iso(f.created_at),
    expires_at: iso(f.expires_at),
  };
}

const noFile = (id: string): Failure => fail("file_not_found", `no file ${id} (or it expired, or was deleted)`);

/** A file of the account that has not expired, or a failure naming it. */
export function liveFile(store: AccountStore, id: string, now: number): { ok: true; file: FileRow } | Failure {
  const f = FileId.safeParse(id).success ? store.file(id) : undefined;
  return f && f.expires_at > now ? { ok: true, file: f } : noFile(id);
}

/** Records a new file whose upload the edge started (R2 upload id `r2Upload`). */
export function createFile(
  store: AccountStore,
  id: string,
  body: Required<FileCreate>,
  r2Upload: string,
  now: number,
  retentionMs: number,
): FileView {
  const row: FileRow = {
    id,
    name: body.name,
    content_type: body.content_type,
    size: body.size,
    part_bytes: body.part_bytes,
    r2_upload: r2Upload,
    sha256: null,
    created_at: now,
    expires_at: now + retentionMs,
  };
  store.putFile(row);
  return fileView(row);
}

/** The parts of a file's upload the edge has stored: what a resuming client need not send again. */
export function fileParts(store: AccountStore, f: FileRow): FileParts {
  return {
    id: f.id,
    status: f.sha256 === null ? "uploading" : "ready",
    part_bytes: f.part_bytes,
    parts: partCount(f.size, f.part_bytes),
    stored: store.parts(f.id).map((p) => ({ part_number: p.n, size: p.size })),
  };
}

/** The upload a part or a complete goes to: the file must be the account's and still uploading. */
export function uploadOf(
  store: AccountStore,
  id: string,
  now: number,
): { ok: true; file: FileRow; r2_upload: string } | Failure {
  const live = liveFile(store, id, now);
  if (!live.ok) return live;
  const f = live.file;
  if (f.r2_upload === null) return fail("conflict", `file ${id} is already complete`);
  return { ok: true, file: f, r2_upload: f.r2_upload };
}

/**
 * What a submit's inputs name, by file id (distinct): the ref of each live, complete file of
 * the account, or why it may not be named.
 */
export function inputRefs(
  store: AccountStore,
  ids: readonly string[],
  now: number,
): Record<string, InputFileRef | Failure> {
  const out: Record<string, InputFileRef | Failure> = {};
  for (const id of new Set(ids)) {
    const live = liveFile(store, id, now);
    if (!live.ok) out[id] = live;
    else if (live.file.sha256 === null) {
      out[id] = fail("file_not_ready", `file ${id} is still uploading; complete its upload before naming it in a job`);
    } else {
      const f = live.file;
      out[id] = { id, content_type: f.content_type, size: f.size, sha256: live.file.sha256 };
    }
  }
  return out;
}
