/**
 * The public jobs API: submit (one or a batch), read, list, cancel, delete. A submit touches
 * one scheduler shard (one durable commit) and, only when it carries an Idempotency-Key, the
 * account's actor first.
 */
import { z } from "zod";
import {
  BatchAnswer,
  BatchBody,
  customerView,
  IdempotencyKey,
  JobList,
  JobListQuery,
  JobView,
  MAX_INPUT_BYTES,
  MAX_INPUT_DEPTH,
  ModelName,
  RESERVED_INPUT_KEYS,
  SubmitAnswer,
  SubmitBody,
  shardSpan,
  type AdminJobView,
  type ModelConfig,
} from "../../shared/api.ts";
import { canonicalJson } from "../../shared/canonical.ts";
import { encode } from "../../shared/codec.ts";
import { FloodgateError, type Failure } from "../../shared/errors.ts";
import { newJobId, parseJobId, schedulerName, type JobRoute } from "../../shared/ids.ts";
import { sha256Hex } from "../../shared/keys.ts";
import {
  actor,
  SUBSCRIBE_HEADERS,
  type AccountActor,
  type Principal,
  type EnqueueItem,
  type AgentActor,
  type Remote,
  type SchedulerActor,
} from "../../mesh/index.ts";
import { StreamTokenAnswer } from "../../shared/events.ts";
import { streamToken } from "../../shared/signing.ts";
import { fileSecret, outputUrl } from "../files.ts";
import { raise } from "../errors.ts";
import { apiRoute, firstValues, json, jsonBody, refuse, routesApp } from "../openapi.ts";
import { jobRoute, modelByName, registry, validateInput } from "../registry-cache.ts";
import { jsonProblem, readJson } from "../validate.ts";
import { inputFilesOf } from "./inputs.ts";
import { hooksOf } from "./webhooks.ts";

export function scheduler(env: Env, route: JobRoute): Remote<SchedulerActor> {
  return actor<SchedulerActor>(env.SCHEDULER, schedulerName(route));
}

/** New submits spread over the model's `shards`; shards past it (its span) only drain. */
function pickShard(model: ModelConfig): JobRoute {
  return { modelNumber: model.number, shard: Math.floor(Math.random() * model.shards) };
}

type Prepared = { item: EnqueueItem; idemKey: string | undefined; bodyHash: string; at: string } | Failure;

async function prepare(
  env: Env,
  model: ModelConfig,
  account: Principal,
  route: JobRoute,
  body: SubmitBody,
  idemKey: string | undefined,
  at: string,
): Promise<Prepared> {
  const unfit = jsonProblem(body.input, `${at}input`, MAX_INPUT_DEPTH, {
    reserved: RESERVED_INPUT_KEYS,
    why: `agents refuse ${RESERVED_INPUT_KEYS.join(", ")} keys`,
    wellFormed: true,
  });
  if (unfit) return { ok: false, code: "invalid_input", message: unfit };
  const bytes = encode(body.input).length;
  if (bytes > MAX_INPUT_BYTES) {
    return {
      ok: false,
      code: "payload_too_large",
      message: `${at}input is ${bytes} bytes encoded (msgpack); the limit is ${MAX_INPUT_BYTES} bytes: send large inputs as files`,
    };
  }
  try {
    validateInput(model, body.input, `${at}input`);
  } catch (err) {
    if (err instanceof FloodgateError) return { ok: false, code: err.code, message: err.message };
    throw err;
  }
  const hooks = hooksOf(env, account, body.webhook, at);
  if (hooks !== undefined && "ok" in hooks) return hooks;
  const bodyHash = idemKey === undefined ? "" : await sha256Hex(canonicalJson({ model: model.name, ...body }));
  return {
    item: {
      id: newJobId(route),
      account_id: account.account_id,
      tier: account.tier,
      body: { model: model.name, ...body },
      ...(hooks === undefined ? {} : { hooks }),
    },
    idemKey,
    bodyHash,
    at,
  };
}

/**
 * Records in each prepared job the input files its input names (checked in one account call for
 * all); a job naming a file that is not a live, complete file of the account is refused. Jobs of
 * a model without file fields pass through untouched, with no call.
 */
async function withInputFiles(env: Env, accountId: string, model: ModelConfig, prepared: Prepared[]) {
  const items = prepared.flatMap((p) => ("item" in p ? [p] : []));
  const files = await inputFilesOf(
    env,
    accountId,
    model,
    items.map((p) => p.item.body.input),
    (i) => items[i]?.at ?? "",
  );
  const refused = new Map<Prepared, Failure>();
  items.forEach((p, i) => {
    const f = files[i];
    if (f === undefined) return;
    if ("files" in f) p.item.body.files = f.files;
    else refused.set(p, f);
  });
  return refused.size === 0 ? prepared : prepared.map((p) => refused.get(p) ?? p);
}

/**
 * Submits prepared jobs: claims their idempotency keys (one account call for all), then
 * enqueues them grouped by shard (one scheduler call, one commit, per shard).
 */
async function submit(env: Env, accountId: string, model: ModelConfig, given: Prepared[]) {
  const prepared = await withInputFiles(env, accountId, model, given);
  const { tiers, lanes } = await registry(env);
  const desired = lanes.get(model.name);
  const claims = prepared.flatMap((p, i) =>
    "item" in p && p.idemKey !== undefined ? [{ i, key: p.idemKey, body_hash: p.bodyHash, job_id: p.item.id }] : [],
  );
  const results: (SubmitAnswer | Failure | undefined)[] = prepared.map((p) => ("item" in p ? undefined : p));
  if (claims.length > 0) {
    const outcomes = await actor<AccountActor>(env.ACCOUNT, accountId).claim(
      claims.map(({ key, body_hash, job_id }) => ({ key, body_hash, job_id })),
    );
    claims.forEach((c, k) => {
      const o = outcomes[k];
      const p = prepared[c.i];
      if (!o || !p || !("item" in p)) return;
      if (!o.ok) results[c.i] = o;
      else p.item.id = o.job_id;
    });
  }
  const byShard = new Map<string, { route: JobRoute; idx: number[]; items: EnqueueItem[] }>();
  prepared.forEach((p, i) => {
    if (!("item" in p) || results[i] !== undefined) return;
    const route = parseJobId(p.item.id) as JobRoute;
    const key = schedulerName(route);
    const group = byShard.get(key) ?? { route, idx: [], items: [] };
    group.idx.push(i);
    group.items.push(p.item);
    byShard.set(key, group);
  });
  await Promise.all(
    [...byShard.values()].map(async (g) => {
      const out = await scheduler(env, g.route).enqueue({ model, tiers, desired }, g.items);
      out.forEach((o, k) => {
        const i = g.idx[k] as number;
        results[i] = o.ok
          ? {
              id: o.id,
              status: o.status,
              model: model.name,
              tier: o.tier,
              created_at: new Date(o.created_at).toISOString(),
            }
          : o;
      });
    }),
  );
  return results.map(
    (r) => r ?? { ok: false as const, code: "internal" as const, message: "the job was not answered" },
  );
}

/**
 * Finishes a job view: outputs get freshly signed URLs, and a running job's phase and progress
 * come live from the actor of the agent running it (they never pass through the scheduler).
 * Its owner gets it through {@link customerView}.
 */
export async function present(env: Env, job: AdminJobView, live: boolean): Promise<AdminJobView> {
  const outputs = job.outputs
    ? await Promise.all(
        job.outputs.map(async (o) => (typeof o.key === "string" ? { ...o, url: await outputUrl(env, o.key) } : o)),
      )
    : null;
  const attempt = job.attempts.at(-1);
  if (!live || job.status !== "running" || !attempt) return { ...job, outputs };
  const p = await actor<AgentActor>(env.AGENT, attempt.agent)
    .progressOf(job.id, attempt.epoch)
    .catch(() => null);
  if (!p) return { ...job, outputs };
  return {
    ...job,
    outputs,
    phase: p.phase,
    progress: { step: p.step, total: p.total, phase: p.phase, updated_at: new Date(p.at).toISOString() },
  };
}

/** A page of an account's jobs across every shard of every model, newest first. */
export async function listJobs(
  env: Env,
  accountId: string,
  q: z.infer<typeof JobListQuery>,
): Promise<{ jobs: AdminJobView[]; next_cursor: string | null }> {
  const { byName } = await registry(env);
  const routes = [...byName.values()].flatMap((m) =>
    Array.from({ length: shardSpan(m) }, (_, shard) => ({ modelNumber: m.number, shard })),
  );
  const pages = await Promise.all(
    routes.map((r) => scheduler(env, r).list(accountId, q.status, q.limit + 1, q.cursor)),
  );
  const merged = pages.flat().sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  const jobs = await Promise.all(merged.slice(0, q.limit).map((j) => present(env, j, false)));
  return { jobs, next_cursor: merged.length > q.limit ? (jobs.at(-1)?.id ?? null) : null };
}

const JobId = z.object({ id: z.string() });
const OfModel = z.object({ model: ModelName });

const submitJob = apiRoute("user", {
  method: "post",
  path: "/v1/models/{model}/jobs",
  summary: "Submit a job; answers at once with its id",
  request: {
    params: OfModel,
    headers: z.object({
      "idempotency-key": z
        .string()
        .optional()
        .describe(
          "The same key and body within 24 h return the same job. A key whose job was since deleted is refused with 409 idempotency_conflict for the rest of the 24 h: the job is not made again.",
        ),
    }),
    body: jsonBody(SubmitBody),
  },
  responses: {
    202: json("Accepted and durable", SubmitAnswer),
    409: { description: "Idempotency-Key reused with another body, or after the job it made was deleted" },
  },
});

const submitBatch = apiRoute("user", {
  method: "post",
  path: "/v1/models/{model}/jobs/batch",
  summary: "Submit up to 100 jobs; each is validated and answered on its own",
  request: { params: OfModel, body: jsonBody(BatchBody) },
  responses: { 202: json("One answer per job, in order", BatchAnswer) },
});

const readJob = apiRoute("user", {
  method: "get",
  path: "/v1/jobs/{id}",
  summary: "A job: status, phase, attempts, queue position and ETA, outputs",
  request: { params: JobId },
  responses: { 200: json("The job", JobView) },
});

const listOwnJobs = apiRoute("user", {
  method: "get",
  path: "/v1/jobs",
  summary: "The caller's jobs, newest first",
  request: { query: firstValues(JobListQuery) },
  responses: { 200: json("A page of jobs", JobList) },
});

const mintStreamToken = apiRoute("user", {
  method: "post",
  path: "/v1/jobs/{id}/stream-token",
  summary:
    "A short-lived token for one job's events, accepted as ?token= (EventSource and browser WebSockets cannot set headers)",
  request: { params: JobId },
  responses: { 201: json("The token", StreamTokenAnswer) },
});

const jobEvents = apiRoute("user", {
  method: "get",
  path: "/v1/jobs/{id}/events",
  summary:
    "The job's events as Server-Sent Events (status, progress, preview, log, then succeeded|failed|cancelled|expired); Last-Event-ID resumes; Upgrade: websocket for msgpack frames; ?token= from stream-token for browsers",
  request: {
    params: JobId,
    headers: z.object({ "last-event-id": z.string().optional().describe("Resume after this event") }),
  },
  responses: {
    200: { description: "The events", content: { "text/event-stream": { schema: { type: "string" } } } },
    101: { description: "WebSocket (msgpack frames)" },
  },
});

const cancelJob = apiRoute("user", {
  method: "post",
  path: "/v1/jobs/{id}/cancel",
  summary: "Cancel a queued or running job (idempotent)",
  request: { params: JobId },
  responses: { 200: json("The job after cancelling", JobView) },
});

const deleteJob = apiRoute("user", {
  method: "delete",
  path: "/v1/jobs/{id}",
  summary: "Delete a finished job and its outputs",
  request: { params: JobId },
  responses: { 204: { description: "Deleted" }, 409: { description: "The job has not finished" } },
});

export const jobRoutes = routesApp()
  .openapi(
    submitJob,
    async (c) => {
      const p = c.get("principal");
      const model = await modelByName(c.env, c.req.valid("param").model);
      const body = await readJson(c, SubmitBody);
      const rawKey = c.req.header("idempotency-key");
      const idem = rawKey === undefined ? undefined : IdempotencyKey.safeParse(rawKey);
      if (idem && !idem.success)
        throw new FloodgateError("bad_request", "Idempotency-Key must be 1–255 printable ASCII characters");
      const prepared = await prepare(c.env, model, p, pickShard(model), body, idem?.data, "");
      const [result] = await submit(c.env, p.account_id, model, [prepared]);
      if (!result) throw new Error("submit answered nothing");
      if ("ok" in result && result.ok === false) raise(result);
      return c.json(result as SubmitAnswer, 202);
    },
    refuse("model_not_found"),
  )
  .openapi(
    submitBatch,
    async (c) => {
      const p = c.get("principal");
      const model = await modelByName(c.env, c.req.valid("param").model);
      const body = await readJson(c, BatchBody);
      // One shard for the whole batch, so the batch is one commit.
      const route = pickShard(model);
      const prepared = await Promise.all(
        body.jobs.map(({ idempotency_key, ...job }, i) =>
          prepare(c.env, model, p, route, job, idempotency_key, `jobs.${i}.`),
        ),
      );
      const results = await submit(c.env, p.account_id, model, prepared);
      const answer: BatchAnswer = {
        jobs: results.map((r) =>
          "ok" in r && r.ok === false
            ? { ok: false, error: { code: r.code, message: r.message } }
            : { ok: true, ...(r as SubmitAnswer) },
        ),
      };
      return c.json(answer, 202);
    },
    refuse("model_not_found"),
  )
  .openapi(readJob, async (c) => {
    const { id } = c.req.valid("param");
    const out = await scheduler(c.env, await jobRoute(c.env, id)).view(id, c.get("principal").account_id);
    if (!out.ok) raise(out);
    return c.json(customerView(await present(c.env, out.job, true)), 200);
  })
  .openapi(listOwnJobs, async (c) => {
    const page = await listJobs(c.env, c.get("principal").account_id, c.req.valid("query"));
    const answer: JobList = { jobs: page.jobs.map(customerView), next_cursor: page.next_cursor };
    return c.json(answer, 200);
  })
  .openapi(mintStreamToken, async (c) => {
    const { id } = c.req.valid("param");
    const { account_id: accountId, key_id: keyId } = c.get("principal");
    const out = await scheduler(c.env, await jobRoute(c.env, id)).view(id, accountId);
    if (!out.ok) raise(out);
    const { token, exp } = await streamToken(fileSecret(c.env), { jobId: id, accountId, keyId });
    return c.json({ token, expires_at: new Date(exp * 1000).toISOString() }, 201);
  })
  .openapi(jobEvents, async (c) => {
    const { id } = c.req.valid("param");
    const accountId = c.get("principal").account_id;
    // Ownership first: another account's job is 404 here too, before any stream opens.
    const out = await scheduler(c.env, await jobRoute(c.env, id)).view(id, accountId);
    if (!out.ok) raise(out);
    const headers = new Headers(c.req.raw.headers);
    headers.set(SUBSCRIBE_HEADERS.job, id);
    headers.set(SUBSCRIBE_HEADERS.account, accountId);
    return await c.env.JOB.get(c.env.JOB.idFromName(id)).fetch(new Request(c.req.raw, { headers }));
  })
  .openapi(cancelJob, async (c) => {
    const { id } = c.req.valid("param");
    const out = await scheduler(c.env, await jobRoute(c.env, id)).cancel(id, c.get("principal").account_id);
    if (!out.ok) raise(out);
    return c.json(customerView(await present(c.env, out.job, false)), 200);
  })
  .openapi(deleteJob, async (c) => {
    const { id } = c.req.valid("param");
    const out = await scheduler(c.env, await jobRoute(c.env, id)).remove(id, c.get("principal").account_id);
    if (!out.ok) raise(out);
    return c.body(null, 204);
  });
