/**
 * Webhooks as customers see them: the events, the bodies of the webhook routes, the payload a
 * receiver gets, the address guard applied at registration and at every send, and the retry
 * schedule. Imported by the edge (routes, submits), the delivery actor (mesh/webhook-actor.ts),
 * the SDK and the CLI. Signatures are shared/webhook-signature.ts.
 */
import ipaddr from "ipaddr.js";
import { z } from "zod";
import type { JobView } from "./api.ts";

/** What a webhook is told of: a job's status changes, and an endpoint disabled for failing. */
export const WEBHOOK_EVENTS = [
  "job.running",
  "job.succeeded",
  "job.failed",
  "job.cancelled",
  "job.expired",
  "webhook.disabled",
] as const;
export const WebhookEvent = z.enum(WEBHOOK_EVENTS);
export type WebhookEvent = z.infer<typeof WebhookEvent>;

/** The events a job's own webhook may ask for, and gets when it names none: every job event. */
export const DEFAULT_JOB_EVENTS: readonly WebhookEvent[] = WEBHOOK_EVENTS.filter((e) => e.startsWith("job."));

/** The job event a job status change makes, or none (a job back in its queue tells nobody). */
export function jobEventOf(status: string): WebhookEvent | undefined {
  const e = `job.${status}`;
  return (WEBHOOK_EVENTS as readonly string[]).includes(e) ? (e as WebhookEvent) : undefined;
}

/** Longest webhook URL (characters). */
export const MAX_WEBHOOK_URL = 2048;
/** Endpoints one account may have. */
export const MAX_WEBHOOKS = 20;

const Events = z.array(WebhookEvent).min(1).max(WEBHOOK_EVENTS.length);

export const WebhookUrl = z.url({ protocol: /^https?$/ }).max(MAX_WEBHOOK_URL);

/** `POST /v1/webhooks`: an endpoint told of every job of the account. */
export const WebhookCreate = z.strictObject({ url: WebhookUrl, events: Events.optional() });
export type WebhookCreate = z.infer<typeof WebhookCreate>;

const JobEvents = z
  .array(z.enum(["job.running", "job.succeeded", "job.failed", "job.cancelled", "job.expired"]))
  .min(1)
  .max(5);

/** A job's own webhook in its submit body: a URL, or a URL and the job events it wants. */
export const JobWebhook = z.union([WebhookUrl, z.strictObject({ url: WebhookUrl, events: JobEvents.optional() })]);
export type JobWebhook = z.infer<typeof JobWebhook>;

/** An endpoint as listed (its secret is shown once, when made or rotated). */
export const WebhookView = z.object({
  id: z.string(),
  url: z.string(),
  events: z.array(WebhookEvent),
  created_at: z.string(),
  /** Set when the endpoint was disabled: it answered 410, or failed every retry for days. */
  disabled_at: z.string().nullable(),
  disabled_reason: z.string().nullable(),
});
export type WebhookView = z.infer<typeof WebhookView>;

export const WebhookList = z.object({ webhooks: z.array(WebhookView) });
export type WebhookList = z.infer<typeof WebhookList>;

/** An endpoint just made or rotated, with its secret (`whsec_…`), shown this once. */
export const WebhookCreated = WebhookView.extend({ secret: z.string() });
export type WebhookCreated = z.infer<typeof WebhookCreated>;

/** `POST /v1/webhooks/job-secret`: the secret that signs jobs' own webhooks, shown this once. */
export const JobSecretAnswer = z.object({ secret: z.string(), previous_valid_until: z.string().nullable() });
export type JobSecretAnswer = z.infer<typeof JobSecretAnswer>;

/** How long a rotated secret keeps signing beside its successor (ms). */
export const SECRET_OVERLAP_MS = 24 * 3600 * 1000;

/**
 * What a receiver gets: the event, when it happened (ISO 8601), and the job as its owner reads
 * it (`GET /v1/jobs/{id}`), or, for `webhook.disabled`, the endpoint that was disabled.
 */
export interface WebhookPayload {
  type: WebhookEvent;
  timestamp: string;
  data: JobView | { webhook: WebhookView };
}

export const DeliveryState = z.enum(["pending", "delivered", "failed"]);

export const DeliveryAttempt = z.object({
  at: z.string(),
  /** The receiver's HTTP status; `null` when none came (timeout, refused, address not allowed). */
  status: z.number().int().nullable(),
  error: z.string().nullable(),
  duration_ms: z.number().int(),
});

/** One message to one endpoint: its `webhook-id`, the same on every attempt. */
export const Delivery = z.object({
  id: z.string(),
  type: WebhookEvent,
  /** The account endpoint's id, or `job` for the job's own webhook. */
  endpoint: z.string(),
  url: z.string(),
  state: DeliveryState,
  created_at: z.string(),
  next_attempt_at: z.string().nullable(),
  attempts: z.array(DeliveryAttempt),
});
export type Delivery = z.infer<typeof Delivery>;

export const DeliveryList = z.object({ deliveries: z.array(Delivery) });
export type DeliveryList = z.infer<typeof DeliveryList>;

export const RedeliverBody = z.strictObject({ event: WebhookEvent.optional() });
export const RedeliverAnswer = z.object({ redelivered: z.number().int() });

/**
 * Delays before each attempt of a message (ms): the Svix schedule — at once, 5 s, 5 min,
 * 30 min, 2 h, 5 h, then 10 h apart — about three days in all, after which the message fails
 * and its endpoint is disabled.
 */
export const RETRY_SCHEDULE_MS: readonly number[] = [
  0,
  5_000,
  300_000,
  1_800_000,
  7_200_000,
  18_000_000,
  ...Array.from({ length: 6 }, () => 36_000_000),
];

/** Longest `Retry-After` a receiver's 429 or 503 is honoured for (s); longer waits are capped. */
export const MAX_RETRY_AFTER_S = 36_000;

/**
 * Why an address may not receive webhooks, or `undefined` when it may. Checked at registration
 * and again before every send, on the URL as written: https only; no `localhost`, `*.localhost`,
 * `*.internal`, `*.local` or `metadata.*` names; no literal address that is private, loopback,
 * link-local (cloud metadata), CGNAT, unique-local, multicast, reserved or unspecified, in IPv4
 * or IPv6, mapped forms included. A name is not resolved here (Workers expose no DNS lookup):
 * a public name that resolves to a private address is not caught by this check — Cloudflare's
 * network does not route a Worker's fetch to private addresses. `allowLocal` (local development
 * only) admits http and loopback addresses.
 */
export function webhookUrlProblem(raw: string, allowLocal: boolean): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "not a URL";
  }
  if (url.protocol !== "https:" && !(allowLocal && url.protocol === "http:"))
    return "webhooks are sent over https only";
  if (url.username !== "" || url.password !== "") return "a webhook URL may not carry credentials";
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (ipaddr.isValid(host)) {
    const parsed = ipaddr.parse(host);
    const addr =
      parsed.kind() === "ipv6" && (parsed as ipaddr.IPv6).isIPv4MappedAddress()
        ? (parsed as ipaddr.IPv6).toIPv4Address()
        : parsed;
    const range = addr.range();
    if (range === "unicast") return undefined;
    if (allowLocal && range === "loopback") return undefined;
    return `${host} is a ${range} address, which webhooks may not reach`;
  }
  if (allowLocal && host === "localhost") return undefined;
  const bare = host.replace(/\.$/, "");
  if (
    bare === "localhost" ||
    bare.endsWith(".localhost") ||
    bare.endsWith(".internal") ||
    bare.endsWith(".local") ||
    bare.startsWith("metadata.") ||
    bare === "metadata" ||
    !bare.includes(".")
  )
    return `${host} names a private host, which webhooks may not reach`;
  return undefined;
}
