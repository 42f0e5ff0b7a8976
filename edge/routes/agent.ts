/**
 * Routes for GPU agents: the WebSocket connection, and output uploads to R2 in parts. Both are
 * authorised by the agent token (checked here, before any upgrade) and uploads also by the
 * lease: only the agent holding a job's current epoch may write its outputs, and each epoch
 * writes under its own key, so a zombie can never overwrite its successor's output.
 */
import { Hono, type MiddlewareHandler } from "hono";
import { z } from "zod";
import { FloodgateError } from "../../shared/errors.ts";
import { sign, verify } from "../../shared/signing.ts";
import type { AgentClaims } from "../../shared/tokens.ts";
import { schedulerName } from "../../shared/ids.ts";
import { AGENT_ID_HEADER, AGENT_SUBPROTOCOL, AgentId, OutputRecord } from "../../shared/wire.ts";
import { actor, CLAIMS_HEADER, type AgentActor, type AgentClaimsLite, type SchedulerActor } from "../../mesh/index.ts";
import type { AppEnv } from "../env.ts";
import type { RouteDoc } from "../openapi.ts";
import { checkAddressLimit, checkAgentLimit } from "../ratelimit.ts";
import { jobRoute, registryStub } from "../registry-cache.ts";
import { fileSecret } from "../files.ts";
import { verifyAgentToken } from "../tokens.ts";
import { readJson } from "../validate.ts";

const CONNECT_PATH = "/v1/agent/connect";
/** R2 multipart parts must be at least 5 MiB, except the last. */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
/** Largest part the edge takes in one request (bytes). */
export const MAX_PART_BYTES = 64 * 1024 * 1024;
/**
 * How long this isolate trusts the registry's answer for an upload's token and agent id (ms).
 * Connecting always asks the registry; uploads are fenced by the lease as well, and revoking a
 * token gives its agents' leases back.
 */
const ACCESS_CACHE_MS = 5_000;
type Access = "ok" | "dead" | "taken";
const access = new Map<string, { answer: Access; until: number }>();

/** What the registry says of a token acting as an agent id; `bind` (connect) binds the id to it. */
async function agentAccess(env: Env, claims: AgentClaims, agentId: string, bind: boolean): Promise<Access> {
  const key = `${claims.jti} ${agentId}`;
  const hit = bind ? undefined : access.get(key);
  if (hit && hit.until > Date.now()) return hit.answer;
  const answer = await registryStub(env).agentAccess(claims.jti, agentId, claims.pool, bind);
  if (access.size > 10_000) access.clear();
  access.set(key, { answer, until: Date.now() + ACCESS_CACHE_MS });
  return answer;
}

/** Forgets this isolate's answers for a token (after this isolate revoked it). */
export function forgetToken(id: string): void {
  for (const key of access.keys()) if (key.startsWith(`${id} `)) access.delete(key);
}

/**
 * Requires a valid, live agent token and an agent id the token may act as: 401 for a bad,
 * expired or revoked token, 403 `agent_id_taken` for an id bound to another live token. A
 * connect binds the id to its token.
 */
export const agentAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header("authorization") ?? "");
  const claims = m?.[1] ? await verifyAgentToken(c.env, m[1]) : undefined;
  const unauthorized = new FloodgateError("unauthorized", "the agent token is missing, invalid, expired or revoked");
  if (!claims) {
    await checkAddressLimit(c.env, c.req.raw);
    throw unauthorized;
  }
  // Per token, before the registry is asked about it.
  await checkAgentLimit(c.env, claims.jti);
  const agentId = AgentId.safeParse(c.req.header(AGENT_ID_HEADER));
  if (!agentId.success)
    throw new FloodgateError("bad_request", `send the agent's id in ${AGENT_ID_HEADER} (agt_ and 16 of 0-9a-z)`);
  const answer = await agentAccess(c.env, claims, agentId.data, c.req.path === CONNECT_PATH);
  if (answer === "dead") {
    await checkAddressLimit(c.env, c.req.raw);
    throw unauthorized;
  }
  if (answer === "taken") {
    throw new FloodgateError(
      "agent_id_taken",
      `agent id ${agentId.data} is bound to another live agent token; give this agent its own --cache-dir, or revoke the other token`,
    );
  }
  c.set("agent", { claims, agentId: agentId.data });
  await next();
};

/** Checks that `agentId` holds the lease of `jobId` at `epoch`. */
async function requireLease(env: Env, agentId: string, jobId: string, epoch: number): Promise<void> {
  // A job id naming no model or shard of the registry asks (and creates) no scheduler.
  const route = await jobRoute(env, jobId).catch((err: unknown) => {
    if (err instanceof FloodgateError) return undefined;
    throw err;
  });
  const lease = route ? await actor<SchedulerActor>(env.SCHEDULER, schedulerName(route)).leaseOf(jobId) : null;
  if (!lease || lease.status !== "running" || lease.epoch !== epoch || lease.agent_id !== agentId) {
    throw new FloodgateError(
      "stale_lease",
      `the lease of ${jobId} at epoch ${epoch} is not this agent's; abandon the job`,
    );
  }
}

/**
 * The upload id an agent is given: R2's, with a signature binding it to its key, so a part or a
 * complete naming an upload this edge did not start for that key is refused before storage.
 */
async function publicUploadId(env: Env, key: string, r2Id: string): Promise<string> {
  return `${r2Id}.${await sign(fileSecret(env), `upload\n${key}\n${r2Id}`)}`;
}

const uploadNotFound = (): FloodgateError =>
  new FloodgateError("upload_not_found", "no such upload for this key; start a new one with POST /v1/agent/uploads");

/** R2's id of an upload, from the id the agent was given; 404 unless it was made for `key`. */
async function r2UploadId(env: Env, key: string, given: string): Promise<string> {
  const dot = given.lastIndexOf(".");
  const r2Id = given.slice(0, Math.max(0, dot));
  if (dot < 0 || !(await verify(fileSecret(env), `upload\n${key}\n${r2Id}`, given.slice(dot + 1)))) {
    throw uploadNotFound();
  }
  return r2Id;
}

/**
 * Runs a multipart call on R2, answering what the agent got wrong as a 4xx: an upload that is
 * no longer there (completed or aborted) is 404, parts that do not match what was uploaded 400.
 */
async function storage<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    const code = /\((\d{5})\)\s*$/.exec(String((err as Error)?.message))?.[1];
    // R2's codes: 10024 no such upload; 10025 a part not found, 10011 a part too small, 10048
    // parts that do not form an upload (unequal sizes).
    if (code === "10024") throw uploadNotFound();
    if (code === "10025" || code === "10011" || code === "10048") {
      throw new FloodgateError("invalid_upload", `storage refused the parts: ${(err as Error).message}`);
    }
    throw err;
  }
}

const KEY_RE = /^outputs\/(job_[0-9a-z]{30})\/(\d{1,9})\/([a-z0-9][a-z0-9._-]{0,63})$/;

function parseKey(key: string): { jobId: string; epoch: number; name: string } {
  const m = KEY_RE.exec(key);
  if (!m) throw new FloodgateError("bad_request", "not an output key");
  return { jobId: m[1] as string, epoch: Number(m[2]), name: m[3] as string };
}

const UploadStart = z.strictObject({
  job_id: z.string().regex(/^job_[0-9a-z]{30}$/),
  epoch: z.number().int().min(1),
  name: OutputRecord.shape.name,
  content_type: OutputRecord.shape.content_type,
});
const UploadStarted = z.object({
  upload_id: z.string(),
  key: z.string(),
  min_part_bytes: z.number(),
  max_part_bytes: z.number(),
});
const UploadComplete = z.strictObject({
  key: z.string().max(512),
  parts: z
    .array(z.strictObject({ part_number: z.number().int().min(1).max(10_000), etag: z.string().min(1).max(256) }))
    .min(1)
    .max(10_000),
  size: z.number().int().min(0),
  sha256: OutputRecord.shape.sha256,
});

export const agentRoutes = new Hono<AppEnv>()
  .get(CONNECT_PATH, async (c) => {
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
      throw new FloodgateError("upgrade_required", "connect with a WebSocket upgrade (subprotocol floodgate.v1)");
    }
    const protocols = (c.req.header("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim());
    if (!protocols.includes(AGENT_SUBPROTOCOL))
      throw new FloodgateError("bad_request", `offer the WebSocket subprotocol ${AGENT_SUBPROTOCOL}`);
    const { claims, agentId } = c.get("agent");
    const lite: AgentClaimsLite = { token_id: claims.jti, pool: claims.pool, models: claims.models, exp: claims.exp };
    const headers = new Headers(c.req.raw.headers);
    headers.set(CLAIMS_HEADER, JSON.stringify(lite));
    return await c.env.AGENT.get(c.env.AGENT.idFromName(agentId)).fetch(new Request(c.req.raw, { headers }));
  })
  .post("/v1/agent/uploads", async (c) => {
    const body = await readJson(c, UploadStart);
    await requireLease(c.env, c.get("agent").agentId, body.job_id, body.epoch);
    const key = `outputs/${body.job_id}/${body.epoch}/${body.name}`;
    const upload = await c.env.OUTPUTS.createMultipartUpload(key, { httpMetadata: { contentType: body.content_type } });
    return c.json(
      {
        upload_id: await publicUploadId(c.env, key, upload.uploadId),
        key,
        min_part_bytes: MIN_PART_BYTES,
        max_part_bytes: MAX_PART_BYTES,
      },
      201,
    );
  })
  .put("/v1/agent/uploads/:upload_id/parts/:n", async (c) => {
    const key = c.req.query("key") ?? "";
    const { jobId, epoch } = parseKey(key);
    await requireLease(c.env, c.get("agent").agentId, jobId, epoch);
    const n = Number(c.req.param("n"));
    if (!Number.isInteger(n) || n < 1 || n > 10_000)
      throw new FloodgateError("bad_request", "part numbers are 1–10000");
    const upload = c.env.OUTPUTS.resumeMultipartUpload(key, await r2UploadId(c.env, key, c.req.param("upload_id")));
    const bytes = await c.req.arrayBuffer();
    const part = await storage(() => upload.uploadPart(n, bytes));
    return c.json({ part_number: part.partNumber, etag: part.etag });
  })
  .post("/v1/agent/uploads/:upload_id/complete", async (c) => {
    const body = await readJson(c, UploadComplete);
    const { jobId, epoch, name } = parseKey(body.key);
    await requireLease(c.env, c.get("agent").agentId, jobId, epoch);
    const upload = c.env.OUTPUTS.resumeMultipartUpload(
      body.key,
      await r2UploadId(c.env, body.key, c.req.param("upload_id")),
    );
    const object = await storage(() =>
      upload.complete(body.parts.map((p) => ({ partNumber: p.part_number, etag: p.etag }))),
    );
    if (object.size !== body.size) {
      await c.env.OUTPUTS.delete(body.key);
      throw new FloodgateError("bad_request", `the upload is ${object.size} bytes, not the ${body.size} announced`);
    }
    const record: OutputRecord = {
      name,
      key: body.key,
      content_type: object.httpMetadata?.contentType ?? "application/octet-stream",
      size: object.size,
      sha256: body.sha256,
    };
    return c.json(record);
  });

/** Admins: the connected agents. */
export async function listAgents(env: Env) {
  const known = await registryStub(env).agents();
  const infos = await Promise.all(
    known.map((a) =>
      actor<AgentActor>(env.AGENT, a.agent_id)
        .info()
        .catch(() => ({ connected: false as const })),
    ),
  );
  return infos.filter((i) => i.connected);
}

export const agentDocs: RouteDoc[] = [
  {
    method: "get",
    path: "/v1/agent/connect",
    summary: "Upgrade to the agent WebSocket (subprotocol floodgate.v1); 401 before the upgrade for a bad token",
    auth: "agent",
    headers: { [AGENT_ID_HEADER]: "The agent's instance id (agt_…), stable across reconnects" },
    responses: {
      101: { description: "Switching protocols" },
      403: { description: "The agent id is bound to another live token (agent_id_taken)" },
      426: { description: "Not a WebSocket upgrade" },
    },
  },
  {
    method: "post",
    path: "/v1/agent/uploads",
    summary: "Start a multipart output upload for a job the agent holds at this epoch",
    auth: "agent",
    body: UploadStart,
    responses: { 201: { description: "Started", schema: UploadStarted }, 409: { description: "Stale lease" } },
  },
  {
    method: "put",
    path: "/v1/agent/uploads/{upload_id}/parts/{n}",
    summary: "Upload part n (raw bytes; ≥ 5 MiB except the last; ?key= from the start)",
    auth: "agent",
    responses: {
      200: { description: "The part's etag" },
      404: { description: "No such upload for this key (upload_not_found)" },
      409: { description: "Stale lease" },
    },
  },
  {
    method: "post",
    path: "/v1/agent/uploads/{upload_id}/complete",
    summary: "Complete an upload; answers the output record for job.complete",
    auth: "agent",
    body: UploadComplete,
    responses: {
      200: { description: "The output record", schema: OutputRecord },
      400: { description: "Parts that do not match what was uploaded (invalid_upload)" },
      404: { description: "No such upload for this key (upload_not_found)" },
      409: { description: "Stale lease" },
    },
  },
];
