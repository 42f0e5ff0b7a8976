/**
 * Input files of a lease: before its runner starts, the agent downloads each file the lease's
 * `files` names through the edge (`GET /v1/agent/inputs/{job}/{epoch}/{field}`, authorised by
 * the agent token and the lease), streams it to disk while hashing it, checks its size and
 * SHA-256 against the lease, and hands the runner the local path in that input field in place
 * of the file id. The files are deleted when the attempt ends. Called by the agent (agent.ts).
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { extensionOf, type InputFiles } from "../shared/files.ts";
import { AGENT_ID_HEADER } from "../shared/wire.ts";
import type { UploadTarget } from "./upload.ts";

/** A file of a lease that could not be had: the attempt fails `input_unavailable`, or is abandoned if `stale`. */
export class InputError extends Error {
  readonly stale: boolean;
  constructor(message: string, stale = false) {
    super(message);
    this.name = "InputError";
    this.stale = stale;
  }
}

/** What a lease's input becomes on this host: local paths in its file fields, and their folder. */
export interface LocalInputs {
  input: Record<string, unknown>;
  /** Deletes the downloaded files. */
  cleanup: () => Promise<void>;
}

/**
 * Downloads the input files of the lease `ref` into `root/<job>-<epoch>/` and answers its input
 * with each file field holding the local path. A lease without files answers its input as is.
 *
 * @example
 * const local = await fetchInputs(target, lease, lease.input, lease.files, "/var/cache/floodgate/inputs");
 * try { await runner.run({ ...job, input: local.input }); } finally { await local.cleanup(); }
 */
export async function fetchInputs(
  t: UploadTarget,
  ref: { job_id: string; epoch: number },
  input: Record<string, unknown>,
  files: InputFiles | undefined,
  root: string,
  signal?: AbortSignal,
): Promise<LocalInputs> {
  if (!files || Object.keys(files).length === 0) return { input, cleanup: async () => undefined };
  const dir = resolve(root, `${ref.job_id}-${ref.epoch}`);
  const cleanup = (): Promise<void> => rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const local: Record<string, unknown> = { ...input };
  try {
    for (const [field, f] of Object.entries(files)) {
      // Field names come from the model's schema; the local name is the file id's, never theirs.
      const path = join(dir, `${f.id}${extensionOf(f.content_type)}`);
      const url = `${t.baseUrl}/v1/agent/inputs/${encodeURIComponent(ref.job_id)}/${ref.epoch}/${encodeURIComponent(field)}`;
      let res: Response;
      try {
        res = await fetch(url, {
          headers: { authorization: `Bearer ${t.token}`, [AGENT_ID_HEADER]: t.agentId },
          ...(signal ? { signal } : {}),
        });
      } catch (err) {
        throw new InputError(`input ${field}: the download failed: ${String(err)}`);
      }
      if (!res.ok || !res.body) {
        const body = (await res.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null;
        const code = body?.error?.code ?? `http ${res.status}`;
        throw new InputError(
          `input ${field}: the edge answered ${res.status} ${code}: ${body?.error?.message ?? ""}`.trim(),
          code === "stale_lease",
        );
      }
      const hash = createHash("sha256");
      let size = 0;
      const count = new Transform({
        transform(chunk: Buffer, _enc, done) {
          size += chunk.length;
          // Never more than the lease says: a longer body is refused before it fills the disk.
          if (size > f.size)
            return done(new InputError(`input ${field}: more than the ${f.size} bytes the lease names`));
          hash.update(chunk);
          done(null, chunk);
        },
      });
      try {
        await pipeline(
          Readable.fromWeb(res.body as import("node:stream/web").ReadableStream),
          count,
          createWriteStream(path),
          signal ? { signal } : {},
        );
      } catch (err) {
        throw err instanceof InputError ? err : new InputError(`input ${field}: the download failed: ${String(err)}`);
      }
      const sha256 = hash.digest("hex");
      if (size !== f.size || sha256 !== f.sha256) {
        throw new InputError(
          `input ${field}: got ${size} bytes hashing to ${sha256}; the lease names ${f.size} bytes hashing to ${f.sha256}`,
        );
      }
      local[field] = path;
    }
  } catch (err) {
    await cleanup();
    throw err;
  }
  return { input: local, cleanup };
}
