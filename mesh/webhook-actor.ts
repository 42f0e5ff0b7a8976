/**
 * WebhookActor: one per account (named by the account id), the durable queue of the account's
 * webhook messages. Schedulers hand it messages after the commits that made them (`accept`);
 * it sends them from its alarm — each job's in order per endpoint, the same `webhook-id` on
 * every attempt, retried on the schedule of shared/webhooks.ts — and keeps every attempt for
 * `deliveries`. An endpoint answering 410, or failing every attempt for days, is disabled in the
 * AccountActor and the account's other endpoints are told (`webhook.disabled`). Its queue is in
 * its SQLite, and the alarm is re-armed on every wake, so a restart loses no message.
 *
 * Its tables are made by its first `accept`, never by a read.
 */
import { DurableObject } from "cloudflare:workers";
import { fail } from "../shared/errors.ts";
import { publicOrigin, signedOutputUrl } from "../shared/signing.ts";
import { Delivery, type WebhookEvent, type WebhookPayload, type WebhookView } from "../shared/webhooks.ts";
import type { AccountActor } from "./account-actor.ts";
import { JOB_SECRET_ID, type HookTarget } from "./account/webhooks.ts";
import { actor } from "./remote.ts";
import { durableSql } from "./sql/durable.ts";
import { migrate, migrated } from "./sql/sql.ts";
import { messageId, verdict, type OutboundMessage } from "./webhooks/logic.ts";
import { sendWebhook } from "./webhooks/send.ts";
import { MIGRATIONS, WebhookStore, type MessageRow } from "./webhooks/store.ts";

/** Messages one alarm round sends at once. */
const SEND_BATCH = 50;
/** Rounds one alarm runs at most (a delivered message lets its job's next one go at once). */
const MAX_ROUNDS = 20;
/** How long settled messages and their attempts are kept for `deliveries` (ms). */
const KEEP_MS = 7 * 24 * 3600 * 1000;

const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());

export class WebhookActor extends DurableObject<Env> {
  private store: WebhookStore | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      const sql = durableSql(ctx.storage.sql);
      if (!migrated(sql)) return;
      this.store = this.open();
      // An alarm can be lost across a restart: arm it again for what is pending.
      await this.arm(this.store.nextDue());
    });
  }

  private open(): WebhookStore {
    const sql = durableSql(this.ctx.storage.sql);
    migrate(sql, MIGRATIONS);
    return new WebhookStore(sql);
  }

  private get allowLocal(): boolean {
    return this.env.WEBHOOKS_ALLOW_LOCAL === "true";
  }

  /** The retry schedule's scale: 1, except in local development when the tests shorten it. */
  private get scale(): number {
    const s = Number(this.env.WEBHOOK_RETRY_SCALE ?? "1");
    return this.allowLocal && Number.isFinite(s) && s > 0 ? s : 1;
  }

  private async arm(at: number | undefined): Promise<void> {
    if (at === undefined) return;
    const set = await this.ctx.storage.getAlarm();
    if (set === null || set > at) await this.ctx.storage.setAlarm(Math.max(at, Date.now()));
  }

  /** Takes messages from a scheduler's outbox (a repeated hand-over is taken once). */
  async accept(messages: OutboundMessage[]): Promise<void> {
    this.store ??= this.open();
    const first = messages[0];
    if (first && this.store.account() === undefined) this.store.setAccount(first.account_id);
    for (const m of messages) {
      this.store.insert({
        id: messageId(m),
        job_id: m.job_id,
        endpoint: m.endpoint,
        url: m.url,
        type: m.type,
        payload: m.payload,
        seq: m.seq,
        created_at: m.at,
        state: "pending",
        next_at: m.at,
      });
    }
    await this.arm(Date.now());
  }

  /** A job's messages and every attempt at them. */
  async deliveries(jobId: string): Promise<Delivery[]> {
    const store = this.store;
    if (!store) return [];
    return store.ofJob(jobId).map((m) =>
      Delivery.parse({
        id: m.id,
        type: m.type,
        endpoint: m.endpoint,
        url: m.url ?? "",
        state: m.state,
        created_at: new Date(m.created_at).toISOString(),
        next_attempt_at: m.state === "pending" ? iso(m.next_at) : null,
        attempts: store.attemptsOf(m.id).map((a) => ({
          at: new Date(a.at).toISOString(),
          status: a.status,
          error: a.error,
          duration_ms: a.duration_ms,
        })),
      }),
    );
  }

  /** Sends a job's settled messages (of one event, or all) again, with their ids. */
  async redeliver(jobId: string, type: WebhookEvent | undefined) {
    if (!this.store || this.store.ofJob(jobId).length === 0)
      return fail("job_not_found", `no webhook message for job ${jobId}`);
    const n = this.store.redeliver(jobId, type, Date.now());
    await this.arm(Date.now());
    return { ok: true as const, redelivered: n };
  }

  override async alarm(): Promise<void> {
    const store = this.store;
    if (!store) return;
    const targets = new Map<string, Promise<HookTarget | null>>();
    const account = actor<AccountActor>(this.env.ACCOUNT, store.account() ?? "");
    const target = (endpoint: string): Promise<HookTarget | null> => {
      let t = targets.get(endpoint);
      if (!t) {
        t = account.webhookTarget(endpoint);
        targets.set(endpoint, t);
      }
      return t;
    };
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const due = store.due(Date.now(), SEND_BATCH);
      if (due.length === 0) break;
      const outcomes = await Promise.all(due.map((m) => this.attempt(m, target)));
      if (!outcomes.includes("delivered") && !outcomes.includes("failed")) break;
    }
    store.deleteSettledBefore(Date.now() - KEEP_MS);
    await this.arm(store.nextDue());
  }

  /** One attempt at one message, its outcome recorded. */
  private async attempt(
    m: MessageRow,
    target: (endpoint: string) => Promise<HookTarget | null>,
  ): Promise<MessageRow["state"]> {
    const store = this.store as WebhookStore;
    const started = Date.now();
    const t = await target(m.endpoint === JOB_SECRET_ID ? JOB_SECRET_ID : m.endpoint).catch(() => undefined);
    if (t === undefined) {
      // The account could not be asked: try again shortly, without spending an attempt.
      store.settle(m.id, "pending", m.tries, started + 5_000);
      return "pending";
    }
    const url = m.endpoint === JOB_SECRET_ID ? m.url : (t?.url ?? null);
    if (t === null || t.disabled || url === null) {
      const why = t === null ? "the webhook was removed" : "the webhook is disabled";
      store.addAttempt({ message_id: m.id, at: started, status: null, error: why, duration_ms: 0 });
      store.settle(m.id, "failed", m.tries + 1, null);
      return "failed";
    }
    const result = await sendWebhook({
      id: m.id,
      url,
      body: await this.bodyOf(m.payload),
      secrets: t.secrets,
      allowLocal: this.allowLocal,
    });
    const ended = Date.now();
    store.addAttempt({
      message_id: m.id,
      at: started,
      status: result.status,
      error: result.status === null ? result.error : (result.error ?? null),
      duration_ms: ended - started,
    });
    const tries = m.tries + 1;
    const v = result.error?.startsWith("address refused")
      ? { state: "failed" as const, why: result.error, disable: true }
      : verdict(result, tries, ended, this.scale);
    store.settle(m.id, v.state, tries, v.state === "pending" ? v.nextAt : null);
    if (v.state === "failed" && v.disable && m.endpoint !== JOB_SECRET_ID) await this.disable(m.endpoint, v.why);
    return v.state;
  }

  /** The message's body with its output URLs signed afresh (an attempt days later still works). */
  private async bodyOf(payload: string): Promise<string> {
    const body = JSON.parse(payload) as WebhookPayload;
    const secret = this.env.FILE_SIGNING_KEY;
    if (!("outputs" in body.data) || !body.data.outputs || !secret) return payload;
    const origin = publicOrigin(this.env.PUBLIC_URL);
    body.data.outputs = await Promise.all(
      body.data.outputs.map(async (o) =>
        typeof o.key === "string" ? { ...o, url: await signedOutputUrl(secret, origin, o.key) } : o,
      ),
    );
    return JSON.stringify(body);
  }

  /**
   * Disables an endpoint in the account, fails what is pending for it, and tells the account's
   * other live endpoints that want `webhook.disabled`.
   */
  private async disable(endpoint: string, why: string): Promise<void> {
    const store = this.store as WebhookStore;
    const account = actor<AccountActor>(this.env.ACCOUNT, store.account() ?? "");
    const view = await account.disableWebhook(endpoint, why).catch(() => null);
    store.failPending(endpoint);
    if (!view) return;
    const others = (await account.webhooks().catch(() => [] as WebhookView[])).filter(
      (w) => w.id !== endpoint && w.disabled_at === null && w.events.includes("webhook.disabled"),
    );
    const now = Date.now();
    const payload = JSON.stringify({
      type: "webhook.disabled",
      timestamp: new Date(now).toISOString(),
      data: { webhook: view },
    } satisfies WebhookPayload);
    for (const o of others) {
      store.insert({
        id: `msg_disabled_${endpoint}_${now}_${o.id}`,
        job_id: `webhook:${endpoint}`,
        endpoint: o.id,
        url: null,
        type: "webhook.disabled",
        payload,
        seq: now,
        created_at: now,
        state: "pending",
        next_at: now,
      });
    }
  }
}
