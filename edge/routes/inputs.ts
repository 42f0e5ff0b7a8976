/**
 * Input files: an account uploads an image or a video its jobs name (`POST /v1/files`, then
 * its parts, then complete), reads, lists and deletes them. The records live in the account's
 * actor (mesh/account/files.ts), the bytes in R2 under `inputs/<account>/<file id>`, written
 * as one multipart upload through the edge (the part rules are the outputs', edge/multipart.ts).
 * An upload is resumable: the actor records each stored part, `GET /v1/files/{id}/parts` says
 * which, and a client that lost its connection sends the rest. Another account's file id is 404
 * on every route.
 *
 * Also what a submit does with files: {@link inputFilesOf} checks, in one account call for the
 * whole submit, that every file field names a live, complete file of the account, and answers
 * the refs the job records (its lease carries them to the agent). A submit naming no file makes
 * no call. And the agent's download: `GET /v1/agent/inputs/{job}/{epoch}/{field}`, streamed from
 * R2 once the job's shard says the agent holds that lease.
 */
import { z } from "zod";
import { fail, FloodgateError, type Failure } from "../../shared/errors.ts";
import {
  DEFAULT_INPUT_FILE_MAX_BYTES,
  DEFAULT_INPUT_FILE_RETENTION_S,
  fileFields,
  FileComplete,
  FileCreate,
  FileList,
  FileListQuery,
  FileParts,
  FileView,
  INPUT_CONTENT_TYPES,
  inputKey,
  isFileId,
  type InputFiles,
} from "../../shared/files.ts";
import { newId, schedulerName } from "../../shared/ids.ts";
import { DEFAULT_PART_BYTES, MAX_UPLOAD_PARTS, mediaType, partCount, partLength } from "../../shared/outputs.ts";
import type { ModelConfig } from "../../shared/api.ts";
import { actor, type AccountActor, type SchedulerActor } from "../../mesh/index.ts";
import { raise } from "../errors.ts";
import { partNumber, readPart, storage, storedSha256 } from "../multipart.ts";
import { apiRoute, firstValues, json, jsonBody, routesApp } from "../openapi.ts";
import { jobRoute } from "../registry-cache.ts";
import { readJson } from "../validate.ts";

/** The largest input file this edge takes (`INPUT_FILE_MAX_BYTES`, bytes). */
export function maxInputBytes(env: Env): number {
  const n = Number(env.INPUT_FILE_MAX_BYTES);
  return Number.isSafeInteger(n) && n > 0 ? n : DEFAULT_INPUT_FILE_MAX_BYTES;
}

/** How long an input file is kept (`INPUT_FILE_RETENTION_S`, ms). */
function retentionMs(env: Env): number {
  const s = Number(env.INPUT_FILE_RETENTION_S);
  return (Number.isSafeInteger(s) && s > 0 ? s : DEFAULT_INPUT_FILE_RETENTION_S) * 1000;
}

function account(env: Env, id: string) {
  return actor<AccountActor>(env.ACCOUNT, id);
}

/**
 * The input files a job names, by field: `undefined` when its model marks no field as a file or
 * the input names none (no call is made), else the refs of the account's live, complete files
 * (one account call for every job of the submit), or the failure of the first that is not.
 */
export async function inputFilesOf(
  env: Env,
  accountId: string,
  model: ModelConfig,
  inputs: readonly Record<string, unknown>[],
  at: (i: number) => string,
): Promise<({ files: InputFiles } | undefined | Failure)[]> {
  const fields = fileFields(model.input_schema);
  if (fields.length === 0) return inputs.map(() => undefined);
  const named = inputs.map((input, i): { ids: Record<string, string> } | Failure => {
    const ids: Record<string, string> = {};
    for (const f of fields) {
      const v = input[f];
      if (v === undefined) continue;
      if (!isFileId(v)) return fail("invalid_input", `${at(i)}input.${f}: a file id (file_…) from POST /v1/files`);
      ids[f] = v;
    }
    return { ids };
  });
  const all = named.flatMap((n) => ("ids" in n ? Object.values(n.ids) : []));
  if (all.length === 0) return named.map((n) => ("ids" in n ? undefined : n));
  const refs = await account(env, accountId).inputFiles(all);
  return named.map((n, i) => {
    if (!("ids" in n)) return n;
    const files: InputFiles = {};
    for (const [f, id] of Object.entries(n.ids)) {
      const ref = refs[id];
      if (!ref || "ok" in ref) {
        return fail(ref?.code ?? "file_not_found", `${at(i)}input.${f}: ${ref?.message ?? `no file ${id}`}`);
      }
      files[f] = ref;
    }
    return Object.keys(files).length > 0 ? { files } : undefined;
  });
}

const FileIdParam = z.object({ id: z.string() });

const createFile = apiRoute("user", {
  method: "post",
  path: "/v1/files",
  summary:
    "Start uploading an input image or video: answers its file id, the part size and the number of parts to send with PUT /v1/files/{id}/parts/{n}",
  request: { body: jsonBody(FileCreate) },
  responses: {
    201: json("The file, uploading", FileView),
    413: { description: "Over the edge's input file size cap (payload_too_large)" },
    415: { description: "A content type inputs may not have (unsupported_media_type)" },
  },
});

const putPart = apiRoute("user", {
  method: "put",
  path: "/v1/files/{id}/parts/{n}",
  summary:
    "Upload part n of a file (raw bytes; every part but the last exactly part_bytes long, the last the rest of the size). Sending a part again replaces it",
  request: {
    params: z.object({ id: z.string(), n: z.string() }),
    body: {
      required: true,
      content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } },
    },
  },
  responses: {
    200: json("Stored", z.object({ part_number: z.number(), size: z.number() })),
    400: { description: "A part shorter than its place implies (invalid_upload), or a bad part number" },
    404: { description: "No such file (file_not_found)" },
    409: { description: "The file is already complete (conflict)" },
    413: { description: "A part past the file's size (payload_too_large)" },
  },
});

const listParts = apiRoute("user", {
  method: "get",
  path: "/v1/files/{id}/parts",
  summary: "The parts of a file's upload the edge has stored: a client resuming an upload sends the others",
  request: { params: FileIdParam },
  responses: { 200: json("The stored parts", FileParts) },
});

const completeFile = apiRoute("user", {
  method: "post",
  path: "/v1/files/{id}/complete",
  summary:
    "Complete a file's upload once every part is stored; the edge hashes the bytes (and checks them against sha256 when given). Jobs may name it from then on",
  request: { params: FileIdParam, body: jsonBody(FileComplete) },
  responses: {
    200: json("The file, ready", FileView),
    400: {
      description:
        "Parts missing (the file stays uploading), or bytes that do not hash to the sha256 given (invalid_upload; the file is deleted)",
    },
    404: { description: "No such file (file_not_found)" },
    409: { description: "The file is already complete (conflict)" },
  },
});

const readFile = apiRoute("user", {
  method: "get",
  path: "/v1/files/{id}",
  summary: "An input file's record",
  request: { params: FileIdParam },
  responses: { 200: json("The file", FileView), 404: { description: "No such file (file_not_found)" } },
});

const listFiles = apiRoute("user", {
  method: "get",
  path: "/v1/files",
  summary: "The account's input files, newest first",
  request: { query: firstValues(FileListQuery) },
  responses: { 200: json("A page of files", FileList) },
});

const deleteFile = apiRoute("user", {
  method: "delete",
  path: "/v1/files/{id}",
  summary: "Delete an input file and its bytes (an unfinished upload is aborted)",
  request: { params: FileIdParam },
  responses: { 204: { description: "Deleted" }, 404: { description: "No such file (file_not_found)" } },
});

const readInput = apiRoute("agent", {
  method: "get",
  path: "/v1/agent/inputs/{job_id}/{epoch}/{field}",
  summary:
    "An input file of a job the agent holds at this epoch, by the input field naming it: the bytes, to be checked against the lease's files entry",
  request: { params: z.object({ job_id: z.string(), epoch: z.string(), field: z.string() }) },
  responses: {
    200: {
      description: "The file's bytes",
      content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } },
    },
    404: { description: "The lease names no file in that field, or the file is gone (file_not_found)" },
    409: { description: "Stale lease: abandon the job" },
  },
});

const uploadGone = (): FloodgateError =>
  new FloodgateError("file_not_found", "the file's upload is gone (completed, aborted or expired)");

export const inputRoutes = routesApp()
  .openapi(createFile, async (c) => {
    const accountId = c.get("principal").account_id;
    const body = await readJson(c, FileCreate);
    const type = mediaType(body.content_type);
    if (!INPUT_CONTENT_TYPES.includes(type)) {
      throw new FloodgateError(
        "unsupported_media_type",
        `content type ${type} is not one an input file may have (${INPUT_CONTENT_TYPES.join(", ")})`,
      );
    }
    const cap = maxInputBytes(c.env);
    if (body.size > cap) {
      throw new FloodgateError("payload_too_large", `${body.size} bytes is over the input file cap of ${cap} bytes`);
    }
    const partBytes = body.part_bytes ?? DEFAULT_PART_BYTES;
    if (partCount(body.size, partBytes) > MAX_UPLOAD_PARTS) {
      throw new FloodgateError(
        "payload_too_large",
        `${body.size} bytes need more than ${MAX_UPLOAD_PARTS} parts; send larger parts`,
      );
    }
    const id = newId("file");
    const key = inputKey(accountId, id);
    const upload = await c.env.OUTPUTS.createMultipartUpload(key, { httpMetadata: { contentType: type } });
    const out = await account(c.env, accountId).createFile(
      id,
      { name: body.name, content_type: type, size: body.size, part_bytes: partBytes },
      upload.uploadId,
      retentionMs(c.env),
    );
    if (!out.ok) {
      await upload.abort().catch(() => undefined);
      raise(out);
    }
    return c.json(out.file, 201);
  })
  .openapi(putPart, async (c) => {
    const { id, n: text } = c.req.valid("param");
    const n = partNumber(text);
    const accountId = c.get("principal").account_id;
    const target = await account(c.env, accountId).fileUpload(id);
    if (!target.ok) raise(target);
    const bytes = await readPart(c, target.size, target.part_bytes, n);
    const upload = c.env.OUTPUTS.resumeMultipartUpload(target.key, target.r2_upload);
    const part = await storage(() => upload.uploadPart(n, bytes), uploadGone);
    const recorded = await account(c.env, accountId).recordPart(id, n, part.etag, bytes.byteLength);
    if (!recorded.ok) raise(recorded);
    return c.json({ part_number: n, size: bytes.byteLength }, 200);
  })
  .openapi(listParts, async (c) => {
    const out = await account(c.env, c.get("principal").account_id).fileParts(c.req.valid("param").id);
    if (!out.ok) raise(out);
    return c.json(out.parts, 200);
  })
  .openapi(completeFile, async (c) => {
    const { id } = c.req.valid("param");
    const accountId = c.get("principal").account_id;
    const body = await readJson(c, FileComplete);
    const owner = account(c.env, accountId);
    const target = await owner.fileUpload(id);
    if (!target.ok) raise(target);
    const count = partCount(target.size, target.part_bytes);
    const have = new Map(target.stored.map((p) => [p.part_number, p]));
    const missing: number[] = [];
    for (let n = 1; n <= count; n++) {
      if (have.get(n)?.size !== partLength(target.size, target.part_bytes, n)) missing.push(n);
    }
    if (missing.length > 0) {
      throw new FloodgateError(
        "invalid_upload",
        `${missing.length} of ${count} parts are not stored (${missing.slice(0, 10).join(", ")}${missing.length > 10 ? ", …" : ""}); send them, then complete`,
      );
    }
    const bucket = c.env.OUTPUTS;
    const upload = bucket.resumeMultipartUpload(target.key, target.r2_upload);
    const parts = target.stored
      .filter((p) => p.part_number <= count)
      .map((p) => ({ partNumber: p.part_number, etag: p.etag }));
    const object = await storage(() => upload.complete(parts), uploadGone);
    const sha256 = object.size === target.size ? await storedSha256(bucket, target.key) : undefined;
    if (sha256 === undefined || (body.sha256 !== undefined && sha256 !== body.sha256)) {
      // The upload is spent once R2 completed it: the file goes, and is uploaded again.
      await owner.deleteFile(id);
      throw new FloodgateError(
        "invalid_upload",
        sha256 === undefined
          ? `the stored file is ${object.size} bytes, not the ${target.size} announced; upload it again`
          : `the stored bytes hash to ${sha256}, not the sha256 given (${body.sha256}); upload it again`,
      );
    }
    const done = await owner.completeFile(id, sha256);
    if (!done.ok) raise(done);
    return c.json(done.file, 200);
  })
  .openapi(readFile, async (c) => {
    const out = await account(c.env, c.get("principal").account_id).file(c.req.valid("param").id);
    if (!out.ok) raise(out);
    return c.json(out.file, 200);
  })
  .openapi(listFiles, async (c) => {
    const q = c.req.valid("query");
    const page = await account(c.env, c.get("principal").account_id).files(q.limit, q.cursor);
    return c.json(page, 200);
  })
  .openapi(deleteFile, async (c) => {
    const out = await account(c.env, c.get("principal").account_id).deleteFile(c.req.valid("param").id);
    if (!out.ok) raise(out);
    return c.body(null, 204);
  })
  .openapi(readInput, async (c) => {
    const { job_id: jobId, epoch: epochText, field } = c.req.valid("param");
    const epoch = Number(epochText);
    const stale = (): FloodgateError =>
      new FloodgateError(
        "stale_lease",
        `the lease of ${jobId} at epoch ${epochText} is not this agent's; abandon the job`,
      );
    if (!/^\d{1,9}$/.test(epochText) || epoch < 1) throw stale();
    // A job id naming no model or shard of the registry asks (and creates) no scheduler.
    const route = await jobRoute(c.env, jobId).catch((err: unknown) => {
      if (err instanceof FloodgateError) return undefined;
      throw err;
    });
    if (!route) throw stale();
    const shard = actor<SchedulerActor>(c.env.SCHEDULER, schedulerName(route));
    const found = await shard.inputFile({ job_id: jobId, epoch }, c.get("agent").agentId, field);
    if (!found.ok) raise(found);
    const object = await c.env.OUTPUTS.get(inputKey(found.account_id, found.file.id));
    if (!object) raise(fail("file_not_found", `input ${field}: file ${found.file.id} is gone (deleted or expired)`));
    return new Response(object.body, {
      headers: {
        "content-type": "application/octet-stream",
        "content-length": String(object.size),
        "cache-control": "no-store",
      },
    });
  });
