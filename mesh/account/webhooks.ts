/**
 * An account's webhooks: its endpoints (URL, events, secret) and the secret that signs its jobs'
 * own webhooks. Pure over {@link AccountStore}; the AccountActor calls it for the edge's webhook
 * routes, for authentication (which carries the endpoints' ids and events, so a submit decides
 * whom its job tells without another call) and for the WebhookActor, which asks for an
 * endpoint's URL and secrets at send time, so a rotation or a removal applies to what is queued.
 */
import { fail, type Failure } from "../../shared/errors.ts";
import { newId } from "../../shared/ids.ts";
import { newWebhookSecret } from "../../shared/webhook-signature.ts";
import {
  MAX_WEBHOOKS,
  WEBHOOK_EVENTS,
  SECRET_OVERLAP_MS,
  type WebhookCreated,
  type WebhookEvent,
  type WebhookView,
} from "../../shared/webhooks.ts";
import type { AccountStore, WebhookRow } from "./store.ts";

/** The id of the row holding the secret of jobs' own webhooks. */
export const JOB_SECRET_ID = "job";

/** An endpoint as authentication carries it: enough to decide, at submit, whom a job tells. */
export interface HookRef {
  id: string;
  events: WebhookEvent[];
}

/** Where and how the WebhookActor sends to one of the account's endpoints (or its jobs' own). */
export interface HookTarget {
  /** The endpoint's URL; `null` for jobs' own webhooks, whose URL is in each job. */
  url: string | null;
  /** Secrets to sign with, the current one first. */
  secrets: string[];
  disabled: boolean;
}

const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());

function eventsOf(w: WebhookRow): WebhookEvent[] {
  return JSON.parse(w.events) as WebhookEvent[];
}

export function webhookView(w: WebhookRow): WebhookView {
  return {
    id: w.id,
    url: w.url ?? "",
    events: eventsOf(w),
    created_at: new Date(w.created_at).toISOString(),
    disabled_at: iso(w.disabled_at),
    disabled_reason: w.disabled_reason,
  };
}

/** The live endpoints' ids and events, for authentication's cached principal. */
export function hookRefs(store: AccountStore): HookRef[] {
  return store
    .webhooks()
    .filter((w) => w.disabled_at === null)
    .map((w) => ({ id: w.id, events: eventsOf(w) }));
}

/** Whether jobs' own webhooks can be signed: the account made their secret. */
export function hasJobSecret(store: AccountStore): boolean {
  return store.webhook(JOB_SECRET_ID) !== undefined;
}

export function addWebhook(
  store: AccountStore,
  url: string,
  events: readonly WebhookEvent[] | undefined,
  now: number,
): WebhookCreated | Failure {
  if (store.webhooks().length >= MAX_WEBHOOKS)
    return fail("conflict", `an account has at most ${MAX_WEBHOOKS} webhooks; remove one first`);
  const row: WebhookRow = {
    id: newId("wh"),
    kind: "endpoint",
    url,
    events: JSON.stringify(events ?? WEBHOOK_EVENTS),
    secret: newWebhookSecret(),
    old_secret: null,
    old_until: null,
    created_at: now,
    disabled_at: null,
    disabled_reason: null,
  };
  store.putWebhook(row);
  return { ...webhookView(row), secret: row.secret };
}

/**
 * A new secret for an endpoint (or, for {@link JOB_SECRET_ID}, jobs' own webhooks, made on first
 * use): the old one keeps signing beside it for {@link SECRET_OVERLAP_MS}, so receivers switch
 * without losing a delivery. Rotating an endpoint also enables it again.
 */
export function rotateSecret(
  store: AccountStore,
  id: string,
  now: number,
): { row: WebhookRow; secret: string } | Failure {
  const held = store.webhook(id);
  if (!held && id !== JOB_SECRET_ID) return fail("not_found", `no webhook ${id}`);
  const secret = newWebhookSecret();
  const row: WebhookRow = held
    ? {
        ...held,
        secret,
        old_secret: held.secret,
        old_until: now + SECRET_OVERLAP_MS,
        disabled_at: null,
        disabled_reason: null,
      }
    : {
        id,
        kind: "job",
        url: null,
        events: "[]",
        secret,
        old_secret: null,
        old_until: null,
        created_at: now,
        disabled_at: null,
        disabled_reason: null,
      };
  store.putWebhook(row);
  return { row, secret };
}

/** Where to send for an endpoint and what to sign with, or `undefined` when it was removed. */
export function hookTarget(store: AccountStore, id: string, now: number): HookTarget | undefined {
  const w = store.webhook(id);
  if (!w) return undefined;
  const secrets = [w.secret, ...(w.old_secret !== null && (w.old_until ?? 0) > now ? [w.old_secret] : [])];
  return { url: w.url, secrets, disabled: w.disabled_at !== null };
}

/** Disables an endpoint (it answered 410, or failed for days); answers whether it was live. */
export function disableWebhook(store: AccountStore, id: string, reason: string, now: number): boolean {
  const w = store.webhook(id);
  if (!w || w.kind !== "endpoint" || w.disabled_at !== null) return false;
  store.putWebhook({ ...w, disabled_at: now, disabled_reason: reason });
  return true;
}
