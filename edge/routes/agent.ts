/**
 * Routes for GPU agents: the agent token check every `/v1/agent/*` route passes (here, before
 * any upgrade), and the WebSocket connection. Output uploads, authorised by the same check and
 * by the lease, are in uploads.ts.
 */
import type { MiddlewareHandler } from "hono";
import { z } from "zod";
import { FloodgateError } from "../../shared/errors.ts";
import { AgentWhoami, type AgentClaims } from "../../shared/tokens.ts";
import {
  AGENT_ID_HEADER,
  AGENT_INSTANCE_HEADER,
  AGENT_SUBPROTOCOL,
  AgentId,
  AgentInstance,
} from "../../shared/wire.ts";
import { actor, CLAIMS_HEADER, type AgentActor, type AgentClaimsLite } from "../../mesh/index.ts";
import type { AppEnv } from "../env.ts";
import { apiRoute, json, routesApp } from "../openapi.ts";
import { checkAddressLimit, checkAgentLimit } from "../ratelimit.ts";
import { registryStub } from "../registry-cache.ts";
import { verifyAgentToken } from "../tokens.ts";

const CONNECT_PATH = "/v1/agent/connect";
/** The one agent route that needs no agent id: a token checking itself. */
const WHOAMI_PATH = "/v1/agent/whoami";
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
  if (c.req.path === WHOAMI_PATH) {
    if (!(await registryStub(c.env).tokenLive(claims.jti))) {
      await checkAddressLimit(c.env, c.req.raw);
      throw unauthorized;
    }
    c.set("agentToken", claims);
    await next();
    return;
  }
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
      `agent id ${agentId.data} is bound to another live agent token; start this agent with a fresh id (remove its identity directory), or revoke the other token`,
    );
  }
  c.set("agentToken", claims);
  c.set("agent", { claims, agentId: agentId.data });
  await next();
};

const connect = apiRoute("agent", {
  method: "get",
  path: CONNECT_PATH,
  summary: `Upgrade to the agent WebSocket (subprotocol ${AGENT_SUBPROTOCOL}); 401 before the upgrade for a bad token`,
  request: {
    headers: z.object({
      [AGENT_ID_HEADER]: z
        .string()
        .optional()
        .describe("The agent's id (agt_…), stable across the agent's restarts and reconnects"),
      [AGENT_INSTANCE_HEADER]: z
        .string()
        .optional()
        .describe("The agent process (random per process start, kept across its reconnects)"),
    }),
  },
  responses: {
    101: { description: "Switching protocols" },
    403: { description: "The agent id is bound to another live token (agent_id_taken)" },
    426: { description: "Not a WebSocket upgrade" },
  },
});

const whoami = apiRoute("agent", {
  method: "get",
  path: WHOAMI_PATH,
  summary:
    "What the agent token says of itself once verified (signature, expiry, not revoked): its id, pool, models and lifetime. No agent id needed; 401 for a bad token",
  responses: { 200: json("The token's claims", AgentWhoami) },
});

export const agentRoutes = routesApp().openapi(connect, async (c) => {
  if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
    throw new FloodgateError("upgrade_required", `connect with a WebSocket upgrade (subprotocol ${AGENT_SUBPROTOCOL})`);
  }
  const protocols = (c.req.header("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim());
  if (!protocols.includes(AGENT_SUBPROTOCOL))
    throw new FloodgateError("bad_request", `offer the WebSocket subprotocol ${AGENT_SUBPROTOCOL}`);
  if (!AgentInstance.safeParse(c.req.header(AGENT_INSTANCE_HEADER)).success) {
    throw new FloodgateError(
      "bad_request",
      `send the agent process's instance in ${AGENT_INSTANCE_HEADER} (8–64 of A-Z, a-z, 0-9, '_', '-', random per process)`,
    );
  }
  const { claims, agentId } = c.get("agent");
  const lite: AgentClaimsLite = { token_id: claims.jti, pool: claims.pool, models: claims.models, exp: claims.exp };
  const headers = new Headers(c.req.raw.headers);
  headers.set(CLAIMS_HEADER, JSON.stringify(lite));
  return await c.env.AGENT.get(c.env.AGENT.idFromName(agentId)).fetch(new Request(c.req.raw, { headers }));
});

agentRoutes.openapi(whoami, (c) => {
  const claims = c.get("agentToken");
  return c.json(
    {
      token_id: claims.jti,
      pool: claims.pool,
      models: claims.models,
      issued_at: new Date(claims.iat * 1000).toISOString(),
      expires_at: new Date(claims.exp * 1000).toISOString(),
    } satisfies AgentWhoami,
    200,
  );
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
