/**
 * Output uploads: through the edge to R2 as a multipart upload, authorised by the agent token
 * and the lease epoch. The start announces the output's size (the edge checks it against the
 * model's caps before anything is stored); parts are sent as they are cut from the source, each
 * exactly the part size the edge answered but the last, so an output of hundreds of MB never
 * has to be in one request. The edge hashes what it stored and answers the record, with its
 * receipt, that a success in `job.results` carries.
 */
import { createHash } from "node:crypto";
import { DEFAULT_PART_BYTES } from "../shared/outputs.ts";
import { AGENT_ID_HEADER, OutputRecord } from "../shared/wire.ts";

export class UploadError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "UploadError";
    this.status = status;
    this.code = code;
  }
  /** The edge says the lease is no longer this agent's: abandon, do not retry. */
  get stale(): boolean {
    return this.code === "stale_lease";
  }
}

export interface UploadTarget {
  baseUrl: string;
  token: string;
  agentId: string;
}

async function call(t: UploadTarget, method: string, path: string, body?: BodyInit, json = true): Promise<unknown> {
  const headers: Record<string, string> = { authorization: `Bearer ${t.token}`, [AGENT_ID_HEADER]: t.agentId };
  if (body !== undefined) headers["content-type"] = json ? "application/json" : "application/octet-stream";
  const r = await fetch(t.baseUrl + path, { method, headers, body });
  const text = await r.text();
  const parsed = text ? (JSON.parse(text) as unknown) : null;
  if (!r.ok) {
    const err = (parsed as { error?: { code?: string; message?: string } } | null)?.error;
    throw new UploadError(
      r.status,
      err?.code ?? "http_error",
      err?.message ?? `${method} ${path} answered ${r.status}`,
    );
  }
  return parsed;
}

/** Chunks of `size` bytes from a source of byte arrays. */
async function* parts(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  size: number,
): AsyncGenerator<Uint8Array<ArrayBuffer>> {
  let buf: Uint8Array<ArrayBuffer> = new Uint8Array(0);
  for await (const chunk of source) {
    const next = new Uint8Array(buf.length + chunk.length);
    next.set(buf);
    next.set(chunk, buf.length);
    buf = next;
    while (buf.length >= size) {
      yield buf.subarray(0, size);
      buf = buf.slice(size);
    }
  }
  if (buf.length > 0) yield buf;
}

/**
 * Uploads one output of a job the agent holds at `epoch` and answers its record for
 * `job.results`. `size` is announced at the start; the sha256 is computed as the bytes go.
 */
export async function uploadOutput(
  t: UploadTarget,
  lease: { job_id: string; epoch: number },
  output: {
    name: string;
    content_type: string;
    size: number;
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
  },
  partBytes = DEFAULT_PART_BYTES,
): Promise<OutputRecord> {
  const started = (await call(
    t,
    "POST",
    "/v1/agent/uploads",
    JSON.stringify({
      job_id: lease.job_id,
      epoch: lease.epoch,
      name: output.name,
      content_type: output.content_type,
      size: output.size,
      part_bytes: partBytes,
    }),
  )) as { upload_id: string; key: string; part_bytes: number };
  const hash = createHash("sha256");
  const done: { part_number: number; etag: string }[] = [];
  const put = async (n: number, part: Uint8Array<ArrayBuffer>): Promise<void> => {
    const path = `/v1/agent/uploads/${encodeURIComponent(started.upload_id)}/parts/${n}?key=${encodeURIComponent(started.key)}`;
    const res = (await call(t, "PUT", path, part, false)) as { part_number: number; etag: string };
    done.push({ part_number: res.part_number, etag: res.etag });
  };
  let size = 0;
  let n = 0;
  for await (const part of parts(output.source, started.part_bytes)) {
    n += 1;
    hash.update(part);
    size += part.length;
    await put(n, part);
  }
  // An empty output is still one (empty) part.
  if (n === 0) await put(1, new Uint8Array(0));
  const record = await call(
    t,
    "POST",
    `/v1/agent/uploads/${encodeURIComponent(started.upload_id)}/complete`,
    JSON.stringify({ key: started.key, parts: done, size, sha256: hash.digest("hex") }),
  );
  const parsed = OutputRecord.safeParse(record);
  if (!parsed.success) throw new UploadError(502, "bad_answer", "the edge answered an upload with an unexpected body");
  return parsed.data;
}
