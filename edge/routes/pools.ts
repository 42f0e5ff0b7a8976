/**
 * Pools and provisioners: admins apply pools (`floodgate pools apply`), read their state and
 * calls (`floodgate pools status`) and mint provisioner tokens; a provisioner
 * (`floodgate provisioner`) takes its pools' calls by long poll and answers each. The decisions
 * are the PoolsActor's (mesh/pools-actor.ts).
 */
import type { MiddlewareHandler } from "hono";
import { z } from "zod";
import { FloodgateError } from "../../shared/errors.ts";
import { newId } from "../../shared/ids.ts";
import {
  PoolsApply,
  PoolsStatus,
  ProvisionerAnswer,
  ProvisionerCalls,
  ProvisionerTokenBody,
} from "../../shared/pools.ts";
import { actor, type PoolsActor } from "../../mesh/index.ts";
import type { AppEnv } from "../env.ts";
import { raise } from "../errors.ts";
import { apiRoute, json, jsonBody, refuse, routesApp } from "../openapi.ts";
import { checkAddressLimit, checkAgentLimit } from "../ratelimit.ts";
import { registry, registryStub } from "../registry-cache.ts";
import { mintProvisionerToken, verifyProvisionerToken } from "../tokens.ts";
import { readJson } from "../validate.ts";

/** The longest a provisioner's poll is held open (s). */
const MAX_WAIT_S = 25;

function pools(env: Env) {
  return actor<PoolsActor>(env.POOLS, "global");
}

/**
 * Requires a valid, live provisioner token (its own kind: an agent token is refused here, and a
 * provisioner token cannot connect as an agent). Revoked like agent tokens.
 */
export const provisionerAuth: MiddlewareHandler<AppEnv> = async (c, next) => {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header("authorization") ?? "");
  const claims = m?.[1] ? await verifyProvisionerToken(c.env, m[1]) : undefined;
  if (!claims || !(await registryStub(c.env).tokenLive(claims.jti))) {
    await checkAddressLimit(c.env, c.req.raw);
    throw new FloodgateError("unauthorized", "the provisioner token is missing, invalid, expired or revoked");
  }
  await checkAgentLimit(c.env, claims.jti);
  c.set("provisioner", claims);
  await next();
};

const applyPools = apiRoute("admin", {
  method: "put",
  path: "/v1/admin/pools",
  summary: "Replace the pools: per pool its models, bounds, windows, and a command (run by a provisioner) or a webhook",
  request: { body: jsonBody(PoolsApply) },
  responses: {
    200: json(
      "Applied; the signing secrets of new webhook pools (shown once)",
      z.object({ pools: z.array(z.string()), secrets: z.record(z.string(), z.string()) }),
    ),
  },
});

const readPools = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/pools",
  summary: "Every pool: desired, connected and busy agents, and its recent calls with their answers",
  responses: { 200: json("Pools", PoolsStatus) },
});

const mintProvisioner = apiRoute("admin", {
  method: "post",
  path: "/v1/admin/provisioner-tokens",
  summary: "Mint a provisioner token for some pools (revoke it as an agent token)",
  request: { body: jsonBody(ProvisionerTokenBody) },
  responses: { 201: json("Minted", z.object({ id: z.string(), token: z.string(), expires_at: z.string() })) },
});

const takeCalls = apiRoute("provisioner", {
  method: "get",
  path: "/v1/provisioner/calls",
  summary: "A long poll: the calls of this token's command pools not yet taken (empty after wait_s)",
  request: { query: z.object({ wait_s: z.coerce.number().min(0).max(MAX_WAIT_S).default(20) }) },
  responses: { 200: json("Calls to run", ProvisionerCalls) },
});

const answerCall = apiRoute("provisioner", {
  method: "post",
  path: "/v1/provisioner/calls/{id}",
  summary: "How a call's command ended",
  request: { params: z.object({ id: z.coerce.number().int().min(1) }), body: jsonBody(ProvisionerAnswer) },
  responses: { 204: { description: "Recorded" } },
});

export const poolRoutes = routesApp()
  .openapi(applyPools, async (c) => {
    const body = await readJson(c, PoolsApply);
    const { byName } = await registry(c.env);
    for (const [name, spec] of Object.entries(body.file.pools)) {
      const unknown = spec.models.find((m) => !byName.has(m));
      if (unknown !== undefined) {
        throw new FloodgateError("invalid_body", `body.file.pools.${name}.models: no model ${JSON.stringify(unknown)}`);
      }
    }
    return c.json(await pools(c.env).apply(body.file, body.source), 200);
  })
  .openapi(readPools, async (c) => c.json(await pools(c.env).status(), 200))
  .openapi(mintProvisioner, async (c) => {
    const body = await readJson(c, ProvisionerTokenBody);
    const id = newId("tok");
    const { token, expiresAt } = await mintProvisionerToken(c.env, { id, pools: body.pools, ttlS: body.ttl_s });
    await registryStub(c.env).putToken({
      id,
      // Not an agent pool: no agent can be bound to it.
      pool: "provisioner",
      models: JSON.stringify(body.pools),
      created_at: Date.now(),
      expires_at: expiresAt,
    });
    return c.json({ id, token, expires_at: new Date(expiresAt).toISOString() }, 201);
  })
  .openapi(
    takeCalls,
    async (c) => {
      const { wait_s } = c.req.valid("query");
      const calls = await pools(c.env).claim(c.get("provisioner").pools, wait_s * 1000);
      return c.json({ calls }, 200);
    },
    refuse("invalid_query"),
  )
  .openapi(answerCall, async (c) => {
    const { id } = c.req.valid("param");
    const body = await readJson(c, ProvisionerAnswer);
    const out = await pools(c.env).answer(id, c.get("provisioner").pools, body);
    if (!out.ok) raise(out);
    return c.body(null, 204);
  });
