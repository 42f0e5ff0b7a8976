/**
 * SchedulerActor: one per model shard (named `m<model number>.s<shard>`, see shared/ids.ts).
 * A thin shell over {@link SchedulerCore}: it feeds the clock, answers RPC from the edge Worker
 * (submits, reads, cancels), from agents' actors (lease, heartbeat, settle, release) and from
 * job actors (watch), and after each event tells the others what the core noted: leases for
 * agents that wait (`deliver`), leases it took back (`takenBack`), watched jobs that changed
 * (`changed`), files to clean up, and (every few seconds at most) what each model version's
 * attempts came to, for the registry's canary analysis; and keeps the alarm armed for the next
 * lease deadline, queue TTL, retention or figures report.
 *
 * Its tables are made by its first configuration or enqueue, never by a read: a shard that is
 * asked about jobs it never had (an id naming it, a lease an agent made up) answers as an empty
 * shard and writes nothing, so it leaves no storage behind.
 */
import { DurableObject } from "cloudflare:workers";
import { fail } from "../shared/errors.ts";
import type { FailureReason, JobStatus } from "../shared/job.ts";
import type { UsageBucket } from "../shared/usage.ts";
import type { AgentActor } from "./agent-actor.ts";
import type { JobActor } from "./job-actor.ts";
import { endAttemptFiles, purgeJobFiles } from "./job-files.ts";
import type { RegistryActor } from "./registry-actor.ts";
import { actor } from "./remote.ts";
import {
  SchedulerCore,
  type AgentRef,
  type Completion,
  type EnqueueItem,
  type LeaseRef,
  type SchedulerConfig,
  type SchedulerCounters,
} from "./scheduler/core.ts";
import { durableSql } from "./sql/durable.ts";
import type { OutboundMessage } from "./webhooks/logic.ts";
import type { WebhookActor } from "./webhook-actor.ts";
import { migrated } from "./sql/sql.ts";

/** How soon a webhook hand-over that failed is tried again from the alarm (ms). */
const OUTBOX_RETRY_MS = 5_000;
/** Outbox messages one alarm hands over at most; the next alarm takes the rest. */
const OUTBOX_BATCH = 500;

const NO_COUNTERS: SchedulerCounters = {
  commits: 0,
  enqueued: 0,
  leased: 0,
  completed: 0,
  succeeded: 0,
  failed: 0,
  refused: 0,
};

export class SchedulerActor extends DurableObject<Env> {
  /** Absent until the shard has storage: its first configuration or enqueue makes it. */
  protected core: SchedulerCore | undefined;
  /** The alarm time set (ms); `undefined` when none is. */
  private armedAt: number | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    // Initialise inside blockConcurrencyWhile so no RPC sees a half-built core; an alarm can be
    // lost across a restart, so it is re-armed on every wake.
    void ctx.blockConcurrencyWhile(async () => {
      const sql = durableSql(ctx.storage.sql);
      if (!migrated(sql)) return;
      this.core = new SchedulerCore(sql, Date.now());
      this.armedAt = (await ctx.storage.getAlarm()) ?? undefined;
      await this.arm(this.core.nextDeadline());
      // Webhook messages left in the outbox by a restart leave from the alarm.
      if (this.core.outboxMessages(1).length > 0) await this.arm(Date.now());
    });
  }

  /** The core, its tables made first when the shard has none yet. */
  private writable(): SchedulerCore {
    this.core ??= new SchedulerCore(durableSql(this.ctx.storage.sql), Date.now());
    return this.core;
  }

  /** Sets the alarm for `at` when it is earlier than the one set (or none is). */
  private async arm(at: number | undefined): Promise<void> {
    if (at === undefined || (this.armedAt !== undefined && this.armedAt <= at)) return;
    this.armedAt = at;
    await this.ctx.storage.setAlarm(Math.max(at, Date.now() + 1));
  }

  override async alarm(): Promise<void> {
    this.armedAt = undefined;
    if (!this.core?.configured) return;
    this.core.sweep(Date.now());
    this.handOver(this.core, this.core.outboxMessages(OUTBOX_BATCH));
    await this.after(this.core.nextDeadline());
  }

  /**
   * What every event ends with: what the core noted is sent on (not awaited — workerd holds
   * these outgoing calls until the event's writes are durable, its output gate, so a lease
   * never leaves before it is recorded) and the alarm is moved earlier if the event needs it.
   */
  private async after(due = this.core?.takeEarliestAdded()): Promise<void> {
    const core = this.core;
    if (!core) return;
    // Before anything is awaited, so the messages are written in the event's own commit.
    this.handOver(core, core.takeWebhookMessages(Date.now()));
    this.deliver(core);
    for (const [agentId, refs] of core.takeRevocations()) {
      this.ctx.waitUntil(
        actor<AgentActor>(this.env.AGENT, agentId)
          .takenBack(refs)
          .catch(() => undefined),
      );
    }
    const now = Date.now();
    for (const id of core.takeChanged()) {
      const out = core.adminView(id, now);
      if (out.ok)
        this.ctx.waitUntil(
          actor<JobActor>(this.env.JOB, id)
            .changed(out.job)
            .catch(() => undefined),
        );
    }
    this.cleanFiles(core);
    this.reportFigures(core, now);
    const figuresDue = core.figuresDue();
    await this.arm(due === undefined || figuresDue === undefined ? (due ?? figuresDue) : Math.min(due, figuresDue));
  }

  /**
   * Tells the registry what each version's attempts came to since the last report, riding on
   * an event that already runs (no commit of its own here); what is not yet due waits for a
   * later event or the alarm. A report that fails is counted again for the next one.
   */
  private reportFigures(core: SchedulerCore, now: number): void {
    const model = core.configured?.model.name;
    const figures = model === undefined ? undefined : core.takeFigures(now);
    if (model === undefined || figures === undefined) return;
    this.ctx.waitUntil(
      actor<RegistryActor>(this.env.REGISTRY, "global")
        .versionFigures(model, figures)
        .catch(() => core.restoreFigures(figures)),
    );
  }

  /**
   * Hands webhook messages to their accounts' WebhookActors (after the commit that wrote them:
   * the output gate holds the calls until then) and deletes them from the outbox once taken; a
   * hand-over that fails leaves them there for the alarm to try again. A message handed over
   * twice is taken once (its id is its outbox row's).
   */
  private handOver(core: SchedulerCore, messages: OutboundMessage[]): void {
    if (messages.length === 0) return;
    const byAccount = new Map<string, OutboundMessage[]>();
    for (const m of messages) byAccount.set(m.account_id, [...(byAccount.get(m.account_id) ?? []), m]);
    for (const [accountId, batch] of byAccount) {
      const send = async (): Promise<void> => {
        try {
          await actor<WebhookActor>(this.env.WEBHOOK, accountId).accept(batch);
          core.store.deleteOutbox(batch.map((m) => m.seq));
        } catch {
          await this.arm(Date.now() + OUTBOX_RETRY_MS);
        }
      };
      this.ctx.waitUntil(send());
    }
  }

  /**
   * Sends leases granted to agents that waited for work. A lease its agent's actor could not
   * deliver (the agent went away) comes straight back without spending its attempt.
   */
  private deliver(core: SchedulerCore): void {
    for (const [agentId, leases] of core.takeDeliveries()) {
      const send = async (): Promise<void> => {
        const undelivered = await actor<AgentActor>(this.env.AGENT, agentId)
          .deliver(leases)
          .catch(() => leases.map((l) => ({ job_id: l.job_id, epoch: l.epoch })));
        if (undelivered.length === 0) return;
        core.undeliver(agentId, undelivered, Date.now());
        await this.after();
      };
      this.ctx.waitUntil(send());
    }
  }

  /**
   * Cleans up the files of what the last event ended: ended attempts' unfinished uploads are
   * aborted (and the files of those that did not succeed deleted); deleted jobs lose every
   * file. Runs after the rows are written, so a failure here leaves orphaned files, never a job
   * without its outputs.
   */
  private cleanFiles(core: SchedulerCore): void {
    const ended = core.takeAttemptsEnded();
    const gone = core.takeJobsGone();
    if (ended.length === 0 && gone.length === 0) return;
    const bucket = this.env.OUTPUTS;
    const goneSet = new Set(gone);
    const tasks = [
      ...ended.filter((a) => !goneSet.has(a.job_id)).map((a) => endAttemptFiles(bucket, a.job_id, a.epoch, a.kept)),
      ...gone.map((id) => purgeJobFiles(bucket, id)),
    ];
    this.ctx.waitUntil(
      Promise.allSettled(tasks).then((done) => {
        const failed = done.filter((r) => r.status === "rejected").length;
        if (failed > 0) console.warn(JSON.stringify({ level: "warn", what: "file cleanup", failed }));
      }),
    );
  }

  /** Runs an event on the core (when the shard has one) and what follows it. */
  private async event<T>(fn: (core: SchedulerCore) => T, absent: T): Promise<T> {
    if (!this.core?.configured) return absent;
    const out = fn(this.core);
    await this.after();
    return out;
  }

  async enqueue(config: SchedulerConfig, items: EnqueueItem[]) {
    const core = this.writable();
    core.configure(config, Date.now());
    return await this.event((c) => c.enqueue(items, Date.now()), []);
  }

  async configure(config: SchedulerConfig): Promise<boolean> {
    const changed = this.writable().configure(config, Date.now());
    await this.after();
    return changed;
  }

  /** Grants up to `maxNew` leases now; the rest of the agent's room waits parked for new work. */
  async lease(agent: AgentRef, capacity: number, maxNew?: number) {
    return await this.event((c) => c.lease(agent, capacity, Date.now(), maxNew), []);
  }

  /** An agent's results and its room for more: one event, one commit (see SchedulerCore.settle). */
  async settle(agent: AgentRef, results: (LeaseRef & { result: Completion })[], capacity: number, credits: number) {
    const stale = { outcomes: results.map(() => fail("conflict", "stale result")), leases: [] };
    return await this.event((c) => c.settle(agent, results, capacity, credits, Date.now()), stale);
  }

  async heartbeat(agent: AgentRef, refs: LeaseRef[], capacity: number, credits: number) {
    const none = { renewed: [], stale: refs, leases: [] };
    return await this.event((c) => c.heartbeat(agent, refs, capacity, credits, Date.now()), none);
  }

  async rejoin(agentId: string, listed: LeaseRef[], connectedAt: number) {
    return await this.event((c) => c.rejoin(agentId, listed, connectedAt, Date.now()), { renewed: [], stale: listed });
  }

  async releaseLeases(agentId: string, refs: LeaseRef[], reason: "drained" | "preempted") {
    return await this.event((c) => c.releaseLeases(agentId, refs, reason, Date.now()), 0);
  }

  async release(agentId: string, reason: FailureReason) {
    return await this.event((c) => c.release(agentId, reason, Date.now()), 0);
  }

  async unpark(agentId: string): Promise<void> {
    this.core?.unpark(agentId);
  }

  async leaseOf(jobId: string) {
    return this.core?.leaseOf(jobId) ?? null;
  }

  /** An upload starts under a lease: whether `agentId` holds it (the attempt's end then cleans up). */
  async uploadStarting(ref: LeaseRef, agentId: string): Promise<boolean> {
    return this.core?.uploadStarting(ref, agentId) ?? false;
  }

  /** The input file in `field` of a job whose lease `agentId` holds, for the agent's download. */
  async inputFile(ref: LeaseRef, agentId: string, field: string) {
    if (!this.core) return fail("stale_lease", `the lease of ${ref.job_id} at epoch ${ref.epoch} is not this agent's`);
    return this.core.inputFile(ref, agentId, field);
  }

  /** A job actor follows a job for its subscribers (see SchedulerCore.watch). */
  async watch(id: string, accountId: string) {
    if (!this.core) return fail("job_not_found", `no job ${id}`);
    return this.core.watch(id, accountId, Date.now());
  }

  async unwatch(id: string): Promise<void> {
    this.core?.unwatch(id);
  }

  async view(id: string, accountId: string) {
    if (!this.core) return fail("job_not_found", `no job ${id}`);
    return this.core.view(id, accountId, Date.now());
  }

  /** A job whoever owns it, with its attempts' agents and pools (admins only). */
  async adminView(id: string) {
    if (!this.core) return fail("job_not_found", `no job ${id}`);
    return this.core.adminView(id, Date.now());
  }

  /** An account's hourly usage buckets overlapping [from, to) (ms), with this shard's model. */
  async usage(accountId: string, from: number, to: number): Promise<UsageBucket[]> {
    const core = this.core;
    const model = core?.configured?.model.name;
    if (!core || model === undefined) return [];
    return core.usageFor(accountId, from, to).map(({ account_id: _a, ...b }) => ({ ...b, model }));
  }

  async list(accountId: string, status: JobStatus | undefined, limit: number, cursor: string | undefined) {
    return this.core?.list(accountId, status, limit, cursor, Date.now()) ?? [];
  }

  async cancel(id: string, accountId: string) {
    const notFound = fail("job_not_found", `no job ${id}`);
    return await this.event((c) => {
      const out = c.cancel(id, accountId, Date.now());
      return out.ok ? { ok: true as const, job: c.render(out.job, Date.now(), false) } : out;
    }, notFound);
  }

  async remove(id: string, accountId: string) {
    return await this.event((c) => c.remove(id, accountId, Date.now()), fail("job_not_found", `no job ${id}`));
  }

  /** A pool grows for this model, which has no agent yet: waiting jobs say `scaling_up` until `until` (ms). */
  async scaling(until: number): Promise<void> {
    if (this.core) this.core.scalingUntil = until;
  }

  /** The shard's load for the demand signal; null for a shard never configured. */
  async load() {
    return this.core?.load(Date.now()) ?? null;
  }

  async stats() {
    return {
      tiers: this.core?.stats(Date.now()) ?? [],
      counters: { ...(this.core?.counters ?? NO_COUNTERS) },
      configured: this.core?.configured !== undefined,
    };
  }
}
