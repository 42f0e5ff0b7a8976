/**
 * Admin routes (the admin key): models, accounts and their keys, tiers, queues, agent tokens.
 */
import { Hono } from "hono";
import { z } from "zod";
import {
  AccountCreateBody,
  AdminJobList,
  AdminJobListQuery,
  AdminJobView,
  AgentView,
  AccountCreated,
  AgentTokenBody,
  AgentTokenCreated,
  KeyCreated,
  ModelConfig,
  ModelConfigBody,
  ModelName,
  QueueStats,
} from "../../shared/api.ts";
import { FloodgateError } from "../../shared/errors.ts";
import { newId } from "../../shared/ids.ts";
import { hashKey, newApiKey } from "../../shared/keys.ts";
import { TierList } from "../../shared/slo.ts";
import { actor, type AccountActor } from "../../mesh/index.ts";
import { forgetAccount, keySecret } from "../auth/index.ts";
import type { AppEnv } from "../env.ts";
import { raise } from "../errors.ts";
import type { RouteDoc } from "../openapi.ts";
import { checkSchema, invalidateRegistry, jobRoute, registry, registryStub } from "../registry-cache.ts";
import { mintAgentToken } from "../tokens.ts";
import { readJson, readParam, readQuery } from "../validate.ts";
import { forgetToken, listAgents } from "./agent.ts";
import { listJobs, present, scheduler } from "./jobs.ts";

const AccountId = z.string().regex(/^acc_[0-9a-z]{16}$/);
const KeyId = z.string().regex(/^key_[0-9a-z]{16}$/);
const TokenId = z.string().regex(/^tok_[0-9a-z]{16}$/);

function account(env: Env, id: string) {
  return actor<AccountActor>(env.ACCOUNT, id);
}

export const adminRoutes = new Hono<AppEnv>()
  .put("/v1/admin/models/:model", async (c) => {
    const name = readParam(c, "model", ModelName, "invalid_query");
    const body = await readJson(c, ModelConfigBody);
    const problem = checkSchema(body.input_schema);
    if (problem) throw new FloodgateError("invalid_body", `body.input_schema is not a usable JSON Schema: ${problem}`);
    const out = await registryStub(c.env).putModel(name, body);
    if (!out.ok) raise(out);
    invalidateRegistry();
    return c.json(out.model, out.created ? 201 : 200);
  })
  .get("/v1/admin/models", async (c) => {
    const { byName } = await registry(c.env);
    return c.json({ models: [...byName.values()] });
  })
  .post("/v1/admin/accounts", async (c) => {
    const body = await readJson(c, AccountCreateBody);
    const { tiers } = await registry(c.env);
    if (!tiers.some((t) => t.name === body.tier)) {
      throw new FloodgateError(
        "invalid_body",
        `body.tier: no tier ${JSON.stringify(body.tier)}; tiers are ${tiers.map((t) => t.name).join(", ")}`,
      );
    }
    const id = newId("acc");
    const keyId = newId("key");
    const apiKey = await newApiKey(keySecret(c.env), id, keyId);
    const out = await account(c.env, id).create(
      { id, name: body.name, tier: body.tier, rate_limit: body.rate_limit ?? null },
      keyId,
      await hashKey(apiKey),
    );
    if (!out.ok) raise(out);
    await registryStub(c.env).putAccount(id, body.name, body.tier);
    return c.json({ id, key_id: keyId, api_key: apiKey }, 201);
  })
  .get("/v1/admin/accounts", async (c) => c.json({ accounts: await registryStub(c.env).accounts() }))
  .post("/v1/admin/accounts/:id/keys", async (c) => {
    const id = readParam(c, "id", AccountId);
    const keyId = newId("key");
    const apiKey = await newApiKey(keySecret(c.env), id, keyId);
    const out = await account(c.env, id).addKey(keyId, await hashKey(apiKey));
    if (!out.ok) raise(out);
    return c.json({ key_id: keyId, api_key: apiKey }, 201);
  })
  .delete("/v1/admin/accounts/:id/keys/:key_id", async (c) => {
    const id = readParam(c, "id", AccountId);
    const keyId = readParam(c, "key_id", KeyId);
    const out = await account(c.env, id).revokeKey(keyId);
    if (!out.ok) raise(out);
    forgetAccount(id);
    return c.body(null, 204);
  })
  .get("/v1/admin/tiers", async (c) => c.json({ tiers: (await registry(c.env)).tiers }))
  .put("/v1/admin/tiers", async (c) => {
    const body = await readJson(c, z.strictObject({ tiers: TierList }));
    const out = await registryStub(c.env).putTiers(body.tiers);
    invalidateRegistry();
    return c.json({ tiers: out.tiers });
  })
  .get("/v1/admin/queues", async (c) => {
    const { byName } = await registry(c.env);
    const rows = await Promise.all(
      [...byName.values()].flatMap((m) =>
        Array.from({ length: m.shards }, async (_, shard) => {
          const s = await scheduler(c.env, { modelNumber: m.number, shard }).stats();
          return s.tiers.map((t): QueueStats => ({ model: m.name, shard, ...t }));
        }),
      ),
    );
    return c.json({ queues: rows.flat() });
  })
  .post("/v1/admin/agent-tokens", async (c) => {
    const body = await readJson(c, AgentTokenBody);
    const id = newId("tok");
    const { token, expiresAt } = await mintAgentToken(c.env, {
      id,
      pool: body.pool,
      models: body.models,
      ttlS: body.ttl_s,
    });
    await registryStub(c.env).putToken({
      id,
      pool: body.pool,
      models: JSON.stringify(body.models),
      created_at: Date.now(),
      expires_at: expiresAt,
    });
    return c.json({ id, token, expires_at: new Date(expiresAt).toISOString() }, 201);
  })
  .get("/v1/admin/jobs/:id", async (c) => {
    const id = c.req.param("id");
    const out = await scheduler(c.env, await jobRoute(c.env, id)).adminView(id);
    if (!out.ok) raise(out);
    const job: AdminJobView = await present(c.env, out.job, true);
    return c.json(job);
  })
  .get("/v1/admin/jobs", async (c) => {
    const q = readQuery(c, AdminJobListQuery);
    const page: AdminJobList = await listJobs(c.env, q.account, q);
    return c.json(page);
  })
  .get("/v1/admin/agents", async (c) => c.json({ agents: await listAgents(c.env) }))
  .delete("/v1/admin/agent-tokens/:id", async (c) => {
    const id = readParam(c, "id", TokenId);
    const out = await registryStub(c.env).revokeToken(id);
    if (!out.ok) raise(out);
    forgetToken(id);
    return c.body(null, 204);
  });

const TiersBody = z.object({ tiers: TierList });

export const adminDocs: RouteDoc[] = [
  {
    method: "put",
    path: "/v1/admin/models/{model}",
    summary: "Register or update a model",
    auth: "admin",
    body: ModelConfigBody,
    responses: {
      200: { description: "Updated", schema: ModelConfig },
      201: { description: "Registered", schema: ModelConfig },
    },
  },
  {
    method: "get",
    path: "/v1/admin/models",
    summary: "Every model",
    auth: "admin",
    responses: { 200: { description: "Models", schema: z.object({ models: z.array(ModelConfig) }) } },
  },
  {
    method: "post",
    path: "/v1/admin/accounts",
    summary: "Create an account and its first API key (shown once)",
    auth: "admin",
    body: AccountCreateBody,
    responses: { 201: { description: "Created", schema: AccountCreated } },
  },
  {
    method: "get",
    path: "/v1/admin/accounts",
    summary: "Every account",
    auth: "admin",
    responses: { 200: { description: "Accounts" } },
  },
  {
    method: "post",
    path: "/v1/admin/accounts/{id}/keys",
    summary: "Add an API key to an account (shown once)",
    auth: "admin",
    responses: { 201: { description: "Created", schema: KeyCreated } },
  },
  {
    method: "delete",
    path: "/v1/admin/accounts/{id}/keys/{key_id}",
    summary: "Revoke an API key (effective within 60 s everywhere)",
    auth: "admin",
    responses: { 204: { description: "Revoked" } },
  },
  {
    method: "get",
    path: "/v1/admin/tiers",
    summary: "The tier table",
    auth: "admin",
    responses: { 200: { description: "Tiers", schema: TiersBody } },
  },
  {
    method: "put",
    path: "/v1/admin/tiers",
    summary: "Replace the tier table",
    auth: "admin",
    body: TiersBody,
    responses: { 200: { description: "Tiers", schema: TiersBody } },
  },
  {
    method: "get",
    path: "/v1/admin/queues",
    summary: "Per model, shard and tier: depth, oldest wait, largest wait/SLO, drain rate",
    auth: "admin",
    responses: { 200: { description: "Queues", schema: z.object({ queues: z.array(QueueStats) }) } },
  },
  {
    method: "post",
    path: "/v1/admin/agent-tokens",
    summary: "Mint an agent token for a pool and its models",
    auth: "admin",
    body: AgentTokenBody,
    responses: { 201: { description: "Minted", schema: AgentTokenCreated } },
  },
  {
    method: "get",
    path: "/v1/admin/jobs/{id}",
    summary: "Any account's job, with the agent and pool of each attempt",
    auth: "admin",
    responses: { 200: { description: "The job", schema: AdminJobView } },
  },
  {
    method: "get",
    path: "/v1/admin/jobs",
    summary: "One account's jobs, newest first, with the agent and pool of each attempt",
    auth: "admin",
    query: AdminJobListQuery,
    responses: { 200: { description: "A page of jobs", schema: AdminJobList } },
  },
  {
    method: "get",
    path: "/v1/admin/agents",
    summary: "Connected agents: pool, models, versions, slots, running jobs, GPU health, last heartbeat",
    auth: "admin",
    responses: { 200: { description: "Agents", schema: z.object({ agents: z.array(AgentView) }) } },
  },
  {
    method: "delete",
    path: "/v1/admin/agent-tokens/{id}",
    summary: "Revoke an agent token",
    auth: "admin",
    responses: { 204: { description: "Revoked" } },
  },
];
