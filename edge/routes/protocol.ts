/**
 * The agent and runner protocols' JSON Schemas and golden vectors (shared/golden/), bundled into
 * the Worker as JSON modules and served without authentication: an agent or a runner written in
 * another language validates its messages and tests its codec against them
 * (docs/protocol.md, docs/runner-protocol.md).
 */
import { z } from "zod";
import runnerSchema from "../../shared/golden/runner.schema.json";
import runnerVectors from "../../shared/golden/runner-vectors.json";
import agentSchema from "../../shared/golden/wire.schema.json";
import agentVectors from "../../shared/golden/wire-vectors.json";
import { apiRoute, json, routesApp } from "../openapi.ts";

/** The served files by path, each with what /openapi.json says of it. */
const FILES: Record<string, { body: Record<string, unknown>; summary: string }> = {
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

export const protocolRoutes = routesApp();
for (const [path, file] of Object.entries(FILES)) {
  const route = apiRoute("none", {
    method: "get",
    path,
    summary: file.summary,
    responses: { 200: json("The file, as in shared/golden/", z.record(z.string(), z.unknown())) },
  });
  // They change only with a deploy: caches may keep them a while.
  protocolRoutes.openapi(route, (c) => c.json(file.body, 200, { "cache-control": "public, max-age=300" }));
}
