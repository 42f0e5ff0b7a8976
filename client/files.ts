/**
 * Input files in the SDK: uploads (in parts, resumable), reads, lists and deletes, and what a
 * submit does with an input that holds a file: a `Blob` (a browser `File` is one) or a
 * {@link LocalFile} (a path, in Node) is uploaded first and replaced by its file id. Uses only
 * `fetch` and `Blob`; a path is opened with Node's `fs.openAsBlob`, reached through
 * `process.getBuiltinModule`, so nothing here imports a Node module.
 */
import { z } from "zod";
import { FileList, FileParts, FileView, INPUT_CONTENT_TYPES } from "../shared/files.ts";
import { DEFAULT_PART_BYTES, partCount, partLength } from "../shared/outputs.ts";
import { FloodgateClientError } from "./errors.ts";
import type { Http } from "./http.ts";

/** A file on the local disk, to be uploaded (Node only). */
export class LocalFile {
  readonly path: string;
  constructor(path: string) {
    this.path = path;
  }
}

/**
 * Marks a path as a file to upload: an input value `localFile("clip.mp4")` is uploaded at
 * submit and replaced by its file id.
 *
 * @example
 * await fg.jobs.submit("demo", { prompt: "make it snow", video: localFile("clip.mp4") });
 */
export function localFile(path: string): LocalFile {
  return new LocalFile(path);
}

/** Where an upload stands: `sent` of `total` bytes of the file in input field `field`. */
export interface UploadProgress {
  field?: string | undefined;
  name: string;
  sent: number;
  total: number;
}

export interface UploadOptions {
  /** The file's name; the Blob's or the path's base name by default. */
  name?: string | undefined;
  /** The media type; the Blob's, or guessed from the name's extension. */
  contentType?: string | undefined;
  /** Part length (bytes, 5–64 MiB); 8 MiB by default. */
  partBytes?: number | undefined;
  /** Resume this file's upload (its id): only the parts the edge has not stored are sent. */
  resume?: string | undefined;
  onProgress?: ((p: UploadProgress) => void) | undefined;
  signal?: AbortSignal | undefined;
}

export interface FilesApi {
  /** Uploads a Blob (or File) or a {@link LocalFile}, in parts, and answers the ready file. */
  upload(source: Blob | LocalFile, opts?: UploadOptions): Promise<FileView>;
  get(id: string, opts?: { signal?: AbortSignal }): Promise<FileView>;
  /** One page, newest first; pass `next_cursor` back as `cursor` for the next. */
  list(opts?: { limit?: number; cursor?: string; signal?: AbortSignal }): Promise<FileList>;
  /** Deletes the file and its bytes. */
  delete(id: string, opts?: { signal?: AbortSignal }): Promise<void>;
}

const EXTENSIONS: Readonly<Record<string, string>> = {
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  webp: "image/webp",
  gif: "image/gif",
  mp4: "video/mp4",
  m4v: "video/mp4",
  mov: "video/quicktime",
  webm: "video/webm",
};

/** The media type of a file name by its extension, if it is one inputs may have. */
export function contentTypeOf(name: string): string | undefined {
  return EXTENSIONS[name.slice(name.lastIndexOf(".") + 1).toLowerCase()];
}

/** What Node offers for opening a path as a Blob, where the SDK runs in Node. */
type NodeFs = { openAsBlob?: (path: string) => Promise<Blob> };

/** Opens a local path as a Blob (Node ≥ 20.16); elsewhere a clear error. */
async function openLocal(file: LocalFile): Promise<Blob> {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const fs = proc?.getBuiltinModule?.("node:fs") as NodeFs | undefined;
  if (!fs?.openAsBlob) {
    throw new FloodgateClientError(
      `cannot open ${file.path} here: pass a Blob or File instead (paths need Node ≥ 20.16)`,
    );
  }
  try {
    return await fs.openAsBlob(file.path);
  } catch (err) {
    throw new FloodgateClientError(`cannot read ${file.path}: ${(err as Error).message}`);
  }
}

/** Whether an input value is a file to upload. */
export function isUpload(v: unknown): v is Blob | LocalFile {
  return v instanceof LocalFile || (typeof Blob !== "undefined" && v instanceof Blob);
}

export function filesApi(http: Http): FilesApi {
  const upload = async (source: Blob | LocalFile, o: UploadOptions = {}): Promise<FileView> => {
    const blob = source instanceof LocalFile ? await openLocal(source) : source;
    const name =
      o.name ??
      (source instanceof LocalFile
        ? source.path.replace(/^.*[/\\]/, "")
        : typeof (source as { name?: unknown }).name === "string"
          ? (source as File).name
          : "upload");
    const type = o.contentType ?? (blob.type || contentTypeOf(name));
    if (type === undefined || !INPUT_CONTENT_TYPES.includes(type)) {
      throw new FloodgateClientError(
        `${name}: ${type ?? "an unknown media type"} is not one an input file may have (${INPUT_CONTENT_TYPES.join(", ")})`,
      );
    }
    if (blob.size === 0) throw new FloodgateClientError(`${name} is empty`);
    let file: FileView;
    let stored = new Set<number>();
    if (o.resume !== undefined) {
      const parts = await http.request(`/v1/files/${encodeURIComponent(o.resume)}/parts`, FileParts, {
        signal: o.signal,
        idempotent: true,
      });
      file = await http.request(`/v1/files/${encodeURIComponent(o.resume)}`, FileView, {
        signal: o.signal,
        idempotent: true,
      });
      if (file.size !== blob.size) {
        throw new FloodgateClientError(`${name} is ${blob.size} bytes; the upload it resumes is ${file.size}`);
      }
      stored = new Set(parts.stored.map((p) => p.part_number));
    } else {
      file = await http.request("/v1/files", FileView, {
        method: "POST",
        body: { name, content_type: type, size: blob.size, part_bytes: o.partBytes ?? DEFAULT_PART_BYTES },
        signal: o.signal,
      });
    }
    const count = partCount(file.size, file.part_bytes);
    let sent = 0;
    for (let n = 1; n <= count; n++) {
      const start = (n - 1) * file.part_bytes;
      const length = partLength(file.size, file.part_bytes, n);
      if (!stored.has(n)) {
        const bytes = new Uint8Array(await blob.slice(start, start + length).arrayBuffer());
        // A part sent twice replaces itself, so each is safe to retry.
        await http.request(`/v1/files/${encodeURIComponent(file.id)}/parts/${n}`, z.unknown(), {
          method: "PUT",
          bytes,
          signal: o.signal,
          idempotent: true,
        });
      }
      sent += length;
      o.onProgress?.({ name, sent, total: file.size });
    }
    return await http.request(`/v1/files/${encodeURIComponent(file.id)}/complete`, FileView, {
      method: "POST",
      body: {},
      signal: o.signal,
    });
  };
  return {
    upload,
    get: (id, o = {}) =>
      http.request(`/v1/files/${encodeURIComponent(id)}`, FileView, { signal: o.signal, idempotent: true }),
    list: (o = {}) => {
      const q = new URLSearchParams();
      if (o.limit !== undefined) q.set("limit", String(o.limit));
      if (o.cursor !== undefined) q.set("cursor", o.cursor);
      const qs = q.toString();
      return http.request(`/v1/files${qs ? `?${qs}` : ""}`, FileList, { signal: o.signal, idempotent: true });
    },
    delete: async (id, o = {}) => {
      await http.request(`/v1/files/${encodeURIComponent(id)}`, z.undefined(), {
        method: "DELETE",
        signal: o.signal,
        idempotent: true,
      });
    },
  };
}

/**
 * An input with every file value (a Blob or a {@link LocalFile}) uploaded and replaced by its
 * file id; the input itself when it holds none (no request is made).
 */
export async function uploadInputFiles(
  files: FilesApi,
  input: Record<string, unknown>,
  opts: { onProgress?: ((p: UploadProgress) => void) | undefined; signal?: AbortSignal | undefined } = {},
): Promise<Record<string, unknown>> {
  const fields = Object.entries(input).filter(([, v]) => isUpload(v));
  if (fields.length === 0) return input;
  const out = { ...input };
  for (const [field, v] of fields) {
    const file = await files.upload(v as Blob | LocalFile, {
      signal: opts.signal,
      onProgress: opts.onProgress && ((p) => opts.onProgress?.({ ...p, field })),
    });
    out[field] = file.id;
  }
  return out;
}
