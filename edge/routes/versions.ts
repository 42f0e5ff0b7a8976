/**
 * The model repository's routes. Model authors (the admin key) push a version in three steps:
 * the manifest and file list (`POST …/versions`, answered with the pieces the store lacks), each
 * missing piece (`PUT /v1/admin/pieces/{sha256}`), then the commit that makes it ready. Agents
 * (their token naming the model) read a ready version's record and fetch its pieces.
 *
 * A version's record lives in its model's VersionsActor (mesh/versions-actor.ts); pieces live in
 * R2's WEIGHTS bucket under `pieces/<sha256>`, content-addressed: a piece shared by versions or
 * models is stored once, and the edge stores a piece while hashing it, keeping nothing whose
 * SHA-256 is not its name.
 */
import { z } from "zod";
import { ModelName } from "../../shared/api.ts";
import { FloodgateError } from "../../shared/errors.ts";
import { sha256Hex } from "../../shared/keys.ts";
import {
  PIECE_BYTES,
  PieceStored,
  Sha256,
  VersionName,
  VersionPush,
  VersionPurge,
  VersionPushAnswer,
  VersionRecord,
  VersionSummary,
} from "../../shared/repository.ts";
import { actor, pieceKey, VERSION_INDEX, type VersionsActor } from "../../mesh/index.ts";
import { raise } from "../errors.ts";
import { apiRoute, firstValues, json, jsonBody, refuse, routesApp } from "../openapi.ts";
import { registryStub } from "../registry-cache.ts";
import { readJson } from "../validate.ts";

/** Paths whose body is one piece: edge/app.ts gives them a body limit of {@link PIECE_BYTES}. */
export const PIECE_PATH = /^\/v1\/admin\/pieces\/[^/]+$/;

function versions(env: Env, model: string) {
  return actor<VersionsActor>(env.VERSIONS, model);
}

/** Who pushed: `admin:` and the first 8 hex digits of the admin key's SHA-256 (never the key). */
async function adminFingerprint(env: Env): Promise<string> {
  return `admin:${(await sha256Hex(env.ADMIN_KEY)).slice(0, 8)}`;
}

const hex = (bytes: ArrayBuffer): string =>
  [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");

/**
 * Stores `length` bytes of `body` at `key` while hashing them (workerd's DigestStream), and
 * answers their SHA-256. The bucket is told the SHA-256 the bytes must have, so bytes that hash
 * to anything else are never stored (R2 refuses the put whole); what the edge hashed names the
 * bytes in the refusal, and is checked again before the piece counts as stored.
 */
async function storeHashed(
  bucket: R2Bucket,
  key: string,
  body: ReadableStream<Uint8Array>,
  length: number,
  sha256: string,
): Promise<string> {
  const digest = new crypto.DigestStream("SHA-256");
  const hashing = digest.getWriter();
  const tee = new TransformStream<Uint8Array, Uint8Array>({
    async transform(chunk, out) {
      await hashing.write(chunk);
      out.enqueue(chunk);
    },
    async flush() {
      await hashing.close();
    },
  });
  // R2 takes a stream of known length only.
  const sized = new FixedLengthStream(length);
  const [put, piped] = await Promise.allSettled([
    bucket.put(key, sized.readable, { sha256, httpMetadata: { contentType: "application/octet-stream" } }),
    body.pipeThrough(tee).pipeTo(sized.writable),
  ]);
  if (piped.status === "rejected") {
    if (put.status === "fulfilled") await bucket.delete(key);
    throw new FloodgateError("invalid_upload", `the body is not the ${length} bytes its Content-Length says`);
  }
  const actual = hex(await digest.digest);
  if (actual !== sha256) {
    if (put.status === "fulfilled") await bucket.delete(key);
    throw new FloodgateError(
      "invalid_upload",
      `the bytes hash to ${actual}, not ${sha256}: a piece is stored under the SHA-256 of its bytes; nothing was kept`,
    );
  }
  if (put.status === "rejected") throw put.reason;
  return actual;
}

const ModelParams = z.object({ model: ModelName });
const VersionParams = z.object({ model: ModelName, version: VersionName });
const VersionList = z.object({ versions: z.array(VersionSummary) });

const pushVersion = apiRoute("admin", {
  method: "post",
  path: "/v1/admin/models/{model}/versions",
  summary:
    "Push a version: its manifest and file list (pieces by sha256); answers the version and the pieces the store still lacks",
  request: { params: ModelParams, body: jsonBody(VersionPush) },
  responses: {
    200: json("The version was pushed before with this digest", VersionPushAnswer),
    201: json("A new version, pending until committed", VersionPushAnswer),
    409: { description: "The model and version exist with another digest (version_conflict)" },
  },
});

const putPiece = apiRoute("admin", {
  method: "put",
  path: "/v1/admin/pieces/{sha256}",
  summary: `Store a piece: its raw bytes (at most ${PIECE_BYTES}, with Content-Length), whose SHA-256 must be the path's`,
  request: {
    params: z.object({ sha256: Sha256 }),
    body: {
      required: true,
      content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } },
    },
  },
  responses: {
    200: json("The store already had it", PieceStored),
    201: json("Stored", PieceStored),
    400: { description: "The bytes' SHA-256 is not the path's, or not Content-Length bytes (invalid_upload)" },
    413: { description: `Over ${PIECE_BYTES} bytes (payload_too_large)` },
  },
});

const commitVersion = apiRoute("admin", {
  method: "post",
  path: "/v1/admin/models/{model}/versions/{version}/commit",
  summary: "Make a version ready once every piece is in the store (a ready version is immutable)",
  request: { params: VersionParams },
  responses: {
    200: json("The version, ready", VersionRecord),
    404: { description: "No such version (version_not_found)" },
    409: { description: "Pieces are not in the store yet (pieces_missing; the message says how many)" },
  },
});

const listVersions = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/models/{model}/versions",
  summary: "A model's versions, newest first, without their file lists",
  request: { params: ModelParams },
  responses: { 200: json("Versions", VersionList) },
});

const listAllVersions = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/versions",
  summary: "Every model's versions, newest first, without their file lists",
  responses: { 200: json("Versions", VersionList) },
});

const readVersion = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/models/{model}/versions/{version}",
  summary: "A version with its file list, pending or ready",
  request: { params: VersionParams },
  responses: {
    200: json("The version", VersionRecord),
    404: { description: "No such version (version_not_found)" },
  },
});

const purgeVersion = apiRoute("admin", {
  method: "post",
  path: "/v1/admin/models/{model}/versions/{version}/purge",
  summary:
    "Purge a version from every agent's cache: agents delete it, with the pieces no other cached version uses, once nothing on their host serves it",
  request: { params: VersionParams },
  responses: {
    200: json("The purge, recorded and told to the model's agents", VersionPurge),
    404: { description: "No such ready version (version_not_found)" },
    409: { description: "The rollout desires the version, as its stable or its canary (conflict)" },
  },
});

const agentVersion = apiRoute("agent", {
  method: "get",
  path: "/v1/agent/versions/{model}/{version}",
  summary: "A ready version's record, for an agent whose token names the model",
  request: { params: VersionParams },
  responses: {
    200: json("The version", VersionRecord),
    404: { description: "Unknown, not ready, or a model the token does not name (version_not_found)" },
  },
});

const agentPiece = apiRoute("agent", {
  method: "get",
  path: "/v1/agent/pieces/{sha256}",
  summary: "A piece's bytes, when it is one of that ready version's and the token names the model",
  request: {
    params: z.object({ sha256: Sha256 }),
    query: firstValues(z.object({ model: ModelName, version: VersionName })),
  },
  responses: {
    200: {
      description: "The piece's bytes",
      content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } },
    },
    404: { description: "Not a piece of a ready version of a model the token names (not_found)" },
  },
});

/** The token may serve `model`: its `models` claim names it. */
function tokenServes(models: readonly string[], model: string): boolean {
  return models.includes(model);
}

export const versionRoutes = routesApp()
  .openapi(
    pushVersion,
    async (c) => {
      const { model } = c.req.valid("param");
      const push = await readJson(c, VersionPush);
      const out = await versions(c.env, model).push(model, push, await adminFingerprint(c.env));
      if (!out.ok) raise(out);
      const answer: VersionPushAnswer = { version: out.version, missing: out.missing };
      return out.created ? c.json(answer, 201) : c.json(answer, 200);
    },
    refuse("invalid_query"),
  )
  .openapi(
    putPiece,
    async (c) => {
      const { sha256 } = c.req.valid("param");
      const length = Number(c.req.header("content-length") ?? Number.NaN);
      if (!Number.isInteger(length) || length < 0)
        throw new FloodgateError("bad_request", "send a piece with its Content-Length");
      if (length > PIECE_BYTES)
        throw new FloodgateError("payload_too_large", `a piece is at most ${PIECE_BYTES} bytes`);
      const key = pieceKey(sha256);
      const held = await c.env.WEIGHTS.head(key);
      if (held) {
        await c.req.raw.body?.cancel();
        return c.json({ sha256, size: held.size }, 200);
      }
      await storeHashed(c.env.WEIGHTS, key, c.req.raw.body ?? new Blob([]).stream(), length, sha256);
      return c.json({ sha256, size: length }, 201);
    },
    refuse("invalid_query"),
  )
  .openapi(
    commitVersion,
    async (c) => {
      const { model, version } = c.req.valid("param");
      const out = await versions(c.env, model).commit(version);
      if (!out.ok) raise(out);
      return c.json(out.version, 200);
    },
    refuse("version_not_found"),
  )
  .openapi(
    listVersions,
    async (c) => {
      const { model } = c.req.valid("param");
      return c.json({ versions: await versions(c.env, model).list(model) }, 200);
    },
    refuse("invalid_query"),
  )
  .openapi(listAllVersions, async (c) => {
    const models = await versions(c.env, VERSION_INDEX).models();
    const all = (await Promise.all(models.map((m) => versions(c.env, m).list(m)))).flat();
    all.sort((a, b) => b.created_at.localeCompare(a.created_at) || a.model.localeCompare(b.model));
    return c.json({ versions: all }, 200);
  })
  .openapi(
    readVersion,
    async (c) => {
      const { model, version } = c.req.valid("param");
      const record = await versions(c.env, model).version(version);
      if (!record) throw new FloodgateError("version_not_found", `no version ${version} of model ${model}`);
      return c.json(record, 200);
    },
    refuse("version_not_found"),
  )
  .openapi(
    purgeVersion,
    async (c) => {
      const { model, version } = c.req.valid("param");
      const out = await registryStub(c.env).purgeVersion(model, version, await adminFingerprint(c.env));
      if (!out.ok) raise(out);
      return c.json(out.purge, 200);
    },
    refuse("version_not_found"),
  )
  .openapi(
    agentVersion,
    async (c) => {
      const { model, version } = c.req.valid("param");
      const record = tokenServes(c.get("agent").claims.models, model)
        ? await versions(c.env, model).record(version)
        : null;
      if (!record) throw new FloodgateError("version_not_found", `no ready version ${version} of model ${model}`);
      return c.json(record, 200);
    },
    refuse("version_not_found"),
  )
  .openapi(agentPiece, async (c) => {
    const { sha256 } = c.req.valid("param");
    const { model, version } = c.req.valid("query");
    const notFound = new FloodgateError("not_found", `no piece ${sha256} of a ready version ${version} of ${model}`);
    if (!tokenServes(c.get("agent").claims.models, model)) throw notFound;
    if (!(await versions(c.env, model).hasPiece(version, sha256))) throw notFound;
    const object = await c.env.WEIGHTS.get(pieceKey(sha256));
    if (!object) throw notFound;
    return new Response(object.body, {
      headers: {
        "content-type": "application/octet-stream",
        "content-length": String(object.size),
        etag: object.httpEtag,
        // A piece's name is its content's hash: what is fetched under it never changes.
        "cache-control": "private, max-age=31536000, immutable",
      },
    });
  });
