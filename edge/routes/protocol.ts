/**
 * The agent and runner protocols' JSON Schemas and golden vectors (shared/golden/), bundled into
 * the Worker as JSON modules and served without authentication: an agent or a runner written in
 * another language validates its messages and tests its codec against them
 * (docs/protocol.md, docs/runner-protocol.md).
 */
import { Hono } from "hono";
import runnerSchema from "../../shared/golden/runner.schema.json";
import runnerVectors from "../../shared/golden/runner-vectors.json";
import agentSchema from "../../shared/golden/wire.schema.json";
import agentVectors from "../../shared/golden/wire-vectors.json";
import type { AppEnv } from "../env.ts";
import type { RouteDoc } from "../openapi.ts";

/** The served files by path, each with what /openapi.json says of it. */
const FILES: Record<string, { body: unknown; summary: string }> = {
  "/v1/protocol/agent.schema.json": {
    body: agentSchema,
    summary: "JSON Schema (draft 2020-12) of every agent-protocol message, both directions",
  },
  "/v1/protocol/agent-vectors.json": {
    body: agentVectors,
    summary: "Golden agent-protocol frames: every message type with its bytes, and frames a reader must refuse",
  },
  "/v1/protocol/runner.schema.json": {
    body: runnerSchema,
    summary: "JSON Schema (draft 2020-12) of every runner-protocol message, both directions",
  },
  "/v1/protocol/runner-vectors.json": {
    body: runnerVectors,
    summary: "Golden runner-protocol frames: every message type with its bytes, and frames a reader must refuse",
  },
};

export const protocolRoutes = new Hono<AppEnv>();
for (const [path, file] of Object.entries(FILES)) {
  // They change only with a deploy: caches may keep them a while.
  protocolRoutes.get(path, (c) => c.json(file.body, 200, { "cache-control": "public, max-age=300" }));
}

export const protocolDocs: RouteDoc[] = Object.entries(FILES).map(([path, file]) => ({
  method: "get",
  path,
  summary: file.summary,
  auth: "none",
  responses: { 200: { description: "The file, as in shared/golden/" } },
}));
