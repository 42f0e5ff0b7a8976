/**
 * The webhook API: an account's endpoints (add, list, remove, rotate a secret), the secret of
 * its jobs' own webhooks, and a job's deliveries (each message and every attempt; a manual
 * redelivery). Endpoints live in the AccountActor, messages in the account's WebhookActor. A
 * change to the endpoints reaches submits within the authentication cache's time (AUTH_CACHE_S),
 * at once in the isolate that made it.
 *
 * Also what a submit records in its job: {@link hooksOf} decides from the cached principal which
 * endpoints the job tells, so a submit costs no call for it.
 */
import { z } from "zod";
import { fail, type Failure } from "../../shared/errors.ts";
import { schedulerName } from "../../shared/ids.ts";
import {
  DEFAULT_JOB_EVENTS,
  DeliveryList,
  JobSecretAnswer,
  RedeliverAnswer,
  RedeliverBody,
  WebhookCreate,
  WebhookCreated,
  WebhookList,
  webhookUrlProblem,
  type JobWebhook,
} from "../../shared/webhooks.ts";
import {
  actor,
  JOB_SECRET_ID,
  type AccountActor,
  type JobHook,
  type Principal,
  type SchedulerActor,
  type WebhookActor,
} from "../../mesh/index.ts";
import { forgetAccount } from "../auth/index.ts";
import { raise } from "../errors.ts";
import { apiRoute, json, jsonBody, routesApp } from "../openapi.ts";
import { jobRoute } from "../registry-cache.ts";
import { readJson } from "../validate.ts";

/** Whether webhooks may use http and loopback addresses (local development only). */
export function allowLocalWebhooks(env: Env): boolean {
  return env.WEBHOOKS_ALLOW_LOCAL === "true";
}

/**
 * Whom a job tells: the account's live endpoints that want a job event, and the job's own
 * webhook if it names one (its address checked, and refused while the account has no secret to
 * sign it with). `undefined` for a job that tells nobody: it is stored and runs as before.
 */
export function hooksOf(
  env: Env,
  p: Principal,
  webhook: JobWebhook | undefined,
  at: string,
): JobHook[] | undefined | Failure {
  const hooks: JobHook[] = [];
  for (const w of p.webhooks) {
    const events = w.events.filter((e) => e.startsWith("job."));
    if (events.length > 0) hooks.push({ endpoint: w.id, events });
  }
  if (webhook !== undefined) {
    const url = typeof webhook === "string" ? webhook : webhook.url;
    const problem = webhookUrlProblem(url, allowLocalWebhooks(env));
    if (problem !== undefined) return fail("invalid_webhook", `${at}webhook: ${problem}`);
    if (!p.job_webhooks) {
      return fail(
        "invalid_webhook",
        `${at}webhook: the account has no secret to sign jobs' webhooks with; make one with POST /v1/webhooks/job-secret (floodgate webhooks job-secret)`,
      );
    }
    const events = typeof webhook === "string" ? undefined : webhook.events;
    hooks.push({ endpoint: JOB_SECRET_ID, url, events: [...(events ?? DEFAULT_JOB_EVENTS)] });
  }
  return hooks.length > 0 ? hooks : undefined;
}

const WebhookId = z.object({ id: z.string().regex(/^wh_[0-9a-z]{16}$/, "a webhook id is wh_ and 16 characters") });
const JobId = z.object({ id: z.string() });

const addWebhook = apiRoute("user", {
  method: "post",
  path: "/v1/webhooks",
  summary: "Add an endpoint told of the account's jobs; its secret (whsec_…) is answered this once",
  request: { body: jsonBody(WebhookCreate) },
  responses: { 201: json("The endpoint and its secret", WebhookCreated) },
});

const listWebhooks = apiRoute("user", {
  method: "get",
  path: "/v1/webhooks",
  summary: "The account's endpoints, without secrets; a disabled one says when and why",
  responses: { 200: json("The endpoints", WebhookList) },
});

const removeWebhook = apiRoute("user", {
  method: "delete",
  path: "/v1/webhooks/{id}",
  summary: "Remove an endpoint; its pending messages are dropped",
  request: { params: WebhookId },
  responses: { 204: { description: "Removed" } },
});

const rotateWebhook = apiRoute("user", {
  method: "post",
  path: "/v1/webhooks/{id}/rotate",
  summary: "A new secret for an endpoint; the old one keeps signing beside it for 24 h. Enables a disabled endpoint",
  request: { params: WebhookId },
  responses: { 200: json("The endpoint and its new secret", WebhookCreated) },
});

const jobSecret = apiRoute("user", {
  method: "post",
  path: "/v1/webhooks/job-secret",
  summary: "Make (or rotate) the secret that signs jobs' own webhooks; answered this once",
  responses: { 201: json("The secret", JobSecretAnswer) },
});

const deliveries = apiRoute("user", {
  method: "get",
  path: "/v1/jobs/{id}/deliveries",
  summary: "The job's webhook messages: each endpoint, state, and every attempt with its status",
  request: { params: JobId },
  responses: { 200: json("The messages", DeliveryList) },
});

const redeliver = apiRoute("user", {
  method: "post",
  path: "/v1/jobs/{id}/redeliver",
  summary: "Send the job's settled webhook messages (of one event, or all) again, with the same ids",
  request: { params: JobId, body: jsonBody(RedeliverBody) },
  responses: { 200: json("How many were queued again", RedeliverAnswer) },
});

function account(env: Env, id: string) {
  return actor<AccountActor>(env.ACCOUNT, id);
}

/** The job, checked to be the caller's (another account's is 404). */
async function ownJob(env: Env, id: string, accountId: string): Promise<void> {
  const shard = actor<SchedulerActor>(env.SCHEDULER, schedulerName(await jobRoute(env, id)));
  const out = await shard.view(id, accountId);
  if (!out.ok) raise(out);
}

export const webhookRoutes = routesApp()
  .openapi(addWebhook, async (c) => {
    const accountId = c.get("principal").account_id;
    const body = await readJson(c, WebhookCreate);
    const problem = webhookUrlProblem(body.url, allowLocalWebhooks(c.env));
    if (problem !== undefined) raise(fail("invalid_webhook", `url: ${problem}`));
    const out = await account(c.env, accountId).addWebhook(body.url, body.events);
    if (!out.ok) raise(out);
    forgetAccount(accountId);
    return c.json(out.webhook, 201);
  })
  .openapi(listWebhooks, async (c) => {
    const webhooks = await account(c.env, c.get("principal").account_id).webhooks();
    return c.json({ webhooks }, 200);
  })
  .openapi(jobSecret, async (c) => {
    const accountId = c.get("principal").account_id;
    const out = await account(c.env, accountId).rotateWebhook(JOB_SECRET_ID);
    if (!out.ok) raise(out);
    forgetAccount(accountId);
    return c.json({ secret: out.secret, previous_valid_until: out.previous_valid_until }, 201);
  })
  .openapi(removeWebhook, async (c) => {
    const accountId = c.get("principal").account_id;
    const out = await account(c.env, accountId).removeWebhook(c.req.valid("param").id);
    if (!out.ok) raise(out);
    forgetAccount(accountId);
    return c.body(null, 204);
  })
  .openapi(rotateWebhook, async (c) => {
    const accountId = c.get("principal").account_id;
    const out = await account(c.env, accountId).rotateWebhook(c.req.valid("param").id);
    if (!out.ok) raise(out);
    if (!out.webhook) raise(fail("not_found", "no such webhook"));
    forgetAccount(accountId);
    return c.json({ ...out.webhook, secret: out.secret }, 200);
  })
  .openapi(deliveries, async (c) => {
    const { id } = c.req.valid("param");
    const accountId = c.get("principal").account_id;
    await ownJob(c.env, id, accountId);
    const list = await actor<WebhookActor>(c.env.WEBHOOK, accountId).deliveries(id);
    return c.json({ deliveries: list }, 200);
  })
  .openapi(redeliver, async (c) => {
    const { id } = c.req.valid("param");
    const accountId = c.get("principal").account_id;
    const body = await readJson(c, RedeliverBody);
    await ownJob(c.env, id, accountId);
    const out = await actor<WebhookActor>(c.env.WEBHOOK, accountId).redeliver(id, body.event);
    if (!out.ok) raise(out);
    return c.json({ redelivered: out.redelivered }, 200);
  });
