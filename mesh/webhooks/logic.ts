/**
 * The delivery decisions of webhooks, pure so they are tested in plain Node: what an attempt's
 * answer means for its message (delivered, retried when, failed), and whether the endpoint is
 * to be disabled. Used by the WebhookActor (mesh/webhook-actor.ts).
 */
import { MAX_RETRY_AFTER_S, RETRY_SCHEDULE_MS, type WebhookEvent } from "../../shared/webhooks.ts";

/** How one attempt ended: the receiver's status and `Retry-After` (s), or no answer at all. */
export type AttemptResult = { status: number; retryAfterS?: number | undefined } | { status: null; error: string };

/** What becomes of a message after an attempt. */
export type Verdict =
  | { state: "delivered" }
  | { state: "pending"; nextAt: number }
  | { state: "failed"; why: string; disable: boolean };

/** Spread of each retry's delay, ±10 %, so receivers that failed together are not retried together. */
const JITTER = 0.1;

/**
 * The verdict on a message whose `tries`-th attempt (1-based) just ended at `now`: only a 2xx is
 * delivered; 410 Gone fails it and disables its endpoint; 429 and 503 wait what `Retry-After`
 * asks (capped) when that is longer than the schedule's delay; anything else waits the
 * schedule's next delay (scaled by `scale`, 1 outside tests, and jittered by `rand` in [0, 1)).
 * Past the schedule's last attempt it fails and its endpoint is disabled.
 */
export function verdict(result: AttemptResult, tries: number, now: number, scale = 1, rand = Math.random()): Verdict {
  if (result.status !== null && result.status >= 200 && result.status < 300) return { state: "delivered" };
  if (result.status === 410) return { state: "failed", why: "the endpoint answered 410 Gone", disable: true };
  const delay = RETRY_SCHEDULE_MS[tries];
  if (delay === undefined) {
    return {
      state: "failed",
      why: `no attempt of ${tries} succeeded over the retry schedule`,
      disable: true,
    };
  }
  let wait = delay * scale * (1 + JITTER * (2 * rand - 1));
  if (result.status === 429 || result.status === 503) {
    const asked = result.retryAfterS;
    if (asked !== undefined && asked > 0) wait = Math.max(wait, Math.min(asked, MAX_RETRY_AFTER_S) * 1000);
  }
  return { state: "pending", nextAt: now + Math.round(wait) };
}

/** `Retry-After` as seconds: a number of seconds or an HTTP date (RFC 9110 §10.2.3); else undefined. */
export function retryAfterS(header: string | null, now: number): number | undefined {
  if (header === null) return undefined;
  const t = header.trim();
  if (/^\d+$/.test(t)) return Number(t);
  const at = Date.parse(t);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

/**
 * Whom a job tells, recorded in the job at submit: one of the account's endpoints (by id), or
 * the job's own webhook (`endpoint: "job"`, with its URL), and the events each wants.
 */
export interface JobHook {
  endpoint: string;
  url?: string | undefined;
  events: WebhookEvent[];
}

/** A message the scheduler hands to the account's WebhookActor: one event for one endpoint. */
export interface OutboundMessage {
  /** The outbox row's id in its shard: orders one job's messages. */
  seq: number;
  account_id: string;
  job_id: string;
  endpoint: string;
  url: string | null;
  type: WebhookEvent;
  /** The JSON body, as sent but for output URLs, signed afresh at each attempt. */
  payload: string;
  at: number;
}

/** The messages' `webhook-id`: the same on every attempt, unique per job, event and endpoint. */
export function messageId(m: Pick<OutboundMessage, "job_id" | "seq" | "endpoint">): string {
  return `msg_${m.job_id.slice(4)}_${m.seq}_${m.endpoint}`;
}
