/**
 * The edge Worker's HTTP app: request ids, the body-size limit, authentication, the routes and
 * the one error handler. Built once per isolate.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import { bodyLimit } from "hono/body-limit";
import { requestId } from "hono/request-id";
import { MAX_BODY_BYTES } from "../shared/api.ts";
import { FloodgateError } from "../shared/errors.ts";
import { adminAuth, jobsAuth, userAuth } from "./auth/index.ts";
import type { AppEnv } from "./env.ts";
import { errorResponse } from "./errors.ts";
import { fileRoutes, OUTPUT_FILES_PREFIX } from "./files.ts";
import { apiRoute, json, routesApp, SECURITY_SCHEMES } from "./openapi.ts";
import { adminRoutes } from "./routes/admin.ts";
import { MAX_PART_BYTES } from "../shared/outputs.ts";
import { agentAuth, agentRoutes } from "./routes/agent.ts";
import { poolRoutes, provisionerAuth } from "./routes/pools.ts";
import { jobRoutes } from "./routes/jobs.ts";
import { liveRoutes } from "./routes/live.ts";
import { protocolRoutes } from "./routes/protocol.ts";
import { rolloutRoutes } from "./routes/rollouts.ts";
import { uploadRoutes } from "./routes/uploads.ts";
import { inputRoutes } from "./routes/inputs.ts";
import { usageRoutes } from "./routes/usage.ts";
import { webhookRoutes } from "./routes/webhooks.ts";
import { swarmRoutes } from "./routes/swarm.ts";
import { PIECE_PATH, versionRoutes } from "./routes/versions.ts";
import { PIECE_BYTES } from "../shared/repository.ts";

export const VERSION = "0.1.0";

const healthz = apiRoute("none", {
  method: "get",
  path: "/healthz",
  summary: "Liveness, the edge's version and its clock",
  responses: {
    200: json(
      "OK",
      z.object({
        ok: z.literal(true),
        version: z.string(),
        time: z.string().describe("The edge's clock (ISO 8601, ms): hosts measure their skew against it"),
      }),
    ),
  },
});
const openapi = apiRoute("none", {
  method: "get",
  path: "/openapi.json",
  summary: "This document",
  responses: { 200: json("OpenAPI 3.1", z.record(z.string(), z.unknown())) },
});

const PART_PATH = /^\/v1\/(agent\/uploads|files)\/[^/]+\/parts\/[^/]+$/;

export function buildApp(): OpenAPIHono<AppEnv> {
  const app = routesApp();
  app.use("*", requestId({ headerName: "X-Request-Id" }));
  const smallBodies = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: () => {
      throw new FloodgateError(
        "payload_too_large",
        `the body is over ${MAX_BODY_BYTES} bytes; send fewer jobs per batch`,
      );
    },
  });
  const partBodies = bodyLimit({
    maxSize: MAX_PART_BYTES,
    onError: () => {
      throw new FloodgateError("payload_too_large", `an upload part is at most ${MAX_PART_BYTES} bytes`);
    },
  });
  const pieceBodies = bodyLimit({
    maxSize: PIECE_BYTES,
    onError: () => {
      throw new FloodgateError("payload_too_large", `a piece is at most ${PIECE_BYTES} bytes`);
    },
  });
  // Output parts and pieces are large by design; every other body is small.
  app.use("*", (c, next) => {
    if (PART_PATH.test(c.req.path)) return partBodies(c, next);
    if (PIECE_PATH.test(c.req.path)) return pieceBodies(c, next);
    return smallBodies(c, next);
  });
  app.openapi(healthz, (c) => c.json({ ok: true as const, version: VERSION, time: new Date().toISOString() }, 200));
  // Generated once, on first request, when every route has been declared.
  let document: Record<string, unknown> | undefined;
  app.openapi(openapi, (c) => {
    document ??= {
      ...app.getOpenAPI31Document({
        openapi: "3.1.0",
        info: { title: "Floodgate", version: VERSION, description: "Generative-media jobs at launch-day scale." },
      }),
    };
    return c.json(document, 200);
  });
  app.use("/v1/admin/*", adminAuth);
  app.use("/v1/jobs", userAuth);
  app.use("/v1/jobs/*", jobsAuth);
  app.use("/v1/models/*", userAuth);
  app.use("/v1/webhooks", userAuth);
  app.use("/v1/webhooks/*", userAuth);
  app.use("/v1/usage", userAuth);
  app.use("/v1/files", userAuth);
  // Output files are opened by their signed URLs alone; every other file route is an account's.
  app.use("/v1/files/*", (c, next) => (c.req.path.startsWith(OUTPUT_FILES_PREFIX) ? next() : userAuth(c, next)));
  app.use("/v1/agent/*", agentAuth);
  app.use("/v1/provisioner/*", provisionerAuth);
  app.route("/", jobRoutes);
  app.route("/", adminRoutes);
  app.route("/", rolloutRoutes);
  app.route("/", liveRoutes);
  app.route("/", poolRoutes);
  app.route("/", agentRoutes);
  app.route("/", uploadRoutes);
  app.route("/", inputRoutes);
  app.route("/", versionRoutes);
  app.route("/", webhookRoutes);
  app.route("/", swarmRoutes);
  app.route("/", usageRoutes);
  app.route("/", fileRoutes);
  app.route("/", protocolRoutes);
  for (const [name, scheme] of Object.entries(SECURITY_SCHEMES)) {
    app.openAPIRegistry.registerComponent("securitySchemes", name, scheme);
  }
  app.notFound(() => {
    throw new FloodgateError("not_found", "no such route; GET /openapi.json lists them");
  });
  app.onError((err, c) => errorResponse(c, err));
  return app;
}
