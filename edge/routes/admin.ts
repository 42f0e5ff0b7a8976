/**
 * Admin routes (the admin key): models, accounts and their keys, tiers, queues, agent tokens.
 */
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
import { CapacityView } from "../../shared/capacity.ts";
import { FloodgateError } from "../../shared/errors.ts";
import { newId } from "../../shared/ids.ts";
import { hashKey, newApiKey } from "../../shared/keys.ts";
import { TierList } from "../../shared/slo.ts";
import { DeliveryList } from "../../shared/webhooks.ts";
import { AgentId } from "../../shared/wire.ts";
import { actor, readFleet, type AccountActor, type AgentActor, type WebhookActor } from "../../mesh/index.ts";
import { forgetAccount, keySecret } from "../auth/index.ts";
import { raise } from "../errors.ts";
import { apiRoute, firstValues, json, jsonBody, refuse, routesApp } from "../openapi.ts";
import { checkSchema, invalidateRegistry, jobRoute, registry, registryStub } from "../registry-cache.ts";
import { mintAgentToken } from "../tokens.ts";
import { readJson } from "../validate.ts";
import { forgetToken, listAgents } from "./agent.ts";
import { listJobs, present, scheduler } from "./jobs.ts";
import { readQueues } from "./live.ts";

const AccountId = z.string().regex(/^acc_[0-9a-z]{16}$/);
const KeyId = z.string().regex(/^key_[0-9a-z]{16}$/);
const TokenId = z.string().regex(/^tok_[0-9a-z]{16}$/);

function account(env: Env, id: string) {
  return actor<AccountActor>(env.ACCOUNT, id);
}

const TiersBody = z.strictObject({ tiers: TierList });

const putModel = apiRoute("admin", {
  method: "put",
  path: "/v1/admin/models/{model}",
  summary: "Register or update a model",
  request: { params: z.object({ model: ModelName }), body: jsonBody(ModelConfigBody) },
  responses: { 200: json("Updated", ModelConfig), 201: json("Registered", ModelConfig) },
});

const listModels = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/models",
  summary: "Every model",
  responses: { 200: json("Models", z.object({ models: z.array(ModelConfig) })) },
});

const createAccount = apiRoute("admin", {
  method: "post",
  path: "/v1/admin/accounts",
  summary: "Create an account and its first API key (shown once)",
  request: { body: jsonBody(AccountCreateBody) },
  responses: { 201: json("Created", AccountCreated) },
});

const listAccounts = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/accounts",
  summary: "Every account",
  responses: { 200: { description: "Accounts" } },
});

const addKey = apiRoute("admin", {
  method: "post",
  path: "/v1/admin/accounts/{id}/keys",
  summary: "Add an API key to an account (shown once)",
  request: { params: z.object({ id: AccountId }) },
  responses: { 201: json("Created", KeyCreated) },
});

const revokeKey = apiRoute("admin", {
  method: "delete",
  path: "/v1/admin/accounts/{id}/keys/{key_id}",
  summary: "Revoke an API key (effective within 60 s everywhere)",
  // In this order: a bad account id is named before a bad key id.
  request: { params: z.object({ id: AccountId, key_id: KeyId }) },
  responses: { 204: { description: "Revoked" } },
});

const readTiers = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/tiers",
  summary: "The tier table",
  responses: { 200: json("Tiers", TiersBody) },
});

const putTiers = apiRoute("admin", {
  method: "put",
  path: "/v1/admin/tiers",
  summary: "Replace the tier table",
  request: { body: jsonBody(TiersBody) },
  responses: { 200: json("Tiers", TiersBody) },
});

const queuesRoute = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/queues",
  summary: "Per model, shard and tier: depth, oldest wait, largest wait/SLO, drain rate",
  responses: { 200: json("Queues", z.object({ queues: z.array(QueueStats) })) },
});

const readCapacity = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/capacity",
  summary:
    "Per model: agents connected and needed to keep every tier within its SLO, busy slots, queued jobs, seconds to the first SLO breach",
  responses: { 200: json("Capacity", CapacityView) },
});

const mintToken = apiRoute("admin", {
  method: "post",
  path: "/v1/admin/agent-tokens",
  summary: "Mint an agent token for a pool and its models",
  request: { body: jsonBody(AgentTokenBody) },
  responses: { 201: json("Minted", AgentTokenCreated) },
});

const readAnyJob = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/jobs/{id}",
  summary: "Any account's job, with the agent and pool of each attempt",
  request: { params: z.object({ id: z.string() }) },
  responses: { 200: json("The job", AdminJobView) },
});

const readAnyDeliveries = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/jobs/{id}/deliveries",
  summary: "Any account's job's webhook deliveries: each message and every attempt",
  request: { params: z.object({ id: z.string() }) },
  responses: { 200: json("The deliveries, oldest first", DeliveryList) },
});

const listAccountJobs = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/jobs",
  summary: "One account's jobs, newest first, with the agent and pool of each attempt",
  request: { query: firstValues(AdminJobListQuery) },
  responses: { 200: json("A page of jobs", AdminJobList) },
});

const listConnected = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/agents",
  summary: "Connected agents: pool, models, versions, slots, running jobs, GPU health, last heartbeat",
  responses: { 200: json("Agents", z.object({ agents: z.array(AgentView) })) },
});

const drainAgent = apiRoute("admin", {
  method: "post",
  path: "/v1/admin/agents/{id}/drain",
  summary:
    "Ask a connected agent to drain: it finishes its jobs, takes no new ones, and gives back what it has not started",
  request: { params: z.object({ id: AgentId }) },
  responses: { 202: json("Asked", z.object({ agent_id: z.string(), draining: z.literal(true) })) },
});

const reclaimAgent = apiRoute("admin", {
  method: "post",
  path: "/v1/admin/agents/{id}/reclaim",
  summary:
    "Take a connected agent's machine back: it is disconnected (4411) and its jobs go back to the head of their queues without spending attempts",
  request: { params: z.object({ id: AgentId }) },
  responses: { 200: json("Reclaimed", z.object({ agent_id: z.string(), released: z.number().int() })) },
});

const revokeToken = apiRoute("admin", {
  method: "delete",
  path: "/v1/admin/agent-tokens/{id}",
  summary: "Revoke an agent token",
  request: { params: z.object({ id: TokenId }) },
  responses: { 204: { description: "Revoked" } },
});

export const adminRoutes = routesApp()
  .openapi(
    putModel,
    async (c) => {
      const name = c.req.valid("param").model;
      const body = await readJson(c, ModelConfigBody);
      const problem = checkSchema(body.input_schema);
      if (problem)
        throw new FloodgateError("invalid_body", `body.input_schema is not a usable JSON Schema: ${problem}`);
      const out = await registryStub(c.env).putModel(name, body);
      if (!out.ok) raise(out);
      invalidateRegistry();
      return out.created ? c.json(out.model, 201) : c.json(out.model, 200);
    },
    refuse("invalid_query"),
  )
  .openapi(listModels, async (c) => {
    const { byName } = await registry(c.env);
    return c.json({ models: [...byName.values()] }, 200);
  })
  .openapi(createAccount, async (c) => {
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
  .openapi(listAccounts, async (c) => c.json({ accounts: await registryStub(c.env).accounts() }, 200))
  .openapi(addKey, async (c) => {
    const { id } = c.req.valid("param");
    const keyId = newId("key");
    const apiKey = await newApiKey(keySecret(c.env), id, keyId);
    const out = await account(c.env, id).addKey(keyId, await hashKey(apiKey));
    if (!out.ok) raise(out);
    return c.json({ key_id: keyId, api_key: apiKey }, 201);
  })
  .openapi(revokeKey, async (c) => {
    const { id, key_id: keyId } = c.req.valid("param");
    const out = await account(c.env, id).revokeKey(keyId);
    if (!out.ok) raise(out);
    forgetAccount(id);
    return c.body(null, 204);
  })
  .openapi(readTiers, async (c) => c.json({ tiers: (await registry(c.env)).tiers }, 200))
  .openapi(putTiers, async (c) => {
    const body = await readJson(c, TiersBody);
    const out = await registryStub(c.env).putTiers(body.tiers);
    invalidateRegistry();
    return c.json({ tiers: out.tiers }, 200);
  })
  .openapi(queuesRoute, async (c) => c.json({ queues: (await readQueues(c.env)).queues }, 200))
  .openapi(readCapacity, async (c) => c.json((await readFleet(c.env)).view, 200))
  .openapi(mintToken, async (c) => {
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
  .openapi(readAnyDeliveries, async (c) => {
    const { id } = c.req.valid("param");
    const out = await scheduler(c.env, await jobRoute(c.env, id)).adminView(id);
    if (!out.ok) raise(out);
    const list = await actor<WebhookActor>(c.env.WEBHOOK, out.account_id).deliveries(id);
    return c.json({ deliveries: list }, 200);
  })
  .openapi(readAnyJob, async (c) => {
    const { id } = c.req.valid("param");
    const out = await scheduler(c.env, await jobRoute(c.env, id)).adminView(id);
    if (!out.ok) raise(out);
    const job: AdminJobView = await present(c.env, out.job, true);
    return c.json(job, 200);
  })
  .openapi(listAccountJobs, async (c) => {
    const q = c.req.valid("query");
    const page: AdminJobList = await listJobs(c.env, q.account, q);
    return c.json(page, 200);
  })
  .openapi(listConnected, async (c) => c.json({ agents: await listAgents(c.env) }, 200))
  .openapi(drainAgent, async (c) => {
    const { id } = c.req.valid("param");
    if (!(await actor<AgentActor>(c.env.AGENT, id).drain("operator"))) {
      throw new FloodgateError("agent_not_found", `no connected agent ${id}`);
    }
    return c.json({ agent_id: id, draining: true as const }, 202);
  })
  .openapi(reclaimAgent, async (c) => {
    const { id } = c.req.valid("param");
    const released = await actor<AgentActor>(c.env.AGENT, id).reclaim("reclaimed by an admin");
    if (released === null) throw new FloodgateError("agent_not_found", `no connected agent ${id}`);
    return c.json({ agent_id: id, released }, 200);
  })
  .openapi(revokeToken, async (c) => {
    const { id } = c.req.valid("param");
    const out = await registryStub(c.env).revokeToken(id);
    if (!out.ok) raise(out);
    forgetToken(id);
    return c.body(null, 204);
  });
