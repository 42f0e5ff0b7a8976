/**
 * The edge Worker's HTTP app: request ids, the body-size limit, authentication, the routes and
 * the one error handler. Built once per isolate.
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { requestId } from "hono/request-id";
import { MAX_BODY_BYTES } from "../shared/api.ts";
import { FloodgateError } from "../shared/errors.ts";
import { adminAuth, jobsAuth, userAuth } from "./auth/index.ts";
import type { AppEnv } from "./env.ts";
import { errorResponse } from "./errors.ts";
import { openApiDocument, type RouteDoc } from "./openapi.ts";
import { fileDocs, fileRoutes } from "./files.ts";
import { adminDocs, adminRoutes } from "./routes/admin.ts";
import { MAX_PART_BYTES } from "../shared/outputs.ts";
import { agentAuth, agentDocs, agentRoutes } from "./routes/agent.ts";
import { jobDocs, jobRoutes } from "./routes/jobs.ts";
import { protocolDocs, protocolRoutes } from "./routes/protocol.ts";
import { uploadDocs, uploadRoutes } from "./routes/uploads.ts";

export const VERSION = "0.1.0";

const systemDocs: RouteDoc[] = [
  { method: "get", path: "/healthz", summary: "Liveness", auth: "none", responses: { 200: { description: "OK" } } },
  {
    method: "get",
    path: "/openapi.json",
    summary: "This document",
    auth: "none",
    responses: { 200: { description: "OpenAPI 3.1" } },
  },
];
const docs = openApiDocument(
  [...systemDocs, ...jobDocs, ...adminDocs, ...agentDocs, ...uploadDocs, ...fileDocs, ...protocolDocs],
  VERSION,
);

const PART_PATH = /^\/v1\/agent\/uploads\/[^/]+\/parts\//;

export function buildApp(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
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
  // Output parts are large by design; every other body is small.
  app.use("*", (c, next) => (PART_PATH.test(c.req.path) ? partBodies(c, next) : smallBodies(c, next)));
  app.get("/healthz", (c) => c.json({ ok: true, version: VERSION }));
  app.get("/openapi.json", (c) => c.json(docs));
  app.use("/v1/admin/*", adminAuth);
  app.use("/v1/jobs", userAuth);
  app.use("/v1/jobs/*", jobsAuth);
  app.use("/v1/models/*", userAuth);
  app.use("/v1/agent/*", agentAuth);
  app.route("/", jobRoutes);
  app.route("/", adminRoutes);
  app.route("/", agentRoutes);
  app.route("/", uploadRoutes);
  app.route("/", fileRoutes);
  app.route("/", protocolRoutes);
  app.notFound(() => {
    throw new FloodgateError("not_found", "no such route; GET /openapi.json lists them");
  });
  app.onError((err, c) => errorResponse(c, err));
  return app;
}
