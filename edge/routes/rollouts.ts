/**
 * Rollout routes (the admin key): apply a rollout file, read the history and the status of each
 * model's rollout, undo a model's last entry, revert a canary. The registry decides and keeps
 * everything (mesh/registry-actor.ts); these routes parse and answer.
 */
import { z } from "zod";
import {
  RevertAnswer,
  RolloutApply,
  RolloutEntry,
  RolloutHistory,
  RolloutModelBody,
  RolloutStatus,
} from "../../shared/rollouts.ts";
import { raise } from "../errors.ts";
import { apiRoute, firstValues, json, jsonBody, routesApp } from "../openapi.ts";
import { invalidateRegistry, registryStub } from "../registry-cache.ts";
import { readJson } from "../validate.ts";

/** Who applies rollouts: only the admin key reaches these routes. */
const BY = "admin";

const HistoryQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

const applyRollout = apiRoute("admin", {
  method: "post",
  path: "/v1/admin/rollouts",
  summary: "Apply a rollout: each model's stable version and optional canary",
  request: { body: jsonBody(RolloutApply) },
  responses: {
    201: json("Applied: the new history entry", RolloutEntry),
    404: { description: "A version it names is unknown or not ready (`version_not_found`)" },
  },
});

const listRollouts = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/rollouts",
  summary: "The rollout history, newest first",
  request: { query: firstValues(HistoryQuery) },
  responses: { 200: json("History", RolloutHistory) },
});

const readStatus = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/rollouts/status",
  summary: "Per model: desired versions, agents' versions, figures per version, reverts",
  responses: { 200: json("Status", RolloutStatus) },
});

const undoRollout = apiRoute("admin", {
  method: "post",
  path: "/v1/admin/rollouts/undo",
  summary: "Apply a model's previous rollout entry again (a new history entry)",
  request: { body: jsonBody(RolloutModelBody) },
  responses: {
    201: json("Applied: the new history entry", RolloutEntry),
    409: { description: "The model has no earlier entry (`conflict`)" },
  },
});

const revertCanary = apiRoute("admin", {
  method: "post",
  path: "/v1/admin/rollouts/revert",
  summary: "End a model's canary now; its routed jobs go back to the stable version",
  request: { body: jsonBody(RolloutModelBody) },
  responses: {
    200: json("Reverted, with the canary's figures", RevertAnswer),
    409: { description: "The model has no canary (`conflict`)" },
  },
});

export const rolloutRoutes = routesApp()
  .openapi(applyRollout, async (c) => {
    const body = await readJson(c, RolloutApply);
    const out = await registryStub(c.env).applyRollout(body.models, body.source ?? null, BY);
    if (!out.ok) raise(out);
    invalidateRegistry();
    return c.json(out.entry, 201);
  })
  .openapi(listRollouts, async (c) => {
    const { limit } = c.req.valid("query");
    return c.json({ rollouts: await registryStub(c.env).rolloutHistory(limit) }, 200);
  })
  .openapi(readStatus, async (c) => c.json(await registryStub(c.env).rolloutStatus(), 200))
  .openapi(undoRollout, async (c) => {
    const { model } = await readJson(c, RolloutModelBody);
    const out = await registryStub(c.env).undoRollout(model, BY);
    if (!out.ok) raise(out);
    invalidateRegistry();
    return c.json(out.entry, 201);
  })
  .openapi(revertCanary, async (c) => {
    const { model } = await readJson(c, RolloutModelBody);
    const out = await registryStub(c.env).revertCanary(model);
    if (!out.ok) raise(out);
    invalidateRegistry();
    return c.json({ model, revert: out.revert }, 200);
  });
