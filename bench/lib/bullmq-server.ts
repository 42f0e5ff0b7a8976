/**
 * The peer's HTTP server for the `dispatch` benchmark, one process, started by
 * bench/lib/bullmq.ts: Fastify with the same submit routes and answers as the edge's jobs API
 * (POST /v1/models/:model/jobs → 202 `{id}`; POST /v1/models/:model/jobs/batch → 202
 * `{jobs: [{ok, id}]}`), a bearer-key check, the body validated by Fastify's JSON Schema
 * validation, then one BullMQ `add` (a batch: one `addBulk`) to the queue named after the model.
 *
 * Configured by the environment: PEER_REDIS_PORT, PEER_API_KEY, PEER_INPUT_SCHEMA (the input's
 * JSON Schema). Sends `{port}` over IPC once it listens on 127.0.0.1; exits when its parent goes.
 */
import { Queue } from "bullmq";
import Fastify from "fastify";
import type { AddressInfo } from "node:net";
import { MAX_BATCH } from "../../shared/api.ts";

const connection = { host: "127.0.0.1", port: Number(process.env.PEER_REDIS_PORT) };
const authorization = `Bearer ${process.env.PEER_API_KEY}`;
const input: unknown = JSON.parse(process.env.PEER_INPUT_SCHEMA ?? "{}");

interface JobBody {
  input: { prompt: string };
}

const jobSchema = { type: "object", additionalProperties: false, required: ["input"], properties: { input } };
const batchSchema = {
  type: "object",
  additionalProperties: false,
  required: ["jobs"],
  properties: { jobs: { type: "array", minItems: 1, maxItems: MAX_BATCH, items: jobSchema } },
};

const queues = new Map<string, Queue>();
function queueOf(model: string): Queue {
  let q = queues.get(model);
  if (!q) {
    q = new Queue(model, { connection });
    queues.set(model, q);
  }
  return q;
}

const app = Fastify({ logger: false });
app.addHook("onRequest", async (req, reply) => {
  if (req.headers.authorization !== authorization) return reply.code(401).send({ error: "unauthorized" });
});
app.post<{ Params: { model: string }; Body: JobBody }>(
  "/v1/models/:model/jobs",
  { schema: { body: jobSchema } },
  async (req, reply) => {
    const job = await queueOf(req.params.model).add("generate", req.body);
    return reply.code(202).send({ id: job.id });
  },
);
app.post<{ Params: { model: string }; Body: { jobs: JobBody[] } }>(
  "/v1/models/:model/jobs/batch",
  { schema: { body: batchSchema } },
  async (req, reply) => {
    const jobs = await queueOf(req.params.model).addBulk(req.body.jobs.map((data) => ({ name: "generate", data })));
    return reply.code(202).send({ jobs: jobs.map((j) => ({ ok: true, id: j.id })) });
  },
);

process.on("disconnect", () => process.exit(0));
await app.listen({ host: "127.0.0.1", port: 0 });
process.send?.({ port: (app.server.address() as AddressInfo).port });
