/**
 * Output uploads: an agent writes each output of a job it holds to R2 through the edge, as a
 * multipart upload under `outputs/<job>/<epoch>/<name>`. Authorised by the agent token
 * (agentAuth) and by the lease: only the agent holding the job's current epoch may start, add
 * parts or complete, and each epoch writes under its own keys, so a zombie can never overwrite
 * its successor's output.
 *
 * The edge trusts nothing the agent says about its bytes. The start names the output's size
 * and content type, checked against the model's output policy (shared/outputs.ts) before a
 * byte is stored; every part must have the exact length that size implies; on complete the edge
 * reads the object back through a SHA-256 digest and refuses it unless size and digest match.
 * Only then does it answer the output record, with a receipt (an HMAC over key, size, sha256
 * and content type) that a success in `job.results` must carry. Each started upload leaves a marker under
 * `uploads/<job>/<epoch>/` so that the scheduler can abort what an attempt left unfinished
 * (mesh/job-files.ts).
 */
import { z } from "zod";
import { FloodgateError } from "../../shared/errors.ts";
import { parseJobId, schedulerName } from "../../shared/ids.ts";
import {
  DEFAULT_PART_BYTES,
  MAX_PART_BYTES,
  MAX_UPLOAD_PARTS as MAX_PARTS,
  MIN_PART_BYTES,
  mediaType,
  partCount,
  outputKey,
  outputPolicy,
  uploadMarkerKey,
  uploadsPrefix,
  type OutputPolicy,
  type UploadMarker,
} from "../../shared/outputs.ts";
import { outputReceipt, sign, verify } from "../../shared/signing.ts";
import { MAX_OUTPUTS, OutputRecord } from "../../shared/wire.ts";
import { actor, type SchedulerActor } from "../../mesh/index.ts";
import { fileSecret } from "../files.ts";
import { partNumber, readPart, storage, storedSha256 } from "../multipart.ts";
import { apiRoute, json, jsonBody, routesApp } from "../openapi.ts";
import { invalidateRegistry, jobRoute, registry } from "../registry-cache.ts";
import { readJson } from "../validate.ts";

/**
 * Checks that `agentId` holds the lease of `jobId` at `epoch`. `starting`: an upload starts
 * under it, which its shard notes so that the attempt's end cleans up what it leaves.
 */
async function requireLease(env: Env, agentId: string, jobId: string, epoch: number, starting = false): Promise<void> {
  // A job id naming no model or shard of the registry asks (and creates) no scheduler.
  const route = await jobRoute(env, jobId).catch((err: unknown) => {
    if (err instanceof FloodgateError) return undefined;
    throw err;
  });
  const shard = route ? actor<SchedulerActor>(env.SCHEDULER, schedulerName(route)) : undefined;
  const held = starting
    ? await shard?.uploadStarting({ job_id: jobId, epoch }, agentId)
    : await shard?.leaseOf(jobId).then((l) => l?.status === "running" && l.epoch === epoch && l.agent_id === agentId);
  if (!held) {
    throw new FloodgateError(
      "stale_lease",
      `the lease of ${jobId} at epoch ${epoch} is not this agent's; abandon the job`,
    );
  }
}

/** The output policy of the model a job id names (its number is in the id). */
async function policyOf(env: Env, jobId: string): Promise<OutputPolicy> {
  const number = parseJobId(jobId)?.modelNumber ?? -1;
  let model = (await registry(env)).byNumber.get(number);
  if (!model) {
    // A model registered since this isolate's snapshot.
    invalidateRegistry();
    model = (await registry(env)).byNumber.get(number);
  }
  return outputPolicy(model?.outputs);
}

/** What the upload id an agent is given carries, signed: R2's id and the sizes of the start. */
interface UploadIdFields {
  r2Id: string;
  size: number;
  partBytes: number;
}

function uploadIdMessage(key: string, f: UploadIdFields): string {
  return `upload\n${key}\n${f.r2Id}\n${f.size}\n${f.partBytes}`;
}

/**
 * The upload id an agent is given: R2's, with the announced size and part size, signed for its
 * key, so a part or a complete naming an upload this edge did not start for that key is refused
 * before storage, and every part is checked against the size announced at the start.
 */
async function publicUploadId(env: Env, key: string, f: UploadIdFields): Promise<string> {
  return `${f.r2Id}.${f.size}.${f.partBytes}.${await sign(fileSecret(env), uploadIdMessage(key, f))}`;
}

const uploadNotFound = (): FloodgateError =>
  new FloodgateError("upload_not_found", "no such upload for this key; start a new one with POST /v1/agent/uploads");

/** The fields of the upload id the agent was given; 404 unless it was made for `key`. */
async function readUploadId(env: Env, key: string, given: string): Promise<UploadIdFields> {
  const m = /^(.+)\.(\d{1,16})\.(\d{1,9})\.([A-Za-z0-9_-]{43})$/.exec(given);
  if (!m) throw uploadNotFound();
  const f: UploadIdFields = { r2Id: m[1] as string, size: Number(m[2]), partBytes: Number(m[3]) };
  if (!(await verify(fileSecret(env), uploadIdMessage(key, f), m[4] as string))) throw uploadNotFound();
  return f;
}

const KEY_RE = /^outputs\/(job_[0-9a-z]{30})\/(\d{1,9})\/([a-z0-9][a-z0-9._-]{0,63})$/;

function parseKey(key: string): { jobId: string; epoch: number; name: string } {
  const m = KEY_RE.exec(key);
  if (!m) throw new FloodgateError("bad_request", "not an output key");
  return { jobId: m[1] as string, epoch: Number(m[2]), name: m[3] as string };
}

/** Undoes a started upload: its marker and the multipart upload (whatever is left of it). */
async function dropUpload(bucket: R2Bucket, key: string, marker: string, r2Id: string): Promise<void> {
  await bucket
    .resumeMultipartUpload(key, r2Id)
    .abort()
    .catch(() => undefined);
  await bucket.delete(marker);
}

const UploadStart = z.strictObject({
  job_id: z.string().regex(/^job_[0-9a-z]{30}$/),
  epoch: z.number().int().min(1),
  name: OutputRecord.shape.name,
  content_type: OutputRecord.shape.content_type,
  /** The output's size (bytes): checked against the model's caps before anything is stored. */
  size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  /** The length of every part but the last (bytes); 8 MiB when absent. */
  part_bytes: z.number().int().min(MIN_PART_BYTES).max(MAX_PART_BYTES).optional(),
});
const UploadStarted = z.object({
  upload_id: z.string(),
  key: z.string(),
  part_bytes: z.number(),
  min_part_bytes: z.number(),
  max_part_bytes: z.number(),
});
const UploadComplete = z.strictObject({
  key: z.string().max(512),
  parts: z
    .array(z.strictObject({ part_number: z.number().int().min(1).max(MAX_PARTS), etag: z.string().min(1).max(256) }))
    .min(1)
    .max(MAX_PARTS),
  size: z.number().int().min(0),
  sha256: OutputRecord.shape.sha256,
});

const startUpload = apiRoute("agent", {
  method: "post",
  path: "/v1/agent/uploads",
  summary:
    "Start a multipart output upload for a job the agent holds at this epoch, announcing its size and content type (checked against the model's output policy)",
  request: { body: jsonBody(UploadStart) },
  responses: {
    201: json("Started", UploadStarted),
    409: { description: "Stale lease, or this name already uploaded in this attempt" },
    413: { description: "Over the model's max_bytes or max_job_bytes, or past 32 outputs (payload_too_large)" },
    415: { description: "A content type the model's outputs may not have (unsupported_media_type)" },
  },
});

const putPart = apiRoute("agent", {
  method: "put",
  path: "/v1/agent/uploads/{upload_id}/parts/{n}",
  summary:
    "Upload part n (raw bytes; every part but the last exactly part_bytes long, the last the rest of the announced size; ?key= from the start)",
  request: {
    params: z.object({ upload_id: z.string(), n: z.string() }),
    body: {
      required: true,
      content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } },
    },
  },
  responses: {
    200: json("The part's etag", z.object({ part_number: z.number(), etag: z.string() })),
    400: { description: "A part shorter than the announced size implies (invalid_upload)" },
    404: { description: "No such upload for this key (upload_not_found)" },
    409: { description: "Stale lease" },
    413: { description: "A part past the announced size (payload_too_large)" },
  },
});

const completeUpload = apiRoute("agent", {
  method: "post",
  path: "/v1/agent/uploads/{upload_id}/complete",
  summary:
    "Complete an upload; the edge hashes what it stored and answers the output record, with its receipt, for job.results",
  request: { params: z.object({ upload_id: z.string() }), body: jsonBody(UploadComplete) },
  responses: {
    200: json("The output record", OutputRecord),
    400: {
      description:
        "Parts that do not match what was uploaded, or a size or sha256 other than what was stored (invalid_upload; the object is deleted)",
    },
    404: { description: "No such upload for this key (upload_not_found)" },
    409: { description: "Stale lease" },
  },
});

export const uploadRoutes = routesApp()
  .openapi(startUpload, async (c) => {
    const body = await readJson(c, UploadStart);
    const agentId = c.get("agent").agentId;
    await requireLease(c.env, agentId, body.job_id, body.epoch, true);
    const policy = await policyOf(c.env, body.job_id);
    const type = mediaType(body.content_type);
    if (!policy.content_types.includes(type)) {
      throw new FloodgateError(
        "unsupported_media_type",
        `content type ${type} is not one this model's outputs may have (${policy.content_types.join(", ")})`,
      );
    }
    if (body.size > policy.max_bytes) {
      throw new FloodgateError(
        "payload_too_large",
        `${body.size} bytes is over this model's max_bytes of ${policy.max_bytes} an output`,
      );
    }
    const partBytes = body.part_bytes ?? DEFAULT_PART_BYTES;
    if (partCount(body.size, partBytes) > MAX_PARTS) {
      throw new FloodgateError(
        "payload_too_large",
        `${body.size} bytes need more than ${MAX_PARTS} parts; send larger parts`,
      );
    }
    const bucket = c.env.OUTPUTS;
    const key = outputKey(body.job_id, body.epoch, body.name);
    const markerKey = uploadMarkerKey(body.job_id, body.epoch, body.name);
    const upload = await bucket.createMultipartUpload(key, { httpMetadata: { contentType: type } });
    const marker: UploadMarker = { upload_id: upload.uploadId, key, size: String(body.size) };
    // One upload per name and attempt: a recorded output is never replaced under its receipt.
    const claimed = await bucket.put(markerKey, null, {
      customMetadata: { ...marker },
      onlyIf: new Headers({ "if-none-match": "*" }),
    });
    if (!claimed) {
      await upload.abort().catch(() => undefined);
      throw new FloodgateError("conflict", `an upload of ${body.name} was already started in this attempt`);
    }
    try {
      // The attempt's caps, counted with this upload in: concurrent starts can only refuse
      // each other, never pass the caps together.
      let count = 0;
      let total = 0;
      for (const o of (
        await bucket.list({ prefix: uploadsPrefix(body.job_id, body.epoch), include: ["customMetadata"] })
      ).objects) {
        count += 1;
        total += Number((o.customMetadata as Partial<UploadMarker> | undefined)?.size ?? 0);
      }
      if (count > MAX_OUTPUTS) {
        throw new FloodgateError("payload_too_large", `an attempt has at most ${MAX_OUTPUTS} outputs`);
      }
      if (total > policy.max_job_bytes) {
        throw new FloodgateError(
          "payload_too_large",
          `this attempt's outputs would total ${total} bytes, over this model's max_job_bytes of ${policy.max_job_bytes}`,
        );
      }
      // Fenced again: an attempt that ended while this upload started may have aborted its
      // uploads before this marker existed.
      await requireLease(c.env, agentId, body.job_id, body.epoch);
    } catch (err) {
      await dropUpload(bucket, key, markerKey, upload.uploadId);
      throw err;
    }
    return c.json(
      {
        upload_id: await publicUploadId(c.env, key, { r2Id: upload.uploadId, size: body.size, partBytes }),
        key,
        part_bytes: partBytes,
        min_part_bytes: MIN_PART_BYTES,
        max_part_bytes: MAX_PART_BYTES,
      },
      201,
    );
  })
  .openapi(putPart, async (c) => {
    const key = c.req.query("key") ?? "";
    const { jobId, epoch } = parseKey(key);
    await requireLease(c.env, c.get("agent").agentId, jobId, epoch);
    const { upload_id: uploadId, n: partText } = c.req.valid("param");
    const n = partNumber(partText);
    const id = await readUploadId(c.env, key, uploadId);
    const bytes = await readPart(c, id.size, id.partBytes, n);
    const upload = c.env.OUTPUTS.resumeMultipartUpload(key, id.r2Id);
    const part = await storage(() => upload.uploadPart(n, bytes), uploadNotFound);
    return c.json({ part_number: part.partNumber, etag: part.etag }, 200);
  })
  .openapi(completeUpload, async (c) => {
    const body = await readJson(c, UploadComplete);
    const { jobId, epoch, name } = parseKey(body.key);
    await requireLease(c.env, c.get("agent").agentId, jobId, epoch);
    const id = await readUploadId(c.env, body.key, c.req.valid("param").upload_id);
    const bucket = c.env.OUTPUTS;
    const markerKey = uploadMarkerKey(jobId, epoch, name);
    // A refused upload is undone whole (object, upload and marker), so the name may be sent again.
    const refuse = async (message: string): Promise<never> => {
      await bucket.delete(body.key);
      await dropUpload(bucket, body.key, markerKey, id.r2Id);
      throw new FloodgateError("invalid_upload", message);
    };
    if (body.size !== id.size)
      await refuse(`the upload was started as ${id.size} bytes, not the ${body.size} announced`);
    const upload = bucket.resumeMultipartUpload(body.key, id.r2Id);
    const object = await storage(
      () => upload.complete(body.parts.map((p) => ({ partNumber: p.part_number, etag: p.etag }))),
      uploadNotFound,
    );
    if (object.size !== id.size) await refuse(`the upload is ${object.size} bytes, not the ${id.size} announced`);
    const sha256 = await storedSha256(bucket, body.key);
    if (sha256 !== body.sha256) {
      await refuse(`the stored bytes hash to ${sha256 ?? "nothing"}, not the sha256 announced (${body.sha256})`);
    }
    const marker: UploadMarker = { upload_id: id.r2Id, key: body.key, size: String(id.size), done: "1" };
    await bucket.put(markerKey, null, { customMetadata: { ...marker } });
    const fields = {
      key: body.key,
      content_type: object.httpMetadata?.contentType ?? "application/octet-stream",
      size: object.size,
      sha256: body.sha256,
    };
    const record: OutputRecord = { name, ...fields, receipt: await outputReceipt(fileSecret(c.env), fields) };
    return c.json(record, 200);
  });
