/**
 * Webhooks in the SDK: the account's endpoints, and {@link verifyWebhook}, which a receiver
 * calls on every delivery before trusting it. Verification is the Standard Webhooks reference
 * library's (npm `standardwebhooks`): the signature over `webhook-id.webhook-timestamp.body`
 * with the endpoint's `whsec_…` secret, and a timestamp within five minutes.
 */
import { Webhook } from "standardwebhooks";
import { z } from "zod";
import {
  DeliveryList,
  JobSecretAnswer,
  RedeliverAnswer,
  WebhookCreated,
  WebhookList,
  type WebhookEvent,
  type WebhookPayload,
} from "../shared/webhooks.ts";
import type { Http } from "./http.ts";

/**
 * Verifies a delivery and answers its payload; throws when the signature does not match any
 * of the secrets (pass the old and the new one while a rotation overlaps) or the timestamp is
 * more than five minutes away. Pass the body exactly as received, before any JSON parsing.
 *
 * @example
 * app.post("/floodgate", async (req, res) => {
 *   const event = verifyWebhook(req.rawBody, req.headers, process.env.FLOODGATE_WEBHOOK_SECRET!);
 *   if (event.type === "job.succeeded") console.log(event.data);
 *   res.status(204).end();
 * });
 */
export function verifyWebhook(
  body: string | Uint8Array,
  headers: Headers | Record<string, string | string[] | undefined>,
  secret: string | readonly string[],
): WebhookPayload {
  const text = typeof body === "string" ? body : new TextDecoder().decode(body);
  const plain: Record<string, string> = {};
  if (headers instanceof Headers) headers.forEach((v, k) => (plain[k.toLowerCase()] = v));
  else
    for (const [k, v] of Object.entries(headers))
      if (v !== undefined) plain[k.toLowerCase()] = Array.isArray(v) ? v.join(", ") : v;
  const secrets = typeof secret === "string" ? [secret] : secret;
  let last: unknown = new Error("no secret given");
  for (const s of secrets) {
    try {
      return new Webhook(s).verify(text, plain) as WebhookPayload;
    } catch (err) {
      last = err;
    }
  }
  throw last;
}

export interface WebhooksApi {
  /** Adds an endpoint told of the account's jobs; its secret is in this answer only. */
  add(url: string, events?: WebhookEvent[]): Promise<WebhookCreated>;
  list(): Promise<WebhookList>;
  remove(id: string): Promise<void>;
  /** A new secret; the old one keeps signing beside it for 24 h. Enables a disabled endpoint. */
  rotate(id: string): Promise<WebhookCreated>;
  /** Makes (or rotates) the secret that signs jobs' own webhooks (`webhook` in a submit). */
  jobSecret(): Promise<JobSecretAnswer>;
  /** A job's webhook messages and every attempt at them. */
  deliveries(jobId: string): Promise<DeliveryList>;
  /** Sends a job's settled messages (of one event, or all) again, with their ids. */
  redeliver(jobId: string, event?: WebhookEvent): Promise<z.infer<typeof RedeliverAnswer>>;
}

function one(id: string, rest = ""): string {
  return `/v1/webhooks/${encodeURIComponent(id)}${rest}`;
}

function job(id: string, rest: string): string {
  return `/v1/jobs/${encodeURIComponent(id)}${rest}`;
}

export function webhooksApi(http: Http): WebhooksApi {
  return {
    add: (url, events) =>
      http.request("/v1/webhooks", WebhookCreated, { method: "POST", body: events ? { url, events } : { url } }),
    list: () => http.request("/v1/webhooks", WebhookList, { idempotent: true }),
    remove: async (id) => {
      await http.request(one(id), z.undefined(), { method: "DELETE", idempotent: true });
    },
    rotate: (id) => http.request(one(id, "/rotate"), WebhookCreated, { method: "POST" }),
    jobSecret: () => http.request("/v1/webhooks/job-secret", JobSecretAnswer, { method: "POST" }),
    deliveries: (id) => http.request(job(id, "/deliveries"), DeliveryList, { idempotent: true }),
    redeliver: (id, event) =>
      http.request(job(id, "/redeliver"), RedeliverAnswer, {
        method: "POST",
        body: event ? { event } : {},
        idempotent: true,
      }),
  };
}
